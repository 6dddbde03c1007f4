"""Shared fixtures: real models loaded once per session, a fresh data directory (Milvus Lite +
SQLite) per test, lectures rendered on the spot with espeak-ng and ffmpeg, and `indexed_lectures`: two
lectures indexed once per session for the tests that only ask and list.

CLIP runs with *random* weights (`CLIP_PRETRAINED=random`, open_clip `pretrained=None`): the tests
exercise the image path (embedding, the frame collection, fusion), not its quality. No test reaches
the internet or downloads weights.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from core import synth  # noqa: E402
from core.config import Settings  # noqa: E402
from core.engines.registry import Models  # noqa: E402
from core.models import Scope, Video  # noqa: E402
from core.service import Service  # noqa: E402
from tests.memo import Memo, RenderCache  # noqa: E402

RENDERED = Path(__file__).resolve().parents[1] / ".cache" / "test-media"
SETTINGS_VARS = [f.upper() for f in Settings.__dataclass_fields__]

# Every test runs under the loop-blocking detector (tests/blocking.py).
pytest_plugins = ("tests.blocking",)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token, key or setting from the developer's shell leaks into a test."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session", autouse=True)
def memo() -> Iterator[Memo]:
    """The real models' answers remembered per process, and rendered lectures kept across processes
    and runs in .cache/test-media (tests/memo.py): a lecture indexed by many tests is rendered once,
    and transcribed and read once per process."""
    m, r = Memo().install(), RenderCache(RENDERED).install()
    yield m
    r.uninstall()
    m.uninstall()


@pytest.fixture(autouse=True)
def memo_off_for_measuring_tests(request: pytest.FixtureRequest, memo: Memo) -> Iterator[None]:
    """Tests marked `alone` measure the models' own cost (the loop's gaps while transcribing, the
    bot's RSS, the fuzzer's stalls): they run every model call for real."""
    memo.on = request.node.get_closest_marker("alone") is None
    yield
    memo.on = True


@pytest.fixture(scope="session")
def models() -> Models:
    m = Models(Settings(clip_pretrained="random"))
    _ = m.text, m.image, m.transcriber, m.ocr  # load once for the whole session
    return m


@pytest.fixture
def fake_models(settings: Settings) -> Models:
    """Fakes that need no weights (tests/fakes/models.py), for tests of logic rather than models."""
    from tests.fakes.models import fake_models

    m = fake_models(settings)
    yield m  # type: ignore[misc]
    m.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", clip_pretrained="random")


@pytest.fixture
async def service(settings: Settings, models: Models):
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        yield svc


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def lecture(media_dir: Path) -> tuple[Path, synth.Lecture]:
    """The demo lecture about volcanoes, with known slide times."""
    lec = synth.Lecture(synth.DEMO.title, list(synth.DEMO.slides))
    return synth.render(lec, media_dir / "volcanoes.mp4"), lec


@pytest.fixture(scope="session")
def lecture2(media_dir: Path) -> tuple[Path, synth.Lecture]:
    """A second lecture, on another topic, for isolation tests."""
    lec = synth.Lecture("Baking bread", [
        synth.Slide("Baking bread", ("Kitchen science",), "Today we bake a simple loaf of bread."),
        synth.Slide("Yeast", ("yeast eats sugar", "releases carbon dioxide"),
                    "Yeast feeds on the sugar in the flour and releases carbon dioxide, which makes the dough rise."),
        synth.Slide("Kneading", ("develops gluten",), "Kneading the dough for ten minutes develops the gluten network."),
    ], background="0xE6F0F5")
    return synth.render(lec, media_dir / "bread.mp4"), lec


def short_lecture(title: str, slides: list[tuple[str, str]], dst: Path, lines: tuple[str, ...] = ()) -> Path:
    """Two half-second-held slides at 640×360: a video that indexes in a few seconds."""
    lec = synth.Lecture(title, [synth.Slide(t, lines, say, hold=0.5) for t, say in slides])
    return synth.render(lec, dst, size="640x360")


TOPICS = {
    "volcano": [("Volcanoes", "Magma rises because molten rock is lighter than the solid rock around it."),
                ("Eruptions", "Sticky andesite magma traps gas and makes explosive eruptions.")],
    "bread": [("Bread", "Yeast feeds on sugar in the flour and releases carbon dioxide."),
              ("Kneading", "Kneading the dough for ten minutes develops the gluten network.")],
    "tides": [("Tides", "The moon pulls the oceans and makes two high tides every day."),
              ("Spring tides", "When the sun and the moon line up the tides are strongest.")],
    "bees": [("Bees", "Honey bees dance to tell their sisters where the flowers are."),
             ("Hives", "A hive keeps its brood warm at thirty five degrees.")],
    "rust": [("Rust", "Iron rusts when oxygen and water react with it to form iron oxide."),
             ("Zinc", "A zinc coating protects steel because zinc corrodes first.")],
}


@pytest.fixture(scope="session")
def short_lectures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("short")
    return {name: short_lecture(name.title(), slides, d / f"{name}.mp4") for name, slides in TOPICS.items()}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, capture_output=True)


@pytest.fixture(scope="session")
def bad_media(media_dir: Path) -> dict[str, Path]:
    """Inputs that must be refused: a text file, a corrupt MP4, and a silent video with nothing
    written on screen."""
    text = media_dir / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    silent = media_dir / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=320x240:r=10:d=6", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(silent))
    corrupt = media_dir / "corrupt.mp4"
    data = (media_dir / "silent.mp4").read_bytes()
    corrupt.write_bytes(data[:64] + bytes(len(data) - 64))
    audio_only = media_dir / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(audio_only), "only sound here"], check=True, capture_output=True)
    return {"text": text, "silent": silent, "corrupt": corrupt, "audio": audio_only}


def console(channel: str) -> Scope:
    return Scope("console", "local", channel)


@pytest.fixture
async def llm():
    """A FakeLLMServer on 127.0.0.1 (see tests/fakes/llm_server.py)."""
    from tests.fakes.llm_server import FakeLLMServer

    server = FakeLLMServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def llm_chat(llm):
    """An OpenAIChat client of the fake server, closed after the test (its connection pool would
    otherwise be left open: a ResourceWarning, so an error)."""
    from core.answer.compose import OpenAIChat

    chat = OpenAIChat(llm.url, "pixtral-fake")
    yield chat
    await chat.client.close()


@pytest.fixture
async def llm_service(settings: Settings, models: Models, llm_chat):
    """A service whose LLM is the fake OpenAI-compatible server."""
    async with Service.open(settings, models=models, chat=llm_chat) as svc:
        svc.start_workers(1)
        yield svc


# ---- the session's indexed channels -------------------------------------------------------------
@dataclass(frozen=True)
class Indexed:
    """The volcano lecture indexed in `volcano` (channel `geology`) and the bread lecture in `bread`
    (`kitchen`), once per session, in one data directory. Tests that only ask and list share it
    instead of indexing the same lecture again; each gets its own `Service` on these stores (`view`),
    so rate limits, hooks and the chat model are the test's own. Nothing here may be written to
    but conversation turns (use a thread name of your own): a test that submits, forgets or
    wipes builds its own service."""

    settings: Settings
    service: Service
    volcano: Scope
    bread: Scope
    volcano_video: Video
    bread_video: Video
    lecture: synth.Lecture
    lecture2: synth.Lecture
    stages: tuple[str, ...]  # the progress stages the volcano lecture's ingest reported, in order

    def view(self, chat: object = None) -> Service:
        """A service on the session's catalog and Milvus with its own limits and no workers."""
        s = self.service
        return Service(s.settings, s.catalog, s.vectors, s.models, chat)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def indexed_lectures(tmp_path_factory: pytest.TempPathFactory, models: Models, lecture, lecture2):
    settings = Settings(data_dir=tmp_path_factory.mktemp("indexed") / "data", clip_pretrained="random")
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        volcano, bread = console("geology"), console("kitchen")
        stages: list[str] = []

        async def on_progress(p) -> None:  # noqa: ANN001
            stages.append(p.stage.value)

        v1 = await svc.wait((await svc.submit(volcano, str(lecture[0]), on_progress=on_progress)).job.id)
        v2 = await svc.wait((await svc.submit(bread, str(lecture2[0]))).job.id)
        await svc.stop_workers()  # read-only from here on
        yield Indexed(settings, svc, volcano, bread, v1, v2, lecture[1], lecture2[1], tuple(stages))


# What makes a test slow: real models, rendered media, vidrag processes, servers. A test that uses
# none of these fixtures, in none of these modules, is marked `fast`: `pytest -m fast` runs them,
# in well under a minute, while working on logic (the real-model tests still run in `make test`).
SLOW_FIXTURES = frozenset({"models", "service", "indexed_lectures", "lecture", "lecture2", "short_lectures",
                           "bad_media", "llm_service", "rel_service", "media_dir"})
# Fixtures that index videos before their tests can run (the first user of each gets a longer limit)
INDEXING_FIXTURES = frozenset({"indexed_lectures", "link_posted", "file_shared", "one_video", "indexed", "italian",
                               "both", "crash_runs"})
SLOW_MODULES = frozenset({"test_cli", "test_cli_recovery", "test_architecture", "test_footprint", "test_backends",
                          "test_two_hosts", "test_crash_resume", "test_store", "test_vectors", "test_roles",
                          "test_eval", "test_languages", "test_screen", "test_hostile_media", "test_fuzz_parsers"})


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):  # noqa: ANN201 - a hook wrapper
    """Before `-m` selects: the tests that need none of the slow parts are marked `fast` (above).

    After it: the first test of each module that uses a fixture which indexes videos (the
    session's indexed channels, a module's own channel on the platform fakes) builds them: its
    time limit covers that on a loaded machine; every other test keeps the default. Per module,
    since module fixtures are built once per module and, under pytest-xdist (scripts/test.sh runs
    two processes, each given whole modules), any module may be a process's first user of the
    session's."""
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        if not (SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))) and name not in SLOW_MODULES \
                and not item.get_closest_marker("alone") and not item.get_closest_marker("processes"):
            item.add_marker(pytest.mark.fast)
    yield
    firsts: dict[object, pytest.Item] = {}
    for item in items:
        if INDEXING_FIXTURES & set(getattr(item, "fixturenames", ())):
            firsts.setdefault(getattr(item, "module", None), item)
    for first in firsts.values():
        mark = first.get_closest_marker("timeout")
        if mark is None or (mark.args and mark.args[0] < 300):
            first.add_marker(pytest.mark.timeout(300))


# -- figures --------------------------------------------------------------------------------------
# What the measuring tests found (the fuzzer's inputs and stalls, the chaos test's recovery times),
# shown in the run's summary under "figures" whether or not pytest captured their output, so that
# a CI log holds them. xdist workers keep their own: the measuring tests are `alone`, run without it.
_FIGURES: list[str] = []


@pytest.fixture
def figures():  # noqa: ANN201 - returns list.append
    """`figures(line)` keeps a line of measurements for the run's summary."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
    if _FIGURES:
        terminalreporter.section("figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)

"""Shared fixtures: real models loaded once per session, a fresh data directory (Milvus Lite +
SQLite) per test, and lectures rendered on the spot with espeak-ng and ffmpeg.

CLIP runs with *random* weights (`CLIP_PRETRAINED=random`, open_clip `pretrained=None`): the tests
exercise the image path (embedding, the frame collection, fusion), not its quality. No test reaches
the internet or downloads weights.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from core import synth  # noqa: E402
from core.config import Settings  # noqa: E402
from core.ingest import Models  # noqa: E402
from core.models import Scope  # noqa: E402
from core.service import Service  # noqa: E402

SETTINGS_VARS = [f.upper() for f in Settings.__dataclass_fields__]

# Every test runs under the loop-blocking detector (tests/blocking.py).
pytest_plugins = ("tests.blocking",)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token, key or setting from the developer's shell leaks into a test."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def models() -> Models:
    m = Models(Settings(clip_pretrained="random"))
    _ = m.text, m.image, m.transcriber, m.ocr  # load once for the whole session
    return m


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
    from core.answer import OpenAIChat

    chat = OpenAIChat(llm.url, "pixtral-fake")
    yield chat
    await chat.client.close()


@pytest.fixture
async def llm_service(settings: Settings, models: Models, llm_chat):
    """A service whose LLM is the fake OpenAI-compatible server."""
    async with Service.open(settings, models=models, chat=llm_chat) as svc:
        svc.start_workers(1)
        yield svc

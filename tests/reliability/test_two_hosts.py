"""Two hosts (issue 12): one chat process and two `python -m bot worker` processes, each with a
DATA_DIR of its own as if on three machines, share one PostgreSQL database and one Milvus server.
Ten videos are submitted across three channels, one worker is SIGKILLed in the middle of a
transcription, and yet every video ends indexed exactly once (the other worker takes the job over
when its lease expires), and the chat process answers a question in each channel with a frame
attached, citing that channel's videos only, and posts a clip of a cited moment from the video
file a worker kept on the volume every process shares (MEDIA_DIR).

The chat process is this test's own `Service` (chat settings: `INGEST_WORKERS=0`, no workers
started; it submits and answers). No process can read another's files: the videos are served over
HTTP from 127.0.0.1, and the chat process attaches frames written from the catalog's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from aiohttp import web

from core.config import Settings
from core.models import Job, Scope, Stage, VideoStatus
from core.service import Service
from core.store.catalog.postgres import PostgresCatalog
from tests.conftest import TOPICS
from tests.fakes.serve import serve
from tests.reliability.conftest import short_lecture
from tests.test_roles import milvus_server

REPO = Path(__file__).resolve().parents[2]
# Three vidrag processes on two cores with a five-second lease: scripts/test.sh runs this module
# beside the main run, never beside another `processes` module (the lease holds on a loaded machine)
pytestmark = pytest.mark.processes("three vidrag processes and a five-second lease")
START = "started: worker "
LEASE_S = 5.0  # a killed worker's job is taken up this long after its last renewal
KILL_AFTER_DONE = 3  # kill once this many videos are ready: both workers have indexed some by then

# channel -> video -> two (slide title, narration) pairs; the channels share no subject
CHANNELS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "earth": {
        "volcano": [("Volcanoes", "Magma rises because molten rock is lighter than the solid rock around it."),
                    ("Eruptions", "Sticky andesite magma traps gas and makes explosive eruptions.")],
        "rust": [("Rust", "Iron rusts when oxygen and water react with it to form iron oxide."),
                 ("Zinc", "A zinc coating protects steel because zinc corrodes first.")],
        "tides": [("Tides", "The moon pulls the oceans and makes two high tides every day."),
                  ("Spring tides", "When the sun and the moon line up the tides are strongest.")],
        "quakes": [("Earthquakes", "Earthquakes happen when rocks along a fault slip past each other."),
                   ("Seismographs", "A seismograph records the shaking of the ground as wavy lines.")],
    },
    "kitchen": {
        "bread": [("Bread", "Yeast feeds on sugar in the flour and releases carbon dioxide."),
                  ("Kneading", "Kneading the dough for ten minutes develops the gluten network.")],
        "coffee": [("Coffee", "Roasting turns green coffee beans brown and creates their aroma."),
                   ("Brewing", "Water just below boiling pulls the best flavour from ground coffee.")],
        "pasta": [("Pasta", "Fresh pasta is made from flour and eggs rolled into thin sheets."),
                  ("Salt", "Salt the boiling water so the pasta tastes seasoned all through.")],
    },
    "wildlife": {
        "bees": [("Bees", "Honey bees dance to tell their sisters where the flowers are."),
                 ("Hives", "A hive keeps its brood warm at thirty five degrees.")],
        "owls": [("Owls", "Owls hunt at night and hear mice moving under the snow."),
                 ("Feathers", "Soft edged feathers let the owl fly in silence.")],
        "whales": [("Whales", "Humpback whales sing long songs that travel across the ocean."),
                   ("Krill", "Blue whales eat tiny krill filtered through their baleen plates.")],
    },
}
# channel -> (question, the video that answers it)
QUESTIONS = {"earth": ("Why does magma rise?", "volcano"), "kitchen": ("What does yeast feed on?", "bread"),
             "wildlife": ("How do owls hunt at night?", "owls")}


@dataclass
class Worker:
    """One `python -m bot worker` process: its own DATA_DIR and log, in a process group of its own
    (so a kill takes down whatever it started, as a host that dies would)."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path
    id: str = ""

    async def text(self) -> str:
        return await asyncio.to_thread(self.log.read_text, errors="replace")

    async def wait_started(self) -> None:
        deadline = time.monotonic() + 180  # imports and model files of a cold start on a busy machine
        while START not in (text := await self.text()):
            assert self.proc.returncode is None, f"{self.name} exited {self.proc.returncode}:\n{text[-3000:]}"
            assert time.monotonic() < deadline, f"{self.name} did not start:\n{text[-3000:]}"
            await asyncio.sleep(0.2)
        line = next(x for x in text.splitlines() if START in x)
        self.id = line.split(START, 1)[1].split(",", 1)[0]

    async def stop(self) -> None:
        """SIGTERM, as an operator stops a worker; SIGKILL if it has not exited within 30 s."""
        if self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 30)
        self.kill()
        await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


async def start_worker(name: str, tmp: Path, env: dict[str, str]) -> Worker:
    home = tmp / name
    await asyncio.to_thread(home.mkdir)
    log = home / "worker.log"
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env = {**keep, "PYTHONPATH": str(REPO), **env, "DATA_DIR": str(home / "data")}
    out = await asyncio.to_thread(log.open, "w")
    try:  # cwd is the worker's own folder: no `.env` of the checkout is read
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "worker", cwd=str(home), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=out, start_new_session=True)
    finally:
        out.close()
    return Worker(name, proc, log)


async def stop_all(workers: list[Worker]) -> None:
    for w in workers:
        w.kill()
        await w.proc.wait()


async def tails(workers: list[Worker]) -> str:
    return "\n".join([f"--- {w.name} (exit {w.proc.returncode})\n{(await w.text())[-2500:]}" for w in workers])


@pytest.fixture
def milvus_uri() -> str:
    """The shared Milvus server (checked here, off the event loop): skipped without one, unless
    VIDRAG_REQUIRE_MILVUS_SERVER=1."""
    return milvus_server()


async def serve_dir(root: Path) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_static("/", root)
    return await serve(app)


async def jobs_now(svc: Service) -> dict[str, dict]:
    rows = await svc.catalog.rows("SELECT id, video_id, scope, status, stage, worker, attempts FROM jobs")
    return {r["id"]: dict(r) for r in rows}


async def vector_rows(svc: Service, scope: Scope, video_id: str | None = None) -> dict[str, tuple[list[str], int]]:
    """Per collection: the ids Milvus returns for `scope` (one video, or all) and its own count."""
    vs = svc.vectors
    expr = f'video_id == "{video_id}"' if video_id else ""

    def read() -> dict[str, tuple[list[str], int]]:
        return {c: ([r["id"] for r in vs.rows(c, scope.partition, expr, ["id", "video_id"])],
                    vs.count(c, scope.partition, expr))
                for c in filter(None, (vs.text, vs.frames))}

    return await asyncio.get_running_loop().run_in_executor(vs.executor, read)


async def channel_video_ids(svc: Service, scope: Scope) -> set[str]:
    vs = svc.vectors

    def read() -> set[str]:
        return {r["video_id"] for c in filter(None, (vs.text, vs.frames))
                for r in vs.rows(c, scope.partition, "", ["video_id"])}

    return await asyncio.get_running_loop().run_in_executor(vs.executor, read)


async def drop_vectors(svc: Service, scopes: list[Scope], prefix: str) -> None:
    """Remove what the test wrote to the shared server: its own collections when the service named
    them with the test's prefix, else its channels' rows in the collections it used."""
    vs = svc.vectors

    def drop() -> None:
        colls = [c for c in (vs.text, vs.frames) if c]
        if all(c.startswith(prefix) for c in colls):
            for c in colls:
                vs.client.drop_collection(c)
            return
        for sc in scopes:
            vs.drop_scope(sc.partition)

    await asyncio.get_running_loop().run_in_executor(vs.executor, drop)


@pytest.mark.parametrize("catalog_backend", ["postgres"], indirect=True)
async def test_processes_starting_at_once_on_a_fresh_database_all_migrate(database_url: str) -> None:
    """Hosts of one deployment start together (`docker compose up`): each migrates the empty
    database, or waits for whoever does. Five rounds: the race it guards against was lost in most."""
    for _ in range(5):
        got = await asyncio.gather(*(PostgresCatalog.open(database_url, 2) for _ in range(6)),
                                   return_exceptions=True)
        for cat in got:
            if isinstance(cat, PostgresCatalog):
                await cat.close()
        assert all(isinstance(c, PostgresCatalog) for c in got), got
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("DROP SCHEMA public CASCADE")
            await conn.execute("CREATE SCHEMA public")


# Ten ingests by two worker processes sharing two cores, a five-second lease expiry and the model
# loads of three processes take about two to three minutes: the per-test limit of 60 s does not fit.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("catalog_backend", ["postgres"], indirect=True)
async def test_worker_killed_mid_transcription_on_one_host_loses_nothing(database_url: str, milvus_uri: str,
                                                                          tmp_path: Path, short_lectures) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = f"t{tag}_"
    scopes = {ch: Scope("discord", f"two-hosts-{tag}", ch) for ch in CHANNELS}
    control = Scope("discord", f"two-hosts-{tag}", "control")
    shared = {"DATABASE_URL": database_url, "MILVUS_URI": milvus_uri, "MILVUS_LAYOUT": "key",
              "MILVUS_PREFIX": prefix, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "CLIP_PRETRAINED": "random", "OCR": "false", "ALLOW_HOSTS": "127.0.0.1",
              "JOB_LEASE_SECONDS": str(LEASE_S)}
    # the videos' files are kept where every process reads them (a shared volume: MEDIA_DIR), so the
    # chat process cuts clips of videos the workers indexed (deploy/README.md)
    shared["MEDIA_DIR"] = str(tmp_path / "shared-volume")
    chat_settings = Settings(data_dir=tmp_path / "chat" / "data", database_url=database_url, milvus_uri=milvus_uri,
                             milvus_layout="key", milvus_prefix=prefix, clip_pretrained="random", ocr=False,
                             allow_hosts=("127.0.0.1",), job_lease_seconds=LEASE_S, ingest_workers=0,
                             media_dir=shared["MEDIA_DIR"])
    videos = [(ch, name, slides) for ch, lectures in CHANNELS.items() for name, slides in lectures.items()]
    media = tmp_path / "media"
    await asyncio.to_thread(media.mkdir)
    t_start = time.monotonic()
    workers: list[Worker] = []
    runner: web.AppRunner | None = None
    try:
        # The workers boot (imports, models, migrations) while the lectures render.
        for name in ("worker-1", "worker-2"):
            workers.append(await start_worker(name, tmp_path, {**shared, "INGEST_WORKERS": "1"}))
        # The five lectures the session has rendered already (tests/conftest.py TOPICS: the same
        # slides and titles) are linked in; the other five are rendered here.
        for name in set(short_lectures) & {name for _, name, _ in videos}:
            assert TOPICS[name] == CHANNELS[next(ch for ch, lec in CHANNELS.items() if name in lec)][name]
            await asyncio.to_thread(os.link, short_lectures[name], media / f"{name}.mp4")
        await asyncio.gather(*(asyncio.to_thread(short_lecture, name.title(), slides, media / f"{name}.mp4")
                               for _, name, slides in videos if name not in short_lectures))
        runner, base = await serve_dir(media)
        async with Service.open(chat_settings, chat=None) as svc:
            try:
                await asyncio.gather(*(w.wait_started() for w in workers))
                started = time.monotonic() - t_start
                by_id = {w.id: w for w in workers}
                assert len(by_id) == 2

                t0 = time.monotonic()
                expected: dict[str, set[str]] = {ch: set() for ch in CHANNELS}
                jobs: dict[str, Job] = {}
                video_ids: dict[str, str] = {}
                for ch, name, _ in videos:
                    sub = await svc.submit(scopes[ch], f"{base}/{name}.mp4")
                    assert not sub.already
                    expected[ch].add(sub.job.video_id)
                    video_ids[name] = sub.job.video_id
                    jobs[sub.job.id] = sub.job

                victim: Worker | None = None
                killed = survivor_id = ""
                kill_t = takeover_s = -1.0
                while True:
                    now = await jobs_now(svc)
                    if time.monotonic() - t0 > 360 or any(j["status"] == "dead" for j in now.values()) or \
                            any(w is not victim and w.proc.returncode is not None for w in workers):
                        pytest.fail(f"not all indexed: {now}\n{await tails(workers)}")
                    done = sum(j["status"] == "done" for j in now.values())
                    if victim is None and done >= KILL_AFTER_DONE:
                        busy = [j for j in now.values()
                                if j["status"] == "running" and j["stage"] == Stage.TRANSCRIBE.value]
                        if busy:
                            killed, victim = busy[0]["id"], by_id[busy[0]["worker"]]
                            victim.kill()
                            kill_t = time.monotonic()
                            await victim.proc.wait()
                            survivor_id = next(i for i in by_id if i != victim.id)
                        else:
                            assert done < len(jobs), "no worker was ever seen transcribing after the first videos"
                    if killed and takeover_s < 0 and now[killed]["worker"] == survivor_id:
                        takeover_s = time.monotonic() - kill_t
                    if done == len(jobs):
                        break
                    await asyncio.sleep(0.05)
                wall = time.monotonic() - t0

                # a control: the killed video's source indexed once more, in a channel of its own, with no crash
                ctl = await svc.submit(control, jobs[killed].source)
                await asyncio.wait_for(svc.wait(ctl.job.id), 180)

                # every video ready, from one job each; only the killed job ran twice, finished by the other worker
                for ch, sc in scopes.items():
                    got = {v.id: v.status for v in await svc.videos(sc)}
                    assert got == dict.fromkeys(expected[ch], VideoStatus.READY), (ch, got)
                final = await jobs_now(svc)
                mine = {i: final[i] for i in jobs}
                assert sorted(j["video_id"] for j in mine.values()) == sorted(v for e in expected.values() for v in e)
                assert all(j["status"] == "done" for j in mine.values()), mine
                assert (mine[killed]["attempts"], mine[killed]["worker"]) == (2, survivor_id), mine[killed]
                assert all(j["attempts"] == 1 for i, j in mine.items() if i != killed), mine
                assert 0 < takeover_s, "the killed job was never seen leased by the other worker"
                for ch, sc in scopes.items():
                    counts = await svc.catalog.rows("SELECT COUNT(*) AS n FROM jobs WHERE scope=?", (sc.key,))
                    assert counts[0]["n"] == len(expected[ch])

                # indexed exactly once: no duplicate vector, no orphan, the killed video like its control
                for ch, sc in scopes.items():
                    assert await channel_video_ids(svc, sc) == expected[ch], ch
                    for vid in expected[ch]:
                        for coll, (ids, n) in (await vector_rows(svc, sc, vid)).items():
                            assert ids and len(ids) == len(set(ids)) == n, (ch, vid, coll, n, sorted(ids))
                killed_scope = scopes[next(ch for ch, e in expected.items() if jobs[killed].video_id in e)]
                again = await vector_rows(svc, killed_scope, jobs[killed].video_id)
                ref = await vector_rows(svc, control, ctl.job.video_id)
                assert {c: n for c, (_, n) in again.items()} == {c: n for c, (_, n) in ref.items()}
                cat_again = await svc.catalog.counts(killed_scope, jobs[killed].video_id)
                cat_ref = await svc.catalog.counts(control, ctl.job.video_id)
                assert {k: cat_again[k] for k in ("segments", "units", "frames")} == \
                       {k: cat_ref[k] for k in ("segments", "units", "frames")} != {"segments": 0, "units": 0,
                                                                                   "frames": 0}

                # The other hosts go away with their disks: a frame the chat process attaches must come
                # from the catalog (this host shares one file system with them).
                for w in workers:
                    await w.stop()
                    await asyncio.to_thread(shutil.rmtree, w.log.parent / "data")

                # the chat process answers in each channel from that channel alone, with a frame of its own
                chat_files = chat_settings.data_dir.resolve()
                for ch, sc in scopes.items():
                    question, source = QUESTIONS[ch]
                    answer = await svc.ask(sc, question)
                    cited = {c.video_id for c in answer.citations}
                    assert video_ids[source] in cited and cited <= expected[ch], (ch, answer)
                    assert answer.frame is not None and answer.frame.video_id in expected[ch], (ch, answer)
                    frame = Path(answer.frame.path).resolve()
                    assert frame.is_relative_to(chat_files) and await asyncio.to_thread(frame.is_file), frame

                # ... and cuts the clip of the moment its answer cites, from the file a worker kept
                for ch, sc in scopes.items():
                    answer = await svc.ask(sc, QUESTIONS[ch][0], thread=f"clip-{ch}")
                    clip = await svc.clip(sc, "", 0, 0, thread=f"clip-{ch}")
                    assert clip.video_id == answer.citations[0].video_id and clip.data[4:8] == b"ftyp", (ch, clip)
                    row, kept = await svc.media.find(sc, clip.video_id)
                    assert row is not None and kept is not None and kept.is_relative_to(tmp_path / "shared-volume")

                finished = {w.name: sum(j["worker"] == w.id for j in mine.values()) for w in workers}
                print(f"\nTWO_HOSTS started={started:.1f} wall={wall:.1f} jobs_by_worker={finished} "
                      f"taken_over={killed} takeover_s={takeover_s:.1f}")
            finally:
                await stop_all(workers)
                await drop_vectors(svc, [*scopes.values(), control], prefix)
    finally:
        await stop_all(workers)
        if runner is not None:
            await runner.cleanup()

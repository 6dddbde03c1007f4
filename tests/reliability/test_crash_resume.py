"""Crash and resume: a vidrag process is killed with SIGKILL in the middle of every ingest stage,
a new process starts on the same data, and every video ends indexed exactly once — the same
vectors and rows as a video indexed with no crash, no duplicate and no orphan — and the channel
hears that it is ready through the service's `on_job_event` hook (the killed process's callbacks
died with it).

One crashing process runs seven jobs at once, each paused at a different stage (see
`worker_proc.py`); the download is cut half-way by a web server that stalls after half the file.
Every test runs on both catalog backends: the one crashing process (and the one resuming it)
does the same seven jobs on a SQLite data directory and on a PostgreSQL one at the same time, so
the processes start and load their models once for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from tests.backends import BACKENDS, fresh_database, server_url
from tests.fakes.serve import serve
from tests.reliability.conftest import console

REPO = Path(__file__).resolve().parents[2]
# The module's fixture runs a crashing process and a resuming one (about two minutes here): the
# per-test limit of 60 s does not fit it. Those processes run fourteen ingests at once, on deadlines:
# scripts/test.sh runs this module beside the main run, never beside another `processes` module.
pytestmark = [pytest.mark.timeout(600), pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True),
              pytest.mark.processes("two vidrag processes of fourteen ingests at once, on deadlines")]
STAGES = ["fetch", "probe", "frames", "transcribe", "embed", "storing", "finishing"]  # Stage ids, then two steps
WINDOW_S = 10.0  # the ingest's windows in these processes: the short lectures fit in one, the demo lecture takes ~4


class StallingSite:
    """Serves one video; while `stall` is set it sends half the file and then waits forever."""

    def __init__(self, video: Path) -> None:
        self.video = video
        self.stall = True
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        data = self.video.read_bytes()
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.content_length = len(data)
        await resp.prepare(request)
        if self.stall and request.method == "GET":
            await resp.write(data[: len(data) // 2])
            await self.release.wait()
            return resp
        await resp.write(data)
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/lecture.mp4", self.handle)
        self.runner, base = await serve(app)
        self.url = f"{base}/lecture.mp4"


async def run_proc(plan: dict, path: Path) -> asyncio.subprocess.Process:
    path.write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(path.with_suffix(".log"), "w") as log:  # noqa: ASYNC230 (a local file, opened once)
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.worker_proc", str(path), cwd=str(REPO), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=log, start_new_session=True)


def partial_download(data: Path) -> bool:
    return any(p.is_file() and p.stat().st_size > 0 for p in
               (data / "videos" / console("crash-fetch").partition).rglob("download/*"))


@pytest.fixture(scope="module")
async def crash_runs(tmp_path_factory: pytest.TempPathFactory, short_lectures, lecture) -> dict:
    """{backend: what the resumed process found}, for SQLite and (when a server is at hand) PostgreSQL."""
    tmp = tmp_path_factory.mktemp("crash")
    async with contextlib.AsyncExitStack() as stack:
        backends = {"sqlite": {"data_dir": str(tmp / "sqlite" / "data"), "database_url": ""}}
        if base := os.environ.get("VIDRAG_TEST_DATABASE_URL", ""):
            db = fresh_database(base)
            url = await asyncio.to_thread(db.__enter__)
            stack.push_async_callback(asyncio.to_thread, db.__exit__, None, None, None)
            backends["postgres"] = {"data_dir": str(tmp / "postgres" / "data"), "database_url": url}
        found = await run_crash_and_resume(tmp, backends, short_lectures["volcano"], lecture[0])
    return found


async def run_crash_and_resume(tmp: Path, backends: dict, video: Path, long: Path) -> dict:
    markers = tmp / "markers"
    site = StallingSite(video)
    await site.start()
    jobs = [{"channel": f"crash-{s.replace(' ', '-')}", "source": str(video), "pause": s} for s in STAGES]
    jobs[0] = {"channel": "crash-fetch", "source": site.url, "pause": None}
    # the demo lecture (~40 s) in windows of ~WINDOW_S: killed with two windows committed and the
    # third transcribed
    jobs.append({"channel": "crash-window", "source": str(long), "pause": "window3"})
    plan = {"backends": backends, "markers": str(markers), "allow_hosts": ["127.0.0.1"], "jobs": jobs,
            "report": str(tmp / "report.json"), "window_s": WINDOW_S}
    proc = await run_proc({**plan, "mode": "crash"}, tmp / "crash.json")
    deadline = time.monotonic() + 240
    paused = [markers / b / j["channel"] for b in backends for j in jobs[1:]]
    try:
        while not (all(m.exists() for m in paused) and
                   all(partial_download(Path(b["data_dir"])) for b in backends.values())):
            assert proc.returncode is None, (tmp / "crash.log").read_text()[-3000:]
            reached = sorted(str(m.relative_to(markers)) for m in paused if m.exists())
            assert time.monotonic() < deadline, f"not all stages reached: {reached}"
            await asyncio.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: vidrag and anything it started
        await proc.wait()
    site.stall = False
    site.release.set()
    control = {"channel": "control", "source": str(video), "pause": None, "submit_on_resume": True}
    control_long = {"channel": "control-window", "source": str(long), "pause": None, "submit_on_resume": True}
    proc = await run_proc({**plan, "jobs": [*jobs, control, control_long], "mode": "resume"}, tmp / "resume.json")
    try:
        await asyncio.wait_for(proc.wait(), 300)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
        await site.runner.cleanup()  # type: ignore[union-attr]
    assert proc.returncode == 0, (tmp / "resume.log").read_text()[-3000:]
    found = json.loads((tmp / "report.json").read_text())
    for b in found:  # the windows each process transcribed, by the first sample of each
        found[b]["spans"] = {f.name.removeprefix("spans-"): [int(x) for x in f.read_text().split()]
                             for f in (markers / b).glob("spans-*")}
    return found


@pytest.fixture
def crash(crash_runs: dict, catalog_backend: str) -> dict:
    """What the resumed process found on this test's backend."""
    if catalog_backend not in crash_runs:
        server_url()  # skips, or fails where PostgreSQL is required (VIDRAG_REQUIRE_POSTGRES)
    return crash_runs[catalog_backend]


@pytest.mark.parametrize("stage", STAGES)
async def test_killed_at_stage_ends_indexed_once(crash: dict, stage: str) -> None:
    ch = f"crash-{stage.replace(' ', '-')}"
    got, control = crash["final"][ch], crash["final"]["control"]
    assert [v["status"] for v in got["videos"]] == ["ready"]
    assert [(j["status"], j["attempts"]) for j in got["jobs"]] == [("done", 2)]  # killed once, then retried
    text_ids = [i for i, _ in got["text"]]
    frame_ids = [i for i, _ in got["frames"]]
    assert len(text_ids) == len(set(text_ids)) and len(frame_ids) == len(set(frame_ids))  # no duplicate
    assert {v for _, v in got["text"] + got["frames"]} == {got["videos"][0]["id"]}  # no orphan
    assert (len(text_ids), len(frame_ids)) == (len(control["text"]), len(control["frames"])) != (0, 0)
    assert (got["segments"], got["frame_rows"]) == (control["segments"], control["frame_rows"])
    assert not [f for f in got["files"] if "download" in f or f.endswith(".wav")]  # temporary files gone


@pytest.mark.parametrize("stage", STAGES)
async def test_channel_is_told_after_restart(crash: dict, stage: str) -> None:
    ch = f"crash-{stage.replace(' ', '-')}"
    heard = [e for e in crash["events"] if e["channel"] == ch]
    assert heard[0]["stage"] == "queued" and "Resuming" in heard[0]["message"]
    assert heard[-1]["stage"] == "done" and not heard[-1]["listened"]  # only the hook could tell them


async def test_killed_mid_video_resumes_after_its_last_committed_window(crash: dict) -> None:
    got, control = crash["final"]["crash-window"], crash["final"]["control-window"]
    assert [v["status"] for v in got["videos"]] == ["ready"]
    assert [(j["status"], j["attempts"]) for j in got["jobs"]] == [("done", 2)]
    # two windows were committed when it was killed: the resumed ingest kept them, transcribed
    # the third again (the one under way), and none of the first two
    done = crash["spans"]["crash-window"]
    once = crash["spans"]["control-window"]
    assert len(once) >= 4 and sorted(set(done)) == once  # every window of the video, no other
    redone = [s for s in set(done) if done.count(s) > 1]
    print(f"killed mid-video: {len(once)} windows, {len(done)} transcriptions in all, {len(redone)} redone")
    assert len(redone) <= 1 and redone == once[2:3], done
    assert crash["after_reconcile"]["crash-window"]["text"]  # committed windows kept by the reconcile
    # and the video is stored exactly as one indexed without a crash: no duplicate, nothing missing
    text_ids = [i for i, _ in got["text"]]
    frame_ids = [i for i, _ in got["frames"]]
    assert len(text_ids) == len(set(text_ids)) and len(frame_ids) == len(set(frame_ids))
    def windowed(ids: list[str]) -> list[str]:  # ids less the video's own id: each window's start, each row's number
        return sorted(i.split(":", 1)[1] for i in ids)

    assert windowed(text_ids) == windowed([i for i, _ in control["text"]])
    assert windowed(frame_ids) == windowed([i for i, _ in control["frames"]])
    assert (got["segments"], got["frame_rows"]) == (control["segments"], control["frame_rows"]) != (0, 0)


def test_reconcile_requeued_every_job_and_removed_orphan_vectors(crash: dict) -> None:
    assert crash["reconcile"]["requeued"] == len(STAGES) + 1
    assert crash["before"]["crash-storing"]["text"], "the crash mid-store should have left text vectors"
    assert crash["after_reconcile"]["crash-storing"]["text"] == []
    assert not [f for f in crash["after_reconcile"]["crash-fetch"]["files"] if "download" in f]
    assert any(".part" in f or "download" in f for f in crash["before"]["crash-fetch"]["files"])
    assert all(o == "ready" for o in crash["outcomes"].values()), crash["outcomes"]

"""A full disk is the operator's problem, not the video's (issue 23). On the embedded default
(SQLite and Milvus Lite under DATA_DIR) with DATA_DIR on a small tmpfs that the test fills:

- an ingest that runs out of room goes back to the queue, its attempt not counted (the video was
  blamed and dropped: "I couldn't read the sound track of that video; it may be corrupt");
- the channel hears "the bot is out of disk space; your video will be indexed when there is room",
  and the log names the full path;
- the worker backs off and logs once, however often it finds the disk full (it logged a traceback
  a second);
- questions keep working, new ingests are refused with the same sentence while free space is under
  MIN_FREE_MB (`vidrag ingest` queued the job and never returned), and once there is room the video
  is indexed, once.

A tmpfs is mounted by the test, so it needs root.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.chat import present
from core.chat.present import PLAIN
from core.config import Settings
from core.errors import DISK_FULL, NOT_QUEUED, BadSource, DiskFull, disk_full
from core.ingest import media
from core.service import JobEvent, Service
from tests.reliability.conftest import console
from tests.reliability.servers import REPO, is_root
from tests.reliability.test_servers import QUESTION, vector_ids

root_only = pytest.mark.skipif(not is_root(), reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs: a file system of the test's own to fill."""
    if not is_root():
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(disk: Path, leave_kb: int) -> Path:
    """Fill `disk` but for about `leave_kb` KB; the filler file's path (remove it to make room)."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave_kb * 1024))
    return filler


# ---- recognising a full disk --------------------------------------------------------------------
def test_a_full_disk_is_recognised_behind_whatever_blamed_the_video() -> None:
    def blamed(cause: BaseException) -> BadSource:
        try:
            raise cause
        except BaseException as e:
            try:
                raise BadSource("I couldn't read the sound track of that video; it may be corrupt.") from e
            except BadSource as wrapped:
                return wrapped

    enospc = OSError(errno.ENOSPC, "No space left on device", "/data/videos/s_1/v/audio.wav")
    assert (found := disk_full(blamed(enospc))) is not None and found.path == "/data/videos/s_1/v/audio.wav"
    assert disk_full(blamed(sqlite3.OperationalError("database or disk is full"))) is not None
    assert disk_full(ExceptionGroup("lanes", [ValueError("x"), blamed(enospc)])) is not None
    assert disk_full(RuntimeError("ERROR: [Errno 28] No space left on device: 'f.mp4.part'")) is not None
    assert disk_full(blamed(OSError(errno.EACCES, "Permission denied"))) is None
    assert disk_full(BadSource("That file isn't a video I can read.")) is None


@root_only
async def test_ffmpeg_that_runs_out_of_room_says_so_instead_of_blaming_the_video(small_disk: Path,
                                                                                 short_lectures) -> None:
    await asyncio.to_thread(fill, small_disk, 8)
    with pytest.raises(DiskFull) as e:
        await media.extract_audio(short_lectures["volcano"], small_disk / "audio.wav")
    assert e.value.message == DISK_FULL and e.value.path == str(small_disk / "audio.wav")


# ---- an ingest on a full disk -------------------------------------------------------------------
@root_only
@pytest.mark.timeout(240)  # two ingests, a full disk's backoff, and the models' first load in a fresh run
async def test_full_disk_sends_the_video_back_to_the_queue_and_questions_keep_working(
        small_disk: Path, models, short_lectures, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="core.jobs.worker")
    data = small_disk / "data"
    # MIN_FREE_MB under what is left, so the worker starts the ingest and meets the full disk itself
    settings = Settings(data_dir=data, clip_pretrained="random", ocr=False, min_free_mb=0.02, job_lease_seconds=10)
    events: list[JobEvent] = []

    async def hook(e: JobEvent) -> None:
        events.append(e)

    async with Service.open(settings, models=models, chat=None) as svc:
        svc.on_job_event(hook)
        svc.start_workers(1)
        asked, told = console("room-asked"), console("room-told")
        await svc.wait((await svc.submit(asked, str(short_lectures["volcano"]))).job.id)

        filler = await asyncio.to_thread(fill, small_disk, 64)  # the audio track alone needs ~100 KB
        sub = await svc.submit(told, str(short_lectures["bread"]))
        with pytest.raises(DiskFull) as refused_wait:  # what `vidrag ingest` hears
            await asyncio.wait_for(svc.wait(sub.job.id), 60)
        t_full = time.monotonic()
        await asyncio.sleep(6)  # the worker meets the full disk again and again meanwhile

        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "disk" in r.getMessage()]
        answer = await svc.ask(asked, QUESTION)  # questions keep working
        strict = Service(replace(settings, min_free_mb=1), svc.catalog, svc.vectors, models, None)
        with pytest.raises(DiskFull) as refused:  # a new ingest, while free space is under MIN_FREE_MB
            await strict.submit(told, str(short_lectures["tides"]))
        during = await svc.queue.get(sub.job.id)

        await asyncio.to_thread(filler.unlink)
        t_room = time.monotonic()
        video = await asyncio.wait_for(svc.wait(sub.job.id), 120)
        back_s = time.monotonic() - t_room
        done = await svc.queue.get(sub.job.id)
        ids = await vector_ids(svc, told)
    print(f"\nDISK_FULL question answered while full; job indexed {back_s:.1f} s after room was made "
          f"({time.monotonic() - t_full:.1f} s after the disk filled)")
    assert refused_wait.value.message == DISK_FULL
    # queued, and told so; or, once the catalog's own disk was at 0, not even queued, and told that
    assert refused.value.message in (DISK_FULL, NOT_QUEUED)
    assert answer.citations
    assert during is not None and during.status in ("queued", "running") and during.attempts <= 1 and not during.error
    told = [present.progress(PLAIN, "bread.mp4", e.progress) for e in events
            if e.job.id == sub.job.id and e.progress.message == DISK_FULL]
    assert told and DISK_FULL in told[0]  # the job's progress message in the channel says it
    assert not any(e.job.id == sub.job.id and e.progress.stage.value == "failed" for e in events)
    assert len(said) == 1 and f"out of disk space at {small_disk}" in said[0], said  # once, naming the path
    assert video.status == "ready" and done is not None and (done.status, done.attempts) == ("done", 1)
    for coll, got in ids.items():
        assert got and len(got) == len(set(got)), (coll, sorted(got))


@root_only
@pytest.mark.allow_blocking("the test runs the command line as an operator would")
def test_vidrag_ingest_on_a_full_disk_returns_with_the_sentence(small_disk: Path, short_lectures) -> None:
    fill(small_disk, 512)  # well under the default MIN_FREE_MB (500 MB)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "DATA_DIR": str(small_disk / "data"), "OCR": "false"}
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "adapters.console", "ingest", str(short_lectures["rust"])], env=env,
                       cwd=small_disk, capture_output=True, text=True, timeout=50, check=False)
    print(f"\n`vidrag ingest` on a full disk returned in {time.monotonic() - t0:.1f} s")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == DISK_FULL, p.stderr
    assert "Traceback" not in p.stderr

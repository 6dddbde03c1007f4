"""A process's start: the running jobs of workers that died are taken back, and what their attempts
left (vectors of videos that are not ready, past their last committed window, temporary and
orphaned files) is cleared, before this process's workers run the jobs again from that window on
(`JobRunner`, `core.jobs.worker`)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from core.models import Job, Progress, Scope, Stage, VideoStatus

if TYPE_CHECKING:
    from core.jobs.worker import JobRunner

log = logging.getLogger(__name__)


async def recover(runner: JobRunner) -> tuple[list[Job], list[Job]]:
    """Take back at once the running jobs of workers on this host whose process is gone (a
    SIGKILL, an OOM kill): re-queue them, their videos queued again, or dead-letter those out of
    attempts. Returns (re-queued, dead). A job of a live process, or of another host, is left
    alone: only its lease's expiry frees it (`JobQueue.recover`, `worker_gone`).

    Cheap (one read of the running jobs), so every process may run it when it opens the data,
    not only a bot at start-up: a command-line process runs no background worker, and without
    this the job of a killed `vidrag ingest` would stay `running` until its lease expired."""
    requeued, dead = await runner.queue.recover(runner.worker_id)
    for job in requeued:
        log.info("re-queued job %s (%s) of a worker that stopped", job.id, job.source)
        await runner.store(job.scope).update_video(job.video_id, status=VideoStatus.QUEUED)
        await runner.emit(job, Progress(job.id, job.video_id, Stage.QUEUED, 0.0, "", 0.0,
                                      "Resuming after a restart."))
    for job in dead:
        await runner.dead_lettered(job)
    if requeued:
        runner.wake.set()
    return requeued, dead

async def reconcile(runner: JobRunner) -> dict[str, int]:
    """At start-up: re-queue the jobs of workers that died (`recover`), remove vectors of
    videos that are not ready and that no live worker is indexing (those past the last committed
    window of a video whose job waits in the queue), and remove temporary and
    orphaned files. Returns counts of what it did."""
    requeued, dead = await recover(runner)
    live = await runner.queue.live_videos(runner.worker_id)
    counts = {"requeued": len(requeued), "dead": len(dead), "stray_videos": 0, "files": 0}
    partitions: dict[str, str] = {}
    for key in await runner.queue.scopes():
        scope = Scope.parse(key)
        partitions[scope.partition] = key
        store = runner.store(scope)
        videos = {v.id: v for v in await store.videos()}
        ready = {k for k, v in videos.items() if v.status == VideoStatus.READY}
        busy = {v for s, v in live if s == key}
        waiting = {vid for vid, v in videos.items() if v.status in (VideoStatus.QUEUED, VideoStatus.INDEXING)
                   and vid not in busy and await runner.queue.active_for_video(scope, vid) is not None}
        stray = await store.vector_video_ids() - ready - busy
        if stray:
            log.info("removing vectors of %d unfinished videos in %s", len(stray), key)
            for vid in sorted(stray):
                # a video whose job waits keeps its committed windows: the job resumes after them
                await store.drop_after(vid, videos[vid].indexed_to if vid in waiting else 0.0)
            counts["stray_videos"] += len(stray)
        for vid, v in videos.items():
            if v.status in (VideoStatus.QUEUED, VideoStatus.INDEXING) and vid not in busy and vid not in waiting:
                await store.update_video(vid, status=VideoStatus.FAILED, error="Indexing was interrupted.")
        counts["files"] += await asyncio.to_thread(
            _clear_channel, runner.settings.data_dir / "videos" / scope.partition, set(videos), busy)
    counts["files"] += await asyncio.to_thread(_clear_orphans, runner.settings.data_dir / "videos", set(partitions))
    return counts

def _clear_channel(root: Path, videos: set[str], busy: set[str]) -> int:
    n = 0
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.name not in videos:
            shutil.rmtree(d, ignore_errors=True)  # a forget that crashed before its files went
            n += 1
        elif d.name not in busy:
            n += clear_temporary(d)
    return n


def _clear_orphans(root: Path, partitions: set[str]) -> int:
    n = 0
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.name not in partitions:
            shutil.rmtree(d, ignore_errors=True)  # a wipe that crashed before its files went
            n += 1
    return n


def clear_temporary(work: Path) -> int:
    """Remove an attempt's temporary files (the download folder, the audio track)."""
    n = 0
    if (work / "download").exists():
        shutil.rmtree(work / "download", ignore_errors=True)
        n += 1
    if (work / "audio.wav").exists():
        (work / "audio.wav").unlink(missing_ok=True)
        n += 1
    return n

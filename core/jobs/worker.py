"""Running jobs: the worker loop, one job's life (lease renewal, success, failure, loss), progress
events, and the start-up reconciliation. `Service` owns one `JobRunner` and stays a facade.

Jobs outlive the process that queued them: after a crash, `reconcile` (at start-up) re-queues the
jobs of dead workers and clears what their attempts left (vectors, temporary files), and a worker
runs them again from the start (every stage is idempotent, and vectors are dropped before they are
written). Per-job `on_progress` callbacks live in memory and die with the process; an adapter that
wants to tell a channel about jobs queued before a restart registers a hook (`on_job_event`),
which hears every job's progress, with the job's scope and requester.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings
from core.engines.registry import Models
from core.errors import APOLOGY, UserFacingError
from core.ingest.pipeline import ingest
from core.jobs.queue import LOST, QUEUED, JobQueue, new_worker_id
from core.models import Job, Progress, Scope, Stage, Video, VideoStatus
from core.store.scoped import ScopedStore

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], Awaitable[None]]
REMOVED = "That video was removed before it was indexed."


@dataclass(frozen=True)
class JobEvent:
    """One progress report of any job, for `Service.on_job_event` hooks. `listened` says whether a
    per-job `on_progress` callback in this process heard it too (False for a job queued before a
    restart: then nobody else will tell the channel)."""

    job: Job
    progress: Progress
    listened: bool


JobHook = Callable[[JobEvent], Awaitable[None]]


class JobRunner:
    """This process's workers and everything it knows about jobs in memory (callbacks, waiters,
    submitters' headers, running tasks)."""

    def __init__(self, settings: Settings, queue: JobQueue, store: Callable[[Scope], ScopedStore],
                 models: Models) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.models = models
        self.worker_id = new_worker_id()
        self.auth_headers: dict[str, dict[str, str]] = {}  # platform -> headers for its file URLs
        self.listeners: dict[str, list[ProgressCallback]] = {}
        self.hooks: list[JobHook] = []
        self.done: dict[str, asyncio.Future[Video]] = {}
        self.headers: dict[str, dict[str, str]] = {}  # job id -> headers, never written to disk
        self.wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(max(1, settings.ingest_workers))  # ingests at once, however many workers
        self._running: dict[str, asyncio.Task[Any]] = {}  # job id -> its ingest, to cancel on forget/wipe
        self._ended: dict[str, asyncio.Event] = {}  # job id -> set once run_job has cleaned up

    def workdir(self, scope: Scope, video_id: str) -> Path:
        return self.settings.data_dir / "videos" / scope.partition / video_id

    # ---- the loop -------------------------------------------------------------------------------
    def start(self, n: int) -> None:
        """Have `n` worker loops running: a second call tops them up, it does not add `n` more
        (the console's chat started one per ingest, and they piled up)."""
        self._workers = [t for t in self._workers if not t.done()]
        if not self._workers:
            self.queue.catalog.listen(self.wake.set)  # PostgreSQL: NOTIFY from any process wakes us
        for i in range(len(self._workers), n):
            self._workers.append(asyncio.create_task(self._worker(), name=f"ingest-worker-{i}"))

    async def stop(self) -> None:
        for t in self._workers:
            t.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    async def _worker(self) -> None:
        while True:
            try:
                for dead in await self.queue.reap():
                    await self._dead_lettered(dead)
                async with self._slots:
                    job = await self.queue.lease(self.worker_id)
                    if job is not None:
                        await self.run_job(job)
                        continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the catalog was busy past its timeout, a disk error: log, wait, go on
                log.exception("ingest worker error")
                await asyncio.sleep(1)
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=min(5.0, self.queue.lease_s / 3))

    # ---- one job --------------------------------------------------------------------------------
    async def run_job(self, job: Job) -> None:
        store = self.store(job.scope)
        video = await store.video(job.video_id)
        if video is None:  # forgotten while queued
            await self.queue.finish(job.id)
            return
        if video.status == VideoStatus.READY:  # indexed already (an earlier attempt got that far)
            await self.queue.finish(job.id)
            await self.emit(job, Progress(job.id, job.video_id, Stage.DONE, 1.0, video.title, video.duration))
            self._resolve(job.id, video)
            return
        title, duration = video.title, video.duration

        async def report(stage: Stage, fraction: float, message: str) -> None:
            nonlocal title
            title = message or title
            await self.queue.stage(job.id, stage)
            await self.emit(job, Progress(job.id, job.video_id, stage, fraction, title, duration))

        work = self.workdir(job.scope, job.video_id)
        await asyncio.to_thread(clear_temporary, work)  # what a killed attempt left
        await store.update_video(job.video_id, status=VideoStatus.INDEXING)
        headers = self.headers.pop(job.id, None)
        if job.needs_auth and headers is None:
            headers = self.auth_headers.get(job.scope.platform, {})
        task = asyncio.create_task(ingest(job.video_id, job.source, store, self.models, self.settings, work,
                                          report, headers=headers, allow_local=job.scope.platform == "console"))
        self._running[job.id] = task
        self._ended[job.id] = ended = asyncio.Event()
        lost = False

        async def keep_lease() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(self.queue.lease_s / 3)
                if not await self.queue.renew(job.id, self.worker_id):
                    lost = True  # forgotten, or taken over after we stalled past the lease
                    task.cancel()
                    return

        renewer = asyncio.create_task(keep_lease())
        try:
            result = await task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # shutting down: the job stays leased; `reconcile` or lease expiry re-queues it
            await self._abandoned(job, store, lost)
        except UserFacingError as e:
            await self._failed(job, store, e.message, retry=False)
        except Exception:
            log.exception("ingest of %s failed", job.source)
            await self._failed(job, store, APOLOGY, retry=True)
        else:
            stats = json.dumps({"stages": result.stages, **result.counts, "language": result.language})
            if not await self.queue.complete(job, self.worker_id, title=result.title, duration=result.duration,
                                             url=result.url, error="", language=result.language):
                await self._abandoned(job, store, lost=await self.queue.get(job.id) is not None)
                return
            log.info("indexed %s (%s) in %s: %s", job.video_id, result.title, job.scope.key, stats)
            await self.emit(job, Progress(job.id, job.video_id, Stage.DONE, 1.0, result.title, result.duration,
                                          message=stats))
            self._resolve(job.id, await store.video(job.video_id))
        finally:
            renewer.cancel()
            if not task.done():
                task.cancel()
            self._running.pop(job.id, None)
            self._ended.pop(job.id, None)
            ended.set()

    async def _abandoned(self, job: Job, store: ScopedStore, lost: bool) -> None:
        """The job stopped being ours mid-way. If another worker holds it now, leave everything to
        it; if it was forgotten or wiped, remove what this attempt wrote after the deletion."""
        if lost and await self.queue.get(job.id) is not None:
            log.warning("lost the lease of job %s; another worker has it", job.id)
            return
        log.info("job %s was cancelled (its video was forgotten)", job.id)
        if await store.video(job.video_id) is None:
            await store.drop_vectors([job.video_id])
            await self._remove_files(job)
        self.reject(job.id, REMOVED)

    async def _failed(self, job: Job, store: ScopedStore, message: str, retry: bool) -> bool:
        """Nothing of a failed attempt stays searchable; a user error removes the video entirely.
        True when the job was queued again."""
        await store.drop_vectors([job.video_id])
        state = await self.queue.fail(job.id, self.worker_id, message, retry)
        if state == LOST:
            return False
        if state == QUEUED:
            await store.update_video(job.video_id, status=VideoStatus.QUEUED)
            self.wake.set()
            return True
        final = (await self.queue.get(job.id) or job).error or message
        if retry:
            await store.update_video(job.video_id, status=VideoStatus.FAILED, error=final)
        else:
            await store.delete_video(job.video_id, keep_jobs=True)
        await self._remove_files(job)
        await self.emit(job, Progress(job.id, job.video_id, Stage.FAILED, 0.0, "", 0.0, final))
        self.reject(job.id, final)
        return False

    async def _dead_lettered(self, job: Job) -> None:
        """A job whose worker crashed on every attempt: clear its traces and tell the channel."""
        log.warning("job %s (%s) dead-lettered: %s", job.id, job.source, job.error)
        await self.store(job.scope).drop_vectors([job.video_id])
        await self._remove_files(job)
        await self.emit(job, Progress(job.id, job.video_id, Stage.FAILED, 0.0, "", 0.0, job.error))
        self.reject(job.id, job.error)

    async def _remove_files(self, job: Job) -> None:
        await asyncio.to_thread(shutil.rmtree, self.workdir(job.scope, job.video_id), True)

    # ---- telling people -------------------------------------------------------------------------
    def reject(self, job_id: str, message: str) -> None:
        fut = self.done.get(job_id)
        if fut is not None and not fut.done():
            fut.set_exception(UserFacingError(message))
            fut.exception()  # mark retrieved: nobody may be waiting
        self.listeners.pop(job_id, None)

    def _resolve(self, job_id: str, video: Video | None) -> None:
        fut = self.done.get(job_id)
        if fut is not None and not fut.done() and video is not None:
            fut.set_result(video)
        self.listeners.pop(job_id, None)

    async def emit(self, job: Job, p: Progress) -> None:
        listeners = list(self.listeners.get(p.job_id, []))
        calls = [cb(p) for cb in listeners]
        event = JobEvent(job, p, listened=bool(listeners))
        calls += [hook(event) for hook in list(self.hooks)]
        for call in calls:
            try:
                await call
            except Exception:
                log.exception("progress callback failed")

    async def stop_jobs(self, job_ids: set[str]) -> None:
        """Cancel this process's running ingests of `job_ids` and wait until they have cleaned up.
        (Another process's worker notices at its next lease renewal and cleans up the same way.)"""
        tasks = [self._running[j] for j in job_ids if j in self._running]
        for t in tasks:
            t.cancel()
        for j in job_ids:
            self.reject(j, REMOVED)
        ended = [self._ended[j].wait() for j in job_ids if j in self._ended]
        if ended:
            await asyncio.wait([asyncio.ensure_future(e) for e in ended], timeout=30)

    # ---- start-up -------------------------------------------------------------------------------
    async def recover(self) -> tuple[list[Job], list[Job]]:
        """Take back at once the running jobs of workers on this host whose process is gone (a
        SIGKILL, an OOM kill): re-queue them, their videos queued again, or dead-letter those out of
        attempts. Returns (re-queued, dead). A job of a live process, or of another host, is left
        alone: only its lease's expiry frees it (`JobQueue.recover`, `worker_gone`).

        Cheap (one read of the running jobs), so every process may run it when it opens the data,
        not only a bot at start-up: a command-line process runs no background worker, and without
        this the job of a killed `vidrag ingest` would stay `running` until its lease expired."""
        requeued, dead = await self.queue.recover(self.worker_id)
        for job in requeued:
            log.info("re-queued job %s (%s) of a worker that stopped", job.id, job.source)
            await self.store(job.scope).update_video(job.video_id, status=VideoStatus.QUEUED)
            await self.emit(job, Progress(job.id, job.video_id, Stage.QUEUED, 0.0, "", 0.0,
                                          "Resuming after a restart."))
        for job in dead:
            await self._dead_lettered(job)
        if requeued:
            self.wake.set()
        return requeued, dead

    async def reconcile(self) -> dict[str, int]:
        """At start-up: re-queue the jobs of workers that died (`recover`), remove vectors of
        videos that are not ready and that no live worker is indexing, and remove temporary and
        orphaned files. Returns counts of what it did."""
        requeued, dead = await self.recover()
        live = await self.queue.live_videos(self.worker_id)
        counts = {"requeued": len(requeued), "dead": len(dead), "stray_videos": 0, "files": 0}
        partitions: dict[str, str] = {}
        for key in await self.queue.scopes():
            scope = Scope.parse(key)
            partitions[scope.partition] = key
            store = self.store(scope)
            videos = {v.id: v for v in await store.videos()}
            ready = {k for k, v in videos.items() if v.status == VideoStatus.READY}
            busy = {v for s, v in live if s == key}
            stray = await store.vector_video_ids() - ready - busy
            if stray:
                log.info("removing vectors of %d unfinished videos in %s", len(stray), key)
                await store.drop_vectors(sorted(stray))
                counts["stray_videos"] += len(stray)
            for vid, v in videos.items():
                if v.status in (VideoStatus.QUEUED, VideoStatus.INDEXING) and vid not in busy \
                        and await self.queue.active_for_video(scope, vid) is None:
                    await store.update_video(vid, status=VideoStatus.FAILED, error="Indexing was interrupted.")
            counts["files"] += await asyncio.to_thread(
                _clear_channel, self.settings.data_dir / "videos" / scope.partition, set(videos), busy)
        counts["files"] += await asyncio.to_thread(_clear_orphans, self.settings.data_dir / "videos", set(partitions))
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

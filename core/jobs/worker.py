"""Running jobs: the worker loop, one job's life (success, failure, loss), progress events.
`Service` owns one `JobRunner` and stays a facade; `core.jobs.startup` clears what dead workers
left, `core.jobs.lease` keeps and fences an attempt's lease, `core.jobs.outages` paces the loops.

Jobs outlive the process that queued them: a worker runs them again after a crash, from the end
of the last window the ingest committed (core/ingest/pipeline.py commits a long video window by
window); what lies past it is dropped before anything is written again. Per-job
`on_progress` callbacks live in memory and die with the process; an adapter that wants to tell a
channel about jobs queued before a restart registers a hook (`on_job_event`), which hears every
job's progress, with the job's scope and requester.

What goes wrong around a job is not the video's fault, and does not count against it: a process
that stops (SIGTERM) hands its running jobs back at once (`JobQueue.release`), so another worker
starts them within a second rather than when their lease expires; an attempt that loses its lease
stores nothing; a server unreachable while storing, or a full disk (ENOSPC anywhere in the ingest,
or free space under MIN_FREE_MB), sends the job back to the queue while the worker backs off, and
the channel hears that the bot is out of disk space; the log names the full path.
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
from core.errors import APOLOGY, DISK_FULL, DiskFull, Unavailable, UserFacingError, disk_full
from core.ingest.pipeline import ingest
from core.jobs.handles import JobHandles
from core.jobs.lease import FencedStore, Lease, LeaseLost
from core.jobs.outages import Troubles
from core.jobs.queue import Failed, JobQueue, new_worker_id
from core.jobs.startup import clear_temporary
from core.models import Job, Progress, Scope, Stage, VideoStatus
from core.store.media_keep import MediaKeep
from core.store.scoped import ScopedStore

log = logging.getLogger(__name__)

REMOVED = "That video was removed before it was indexed."
HAND_BACK_S = 5.0  # at a stop, how long a running ingest gets to end before its job is handed back


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
    """This process's workers, and its jobs in memory (`jobs`: callbacks, waiters, submitters'
    headers, running tasks; core/jobs/handles.py)."""

    def __init__(self, settings: Settings, queue: JobQueue, store: Callable[[Scope], ScopedStore],
                 models: Models) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.models = models
        self.worker_id = new_worker_id()
        self.auth_headers: dict[str, dict[str, str]] = {}  # platform -> headers for its file URLs
        self.jobs = JobHandles()
        self.hooks: list[JobHook] = []
        self.wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(max(1, settings.ingest_workers))  # ingests at once, however many workers
        self._stopping = False
        self._unreleased: set[str] = set()  # jobs to hand back once the catalog can commit again
        self.troubles = Troubles(settings)  # a full disk, an outage, a loop that cannot commit

    def workdir(self, scope: Scope, video_id: str) -> Path:
        return self.settings.data_dir / "videos" / scope.partition / video_id

    # ---- the loop -------------------------------------------------------------------------------
    def start(self, n: int) -> None:
        """Have `n` worker loops running: a second call tops them up, it does not add `n` more
        (the console's chat started one per ingest, and they piled up)."""
        self._stopping = False
        self._workers = [t for t in self._workers if not t.done()]
        if not self._workers:
            self.queue.catalog.listen(self.wake.set)  # PostgreSQL: NOTIFY from any process wakes us
        for i in range(len(self._workers), n):
            self._workers.append(asyncio.create_task(self._worker(), name=f"ingest-worker-{i}"))

    async def stop(self) -> None:
        """Stop taking jobs and hand the running ones back to the queue (see `_hand_back`): a
        SIGTERM, or any other way out of `Service.open`."""
        self._stopping = True
        for t in self._workers:
            t.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        with contextlib.suppress(Exception):
            await self._release_pending()

    async def _worker(self) -> None:
        while not self._stopping:
            try:
                await self.troubles.paused()
                await self._release_pending()
                await self.troubles.wait_for_room()
                for dead in await self.queue.reap():
                    await self.dead_lettered(dead)
                async with self._slots:
                    job = await self.queue.lease(self.worker_id)
                    self.troubles.loop.ok()
                    if job is not None:
                        await self.run_job(job)
                        continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # an unreachable catalog, a full disk, a bug: back off, log once
                self.troubles.seen(e)
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=min(5.0, self.queue.lease_s / 3))

    async def _release_pending(self) -> None:
        """Hand back the jobs a full disk or an outage kept us from releasing when they stopped."""
        for job_id in list(self._unreleased):
            await self.queue.release(job_id, self.worker_id)  # False: its lease ran out and it moved on
            self._unreleased.discard(job_id)

    # ---- one job --------------------------------------------------------------------------------
    async def run_job(self, job: Job) -> None:
        base = self.store(job.scope)
        lease = Lease(self.queue, job, self.worker_id)
        store = FencedStore(base, lease)
        work = self.workdir(job.scope, job.video_id)
        try:  # the lease is fresh here: nothing to fence yet
            video = await base.video(job.video_id)
            if video is None:  # forgotten while queued
                await self.queue.finish(job.id)
                return
            if video.status == VideoStatus.READY:  # indexed already (an earlier attempt got that far)
                await self.queue.finish(job.id)
                await self.emit(job, Progress(job.id, job.video_id, Stage.DONE, 1.0, video.title, video.duration))
                self.jobs.resolve(job.id, video)
                return
            await asyncio.to_thread(clear_temporary, work)  # what a killed attempt left
            await base.update_video(job.video_id, status=VideoStatus.INDEXING)
        except Exception as e:  # a full disk or an outage before the work began: not the video's
            if (full := disk_full(e)) is not None:
                await self._back_to_queue(job, base, full)
            elif isinstance(e, Unavailable):
                await self._back_to_queue(job, base, e)
            else:
                raise
            return
        title, length = video.title, video.duration

        async def report(stage: Stage, fraction: float, message: str, *, indexed_to: float = 0.0,
                         duration: float = 0.0) -> None:
            nonlocal title, length
            title, length = message or title, duration or length
            try:
                await self.queue.stage(job.id, stage)
            except Exception as e:  # a stage shown late is no reason to stop the work
                if not (isinstance(e, Unavailable) or disk_full(e)):
                    raise
            await self.emit(job, Progress(job.id, job.video_id, stage, fraction, title, length,
                                          indexed_to=indexed_to))

        headers = self.jobs.take_headers(job.id)
        if job.needs_auth and headers is None:
            headers = self.auth_headers.get(job.scope.platform, {})
        task = asyncio.create_task(ingest(job.video_id, job.source, store, self.models, self.settings, work,
                                          report, headers=headers, allow_local=job.scope.platform == "console"))
        self.jobs.running(job.id, task)
        renewer = asyncio.create_task(lease.keep(task))
        try:
            result = await task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await self._hand_back(job, base, task)  # this process is stopping
                raise
            if lease.lost is not None and (full := disk_full(lease.lost.reason)) is not None:
                await self._back_to_queue(job, base, full)
            else:
                await self._abandoned(job, base, lease.lost is not None)
        except LeaseLost:
            await self._abandoned(job, base, lost=True)
        except Exception as e:
            if (full := disk_full(e) or await self.troubles.low_disk()) is not None:
                await self._back_to_queue(job, base, full)
            elif isinstance(e, Unavailable):
                await self._back_to_queue(job, base, e)
            elif isinstance(e, UserFacingError):
                await self._failed(job, base, e.message, retry=False)
            else:
                log.exception("ingest of %s failed", job.source)
                await self._failed(job, base, APOLOGY, retry=True)
        else:
            stats = json.dumps({"stages": result.stages, **result.counts, "language": result.language})
            renewer.cancel()
            if not await lease.complete(title=result.title, duration=result.duration, url=result.url, error="",
                                        language=result.language, indexed_to=result.duration):
                await self._abandoned(job, base, lost=True)
                return
            self.troubles.ok()
            log.info("indexed %s (%s) in %s: %s", job.video_id, result.title, job.scope.key, stats)
            if result.media:  # for clips, within MEDIA_KEEP_GB
                try:
                    await MediaKeep(self.settings, self.queue.catalog).keep(
                        job.scope, job.video_id, Path(result.media), result.media_format, result.duration)
                except Exception:  # a video without its clips is still indexed
                    log.exception("keeping the file of %s failed", job.video_id)
            await self.emit(job, Progress(job.id, job.video_id, Stage.DONE, 1.0, result.title, result.duration,
                                          message=stats))
            self.jobs.resolve(job.id, await base.video(job.video_id))
        finally:
            renewer.cancel()
            if not task.done():
                task.cancel()
            self.jobs.finished(job.id)

    async def _hand_back(self, job: Job, store: ScopedStore, task: asyncio.Task[Any]) -> None:
        """This process is stopping mid-job: end the attempt's work, let the Milvus thread finish
        what the attempt gave it (so nothing of it lands after another worker's writes), and put
        the job back in the queue for another worker at once, its attempt not counted and its video
        queued again. Bounded: a catalog that does not answer leaves the job to its lease."""
        task.cancel()
        await asyncio.wait([task], timeout=HAND_BACK_S)
        try:
            await asyncio.wait_for(store._milvus(lambda: None), HAND_BACK_S)
            await store.update_video(job.video_id, status=VideoStatus.QUEUED)
            if await self.queue.release(job.id, self.worker_id):
                log.info("job %s (%s) handed back to the queue", job.id, job.source)
        except Exception as e:  # noqa: BLE001 - stopping: the lease's expiry is the fallback
            log.warning("could not hand job %s back (%s); another worker takes it up when its lease ends",
                        job.id, e)

    async def _back_to_queue(self, job: Job, store: ScopedStore, why: DiskFull | Unavailable) -> None:
        """A full disk, or a server still unreachable past the attempt's patience: the operator's
        problem, not the video's. The job goes back to the queue (not dead-lettered, its attempt not
        counted; later, if the catalog cannot commit now), what the attempt wrote goes, and this
        worker pauses. On a full disk the log names the path, the channel hears that the video
        waits for room, and a waiting `vidrag ingest` returns with that sentence."""
        if isinstance(why, DiskFull):
            path, data = why.path or str(self.settings.data_dir.resolve()), self.settings.data_dir.resolve()
            self.troubles.disk.failed(f"out of disk space at {path} ({await self.troubles.free():.1f} MB free "
                                      f"under DATA_DIR {data}): job {job.id} goes back to the queue")
            await self._remove_files(job)  # room back
        else:
            log.warning("job %s (%s) goes back to the queue: %s", job.id, job.source, why.detail)
        with contextlib.suppress(Exception):
            await self._drop_uncommitted(store, job.video_id)
        try:
            await store.update_video(job.video_id, status=VideoStatus.QUEUED, error="")
            await self.queue.release(job.id, self.worker_id)
        except Exception as e:  # noqa: BLE001 - a full disk or an outage: the loop tries again
            log.debug("job %s: release later (%s)", job.id, e)
            self._unreleased.add(job.id)
        self.troubles.pause()
        if isinstance(why, DiskFull):
            await self.emit(job, Progress(job.id, job.video_id, Stage.QUEUED, 0.0, "", 0.0, DISK_FULL))
            self.jobs.reject(job.id, why, final=False)  # a later wait waits for the job's next attempt

    async def _abandoned(self, job: Job, store: ScopedStore, lost: bool) -> None:
        """The job stopped being ours mid-way. If another worker holds it now, leave everything to
        it; if it was forgotten or wiped, remove what this attempt wrote after the deletion."""
        try:
            held = lost and await self.queue.get(job.id) is not None
        except Unavailable:  # cannot tell: whoever holds it next drops the vectors before storing
            return
        if held:
            log.warning("lost the lease of job %s; another worker has it, or will when its lease ends", job.id)
            return
        log.info("job %s was cancelled (its video was forgotten)", job.id)
        if await store.video(job.video_id) is None:
            await store.drop_vectors([job.video_id])
            await self._remove_files(job)
        self.reject(job.id, REMOVED)

    async def _failed(self, job: Job, store: ScopedStore, message: str, retry: bool) -> bool:
        """A failed attempt's committed windows stay for its next attempt, which resumes after
        them; nothing of a video that failed for good stays searchable, and a user error removes
        the video entirely. True when the job was queued again."""
        await self._drop_uncommitted(store, job.video_id)
        state = await self.queue.fail(job.id, self.worker_id, message, retry)
        if state == Failed.LOST:
            return False
        if state == Failed.QUEUED:
            await store.update_video(job.video_id, status=VideoStatus.QUEUED)
            self.wake.set()
            return True
        final = (await self.queue.get(job.id) or job).error or message
        if retry:
            await store.drop_after(job.video_id, 0.0)
            await store.update_video(job.video_id, status=VideoStatus.FAILED, error=final)
        else:
            await store.delete_video(job.video_id, keep_jobs=True)
        await self._remove_files(job)
        await self.emit(job, Progress(job.id, job.video_id, Stage.FAILED, 0.0, "", 0.0, final))
        self.reject(job.id, final)
        return False

    async def dead_lettered(self, job: Job) -> None:
        """A job whose worker crashed on every attempt: clear its traces and tell the channel."""
        log.warning("job %s (%s) dead-lettered: %s", job.id, job.source, job.error)
        await self.store(job.scope).drop_after(job.video_id, 0.0)  # its next submission starts over
        await self._remove_files(job)
        await self.emit(job, Progress(job.id, job.video_id, Stage.FAILED, 0.0, "", 0.0, job.error))
        self.reject(job.id, job.error)

    @staticmethod
    async def _drop_uncommitted(store: ScopedStore, video_id: str) -> None:
        """What an attempt wrote past its video's last committed window (a window's vectors whose
        catalog commit never came): the committed ones stay, searchable, for the next attempt."""
        video = await store.video(video_id)
        await store.drop_after(video_id, video.indexed_to if video is not None else 0.0)

    async def _remove_files(self, job: Job) -> None:
        await asyncio.to_thread(shutil.rmtree, self.workdir(job.scope, job.video_id), True)

    # ---- telling people -------------------------------------------------------------------------
    def reject(self, job_id: str, message: str) -> None:
        self.jobs.reject(job_id, message)

    async def emit(self, job: Job, p: Progress) -> None:
        listeners = self.jobs.listeners(p.job_id)
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
        running = self.jobs.tasks(job_ids)
        for t, _ in running:
            t.cancel()
        for j in job_ids:
            self.reject(j, REMOVED)
        ended = [e.wait() for _, e in running]
        if ended:
            await asyncio.wait([asyncio.ensure_future(e) for e in ended], timeout=30)

"""The one door into the core: `submit`, `ask`, `videos`, `forget` (and `jobs`, `wipe`), each
taking a `Scope`. Adapters call nothing else.

Jobs outlive the process that queued them: after a crash, `reconcile` (at start-up) re-queues the
jobs of dead workers and clears what their attempts left (vectors, temporary files), and a worker
runs them again from the start (every stage is idempotent, and vectors are dropped before they are
written). Per-job `on_progress` callbacks live in memory and die with the process; an adapter that
wants to tell a channel about jobs queued before a restart registers `on_job_event`, which hears
every job's progress, with the job's scope and requester.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answer import (
    ChatModel,
    build_messages,
    choose_frame,
    citations_for,
    extractive,
    gather_evidence,
    make_chat,
    resolve_citations,
)
from .config import Settings
from .errors import APOLOGY, NotFound, Refused, UserFacingError
from .ingest import Models, ingest
from .jobs import DEAD, DONE, LOST, QUEUED, JobQueue, new_worker_id, scope_of
from .limits import Limits
from .models import Answer, Job, Progress, Scope, Stage, Video, VideoStatus
from .retrieve import retrieve
from .safety import neutralize
from .store import Catalog, ScopedStore, VectorStore

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass(frozen=True)
class JobEvent:
    """One progress report of any job, for `Service.on_job_event` hooks. `listened` says whether a
    per-job `on_progress` callback in this process heard it too (False for a job queued before a
    restart: then nobody else will tell the channel)."""

    job: Job
    progress: Progress
    listened: bool


JobHook = Callable[[JobEvent], Awaitable[None]]


@dataclass(frozen=True)
class Submitted:
    """What `submit` tells the adapter: the job, and whether the video was already indexed."""

    job: Job
    already: bool = False


class Service:
    def __init__(self, settings: Settings, catalog: Catalog, vectors: VectorStore, models: Models,
                 chat: ChatModel | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.vectors = vectors
        self.models = models
        self.chat = chat
        self.queue = JobQueue(catalog, settings.job_lease_seconds, settings.job_max_attempts)
        self.limits = Limits(settings)
        self.worker_id = new_worker_id()
        self.auth_headers: dict[str, dict[str, str]] = {}  # platform -> headers for its file URLs
        self._listeners: dict[str, list[ProgressCallback]] = {}
        self._hooks: list[JobHook] = []
        self._done: dict[str, asyncio.Future[Video]] = {}
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(max(1, settings.ingest_workers))  # ingests at once, however many workers
        self._submit_lock = asyncio.Lock()  # count-then-enqueue is one step in this process
        self._running: dict[str, asyncio.Task[Any]] = {}  # job id -> its ingest, to cancel on forget/wipe
        self._ended: dict[str, asyncio.Event] = {}  # job id -> set once run_job has cleaned up
        self._headers: dict[str, dict[str, str]] = {}  # job id -> headers, never written to disk

    def on_job_event(self, hook: JobHook) -> None:
        """Hear every job's progress (see `JobEvent`), including jobs queued before a restart."""
        self._hooks.append(hook)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, models: Models | None = None,
                   chat: ChatModel | None | str = "auto") -> AsyncIterator[Service]:
        """Open stores and models for `settings`; close them on exit."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        own_models = models is None
        models = models or Models(settings)
        text, image = await models.call(models.specs)  # names the collections; loads no text model
        vectors = await asyncio.to_thread(
            VectorStore, settings.milvus, text.model_id, text.dim,
            image.model_id if image else None, image.dim if image else 0)
        catalog = await Catalog.open(settings.catalog_path)
        svc = cls(settings, catalog, vectors, models, make_chat(settings) if chat == "auto" else chat)  # type: ignore[arg-type]
        try:
            yield svc
        finally:
            await svc.stop_workers()
            await catalog.close()
            await asyncio.to_thread(vectors.close)
            if own_models:
                models.close()

    def store(self, scope: Scope) -> ScopedStore:
        return ScopedStore(scope, self.vectors, self.catalog)

    # ---- indexing -------------------------------------------------------------------------------
    async def submit(self, scope: Scope, source: str, *, headers: dict[str, str] | None = None,
                     requested_by: str = "", on_progress: ProgressCallback | None = None) -> Submitted:
        """Queue `source` for indexing in `scope` and return at once. `headers` (a chat attachment's
        auth) stay in memory only; `on_progress` hears every stage of the job. A full queue or a
        too-fast sender (`requested_by`) is refused with `Refused`."""
        store = self.store(scope)
        video_id = hashlib.sha256(f"{scope.key}\n{source.strip()}".encode()).hexdigest()[:10]
        async with self._submit_lock:
            existing = await store.video(video_id)
            if existing is not None and existing.status == VideoStatus.READY:
                return Submitted(Job("", video_id, scope, source, Stage.DONE), already=True)
            active = await self.queue.active_for_video(scope, video_id)
            if active is None:
                self.limits.check_queue(await self.queue.count_active(scope),
                                        await self.queue.count_active(requested_by=requested_by) if requested_by else 0,
                                        requested_by)
                if requested_by:  # chat traffic; the operator's own CLI is not rate-limited
                    self.limits.take_ingest(scope, requested_by)
                await store.add_video(video_id, source.strip(), "", _guess_title(source))
                await store.update_video(video_id, status=VideoStatus.QUEUED, error="")
                active = await self.queue.enqueue(scope, video_id, source.strip(),
                                                  {} if headers is not None else None, requested_by)
                if headers is not None:
                    self._headers[active.id] = headers
        if on_progress is not None:
            self._listeners.setdefault(active.id, []).append(on_progress)
        self._wake.set()
        return Submitted(active)

    async def wait(self, job_id: str) -> Video:
        """Wait for a job to end: the indexed video, or the job's user-facing error raised. A job
        run by another worker process is seen through the catalog (checked every 2 s)."""
        fut = self._done.setdefault(job_id, asyncio.get_running_loop().create_future())
        while True:
            job = await self.queue.get(job_id)
            if job is None:
                raise NotFound("That indexing job no longer exists.")
            status = job.extra["status"]
            if status == DONE:
                video = await self.store(job.scope).video(job.video_id)
                if video is not None:
                    return video
            if status == DEAD:
                raise UserFacingError(job.error or APOLOGY)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(fut), timeout=2.0)

    def start_workers(self, n: int | None = None) -> None:
        for i in range(n or self.settings.ingest_workers):
            self._workers.append(asyncio.create_task(self._worker(), name=f"ingest-worker-{i}"))

    async def stop_workers(self) -> None:
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
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(5.0, self.queue.lease_s / 3))

    async def run_job(self, job: Job) -> None:
        store = self.store(job.scope)
        video = await store.video(job.video_id)
        if video is None:  # forgotten while queued
            await self.queue.finish(job.id)
            return
        if video.status == VideoStatus.READY:  # indexed already (an earlier attempt got that far)
            await self.queue.finish(job.id)
            await self._emit(job, Progress(job.id, job.video_id, Stage.DONE, 1.0, video.title, video.duration))
            self._resolve(job.id, video)
            return
        title, duration = video.title, video.duration

        async def report(stage: Stage, fraction: float, message: str) -> None:
            nonlocal title
            title = message or title
            await self.queue.stage(job.id, stage)
            await self._emit(job, Progress(job.id, job.video_id, stage, fraction, title, duration))

        work = self.workdir(job.scope, job.video_id)
        _clear_temporary(work)  # what a killed attempt left
        await store.update_video(job.video_id, status=VideoStatus.INDEXING)
        headers = self._headers.pop(job.id, None)
        if job.extra["headers"] is not None and headers is None:
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
        except Exception as e:
            log.exception("ingest of %s failed", job.source)
            await self._failed(job, store, APOLOGY, retry=True, cause=e)
        else:
            stats = json.dumps({"stages": result.stages, **result.counts})
            if not await self.queue.complete(job, self.worker_id, title=result.title, duration=result.duration,
                                             url=result.url, error=""):
                await self._abandoned(job, store, lost=await self.queue.get(job.id) is not None)
                return
            log.info("indexed %s (%s) in %s: %s", job.video_id, result.title, job.scope.key, stats)
            await self._emit(job, Progress(job.id, job.video_id, Stage.DONE, 1.0, result.title, result.duration,
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
            shutil.rmtree(self.workdir(job.scope, job.video_id), ignore_errors=True)
        self._reject(job.id, "That video was removed before it was indexed.")

    async def _failed(self, job: Job, store: ScopedStore, message: str, retry: bool,
                      cause: Exception | None = None) -> bool:
        """Nothing of a failed attempt stays searchable; a user error removes the video entirely.
        True when the job was queued again."""
        await store.drop_vectors([job.video_id])
        state = await self.queue.fail(job.id, self.worker_id, message, retry)
        if state == LOST:
            return False
        if state == QUEUED:
            await store.update_video(job.video_id, status=VideoStatus.QUEUED)
            self._wake.set()
            return True
        final = (await self.queue.get(job.id) or job).error or message
        if retry:
            await store.update_video(job.video_id, status=VideoStatus.FAILED, error=final)
        else:
            await store.delete_video(job.video_id, keep_jobs=True)
        shutil.rmtree(self.workdir(job.scope, job.video_id), ignore_errors=True)
        await self._emit(job, Progress(job.id, job.video_id, Stage.FAILED, 0.0, "", 0.0, final))
        self._reject(job.id, final)
        return False

    async def _dead_lettered(self, job: Job) -> None:
        """A job whose worker crashed on every attempt: clear its traces and tell the channel."""
        log.warning("job %s (%s) dead-lettered: %s", job.id, job.source, job.error)
        store = self.store(job.scope)
        await store.drop_vectors([job.video_id])
        shutil.rmtree(self.workdir(job.scope, job.video_id), ignore_errors=True)
        await self._emit(job, Progress(job.id, job.video_id, Stage.FAILED, 0.0, "", 0.0, job.error))
        self._reject(job.id, job.error)

    def _reject(self, job_id: str, message: str) -> None:
        fut = self._done.get(job_id)
        if fut is not None and not fut.done():
            fut.set_exception(UserFacingError(message))
            fut.exception()  # mark retrieved: nobody may be waiting
        self._listeners.pop(job_id, None)

    def _resolve(self, job_id: str, video: Video | None) -> None:
        fut = self._done.get(job_id)
        if fut is not None and not fut.done() and video is not None:
            fut.set_result(video)
        self._listeners.pop(job_id, None)

    async def _emit(self, job: Job, p: Progress) -> None:
        listeners = list(self._listeners.get(p.job_id, []))
        calls = [cb(p) for cb in listeners]
        event = JobEvent(job, p, listened=bool(listeners))
        calls += [hook(event) for hook in self._hooks]
        for call in calls:
            try:
                await call
            except Exception:
                log.exception("progress callback failed")

    def workdir(self, scope: Scope, video_id: str) -> Path:
        return self.settings.data_dir / "videos" / scope.partition / video_id

    # ---- answering ------------------------------------------------------------------------------
    async def ask(self, scope: Scope, question: str, *, thread: str | None = None, user: str = "") -> Answer:
        """Answer `question` from `scope`'s videos; `thread` keys the conversation's earlier turns.
        A question from a chat `user` counts against the channel's and the user's rate limits."""
        question = question.strip()
        if not question:
            raise Refused("Ask me a question about the videos shared in this channel.")
        if len(question) > self.settings.max_question_chars:
            raise Refused(f"That question is too long; please keep it under "
                          f"{self.settings.max_question_chars} characters.")
        if user:
            self.limits.take_question(scope, user)
        answer = await self._answer(scope, question, thread)
        # The answer quotes untrusted text (transcripts, slides, an LLM that read them): it may not
        # ping anyone or carry a link; the adapters add the citation links themselves.
        answer = Answer(neutralize(answer.text), answer.citations, answer.frame)
        if thread:
            await self.store(scope).add_turn(thread, question, answer.text)
        return answer

    async def _answer(self, scope: Scope, question: str, thread: str | None) -> Answer:
        store = self.store(scope)
        videos = {v.id: v for v in await store.videos()}
        ready = {k: v for k, v in videos.items() if v.status == VideoStatus.READY}
        if not ready:
            pending = any(v.status in (VideoStatus.QUEUED, VideoStatus.INDEXING) for v in videos.values())
            raise UserFacingError(
                "I'm still indexing this channel's first video; ask again when it's ready." if pending else
                "No videos are indexed in this channel yet. Post a video link or upload a video first.")
        history = await store.turns(thread) if thread else []
        text = await self.models.call_query(lambda: self.models.text)
        image = await self.models.call_query(lambda: self.models.image)
        moments = [m for m in await retrieve(store, question, text, image, self.models.call_query,
                                             top_k=self.settings.top_k,
                                             titles={k: v.title for k, v in ready.items()})
                   if m.hit.video_id in ready]
        if not moments:
            return Answer("I couldn't find anything about that in this channel's videos.")
        cites = citations_for(moments, ready)
        frame = await choose_frame(store, moments[0])
        evidence = await gather_evidence(store, moments, cites)
        if self.chat is None:
            answer = Answer(extractive(evidence), tuple(cites), frame)
        else:
            messages = build_messages(question, evidence, frame, history)
            try:
                reply = await self.chat.complete(messages)
            except Exception:
                log.exception("the LLM call failed; answering extractively")
                answer = Answer(extractive(evidence), tuple(cites), frame)
            else:
                body, used = resolve_citations(reply, cites)
                answer = Answer(body, tuple(used), frame)
        return answer

    # ---- listing and deleting -------------------------------------------------------------------
    async def videos(self, scope: Scope) -> list[Video]:
        return await self.store(scope).videos()

    async def jobs(self, scope: Scope) -> list[Job]:
        return await self.queue.active(scope)

    async def forget(self, scope: Scope, video_id: str) -> Video:
        """Remove one video of `scope`: vectors, frames, files and rows (its jobs too; a running
        ingest of it is stopped and what it writes afterwards removed)."""
        store = self.store(scope)
        video = await store.video(video_id)
        if video is None:
            matches = [v for v in await store.videos() if v.title.lower() == video_id.strip().lower()]
            if len(matches) != 1:
                raise NotFound(f"There is no video `{video_id}` in this channel.")
            video = matches[0]
        jobs = await self.catalog.rows("SELECT id FROM jobs WHERE scope=? AND video_id=?", (scope.key, video.id))
        await store.delete_video(video.id)
        await self._stop_jobs({r["id"] for r in jobs})
        shutil.rmtree(self.workdir(scope, video.id), ignore_errors=True)
        return video

    async def wipe(self, scope: Scope) -> int:
        """Delete everything vidrag keeps about one channel; returns the number of videos removed."""
        store = self.store(scope)
        videos = await store.videos()
        jobs = await self.catalog.rows("SELECT id FROM jobs WHERE scope=?", (scope.key,))
        await store.drop_vectors([v.id for v in videos])
        await self.catalog.transaction(
            [(f"DELETE FROM {t} WHERE scope=?", (scope.key,)) for t in ("segments", "units", "frames", "turns", "jobs", "videos")])
        await self._stop_jobs({r["id"] for r in jobs})
        await store._milvus(self.vectors.drop_partition, scope.partition)
        shutil.rmtree(self.settings.data_dir / "videos" / scope.partition, ignore_errors=True)
        return len(videos)

    async def _stop_jobs(self, job_ids: set[str]) -> None:
        """Cancel this process's running ingests of `job_ids` and wait until they have cleaned up.
        (Another process's worker notices at its next lease renewal and cleans up the same way.)"""
        tasks = [self._running[j] for j in job_ids if j in self._running]
        for t in tasks:
            t.cancel()
        for j in job_ids:
            self._reject(j, "That video was removed before it was indexed.")
        ended = [self._ended[j].wait() for j in job_ids if j in self._ended]
        if ended:
            await asyncio.wait([asyncio.ensure_future(e) for e in ended], timeout=30)

    async def reconcile(self) -> dict[str, int]:
        """At start-up: re-queue the jobs of workers that died (dead-letter those out of
        attempts), remove vectors of videos that are not ready and that no live worker is
        indexing, and remove temporary and orphaned files. Returns counts of what it did."""
        requeued, dead = await self.queue.recover(self.worker_id)
        for job in requeued:
            log.info("re-queued job %s (%s) of a worker that stopped", job.id, job.source)
            await self.store(job.scope).update_video(job.video_id, status=VideoStatus.QUEUED)
            await self._emit(job, Progress(job.id, job.video_id, Stage.QUEUED, 0.0, "", 0.0,
                                           "Resuming after a restart."))
        for job in dead:
            await self._dead_lettered(job)
        live = await self.queue.live_videos(self.worker_id)
        counts = {"requeued": len(requeued), "dead": len(dead), "stray_videos": 0, "files": 0}
        partitions: dict[str, str] = {}
        for key in await self.queue.scopes():
            scope = scope_of(key)
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
            root = self.settings.data_dir / "videos" / scope.partition
            for d in sorted(root.iterdir()) if root.is_dir() else []:
                if d.name not in videos:
                    shutil.rmtree(d, ignore_errors=True)  # a forget that crashed before its files went
                    counts["files"] += 1
                elif d.name not in busy:
                    counts["files"] += _clear_temporary(d)
        root = self.settings.data_dir / "videos"
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if d.name not in partitions:
                shutil.rmtree(d, ignore_errors=True)  # a wipe that crashed before its files went
                counts["files"] += 1
        return counts


def _clear_temporary(work: Path) -> int:
    """Remove an attempt's temporary files (the download folder, the audio track)."""
    n = 0
    if (work / "download").exists():
        shutil.rmtree(work / "download", ignore_errors=True)
        n += 1
    if (work / "audio.wav").exists():
        (work / "audio.wav").unlink(missing_ok=True)
        n += 1
    return n


def _guess_title(source: str) -> str:
    name = source.strip().rstrip("/").split("/")[-1].split("?")[0]
    return name[:120] or source[:120]

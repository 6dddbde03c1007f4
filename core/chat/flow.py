"""What the bot does with a message, once for every platform: index, then answer, then follow the job.

Each adapter used to carry its own copy of this (the Discord and the Slack copies of "post
'Queued…', edit it through the stages, answer in a thread with the frame, check who may forget")
and every change landed twice. As bolt-python's adapters do, an adapter now only translates: its
event becomes an `Incoming` and a `Port` (one conversation on its platform: where replies go,
how it marks text up, what it may upload), and the coroutines here do the rest through the port
and the `Service`.

A `Port` is small on purpose: `post` a message (with a video's summary attached, as the platform
shows one), `edit` one, `answer` (the answer's text, its best frame, its "Clip" button, in the
platform's idiom), `upload` a clip, `open` the conversation an answer goes to (a Discord thread on
the question; Slack's thread exists already), `busy` while working (Discord's "typing…"), and
`may_forget` (whether the author is one of the platform's admins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from core.chat import present
from core.chat.incoming import COMMANDS, PICTURE_ASKED, Action, Decision, Incoming, Source, run_command
from core.errors import APOLOGY, Forbidden, UserFacingError
from core.ingest.cut import Clip
from core.ingest.playlist import Playlist
from core.jobs.playlists import PlaylistRun
from core.jobs.worker import JobEvent
from core.models import Answer, Progress, Scope, Stage, Summary
from core.service import Service

log = logging.getLogger(__name__)
T = TypeVar("T")


class Port(Protocol):
    """One conversation on one platform, as the flow sees it.

    `thread` is the key the core keeps the conversation's turns and cited moments under (a
    Discord thread's id, a Slack thread's root ts). `limit` is how many characters one progress
    message holds, `interval` the seconds between two edits of one message (the platform's rate
    limit), `upload_mb` what one upload may weigh (None: the core's own limit). `admins` names
    who may forget any video here; `unsure` is what a refusal adds when `may_forget` could not
    tell (None). `summaries`: an "Indexed" message carries the video's summary (POST_SUMMARY)."""

    style: present.Style
    thread: str | None
    limit: int
    interval: float
    upload_mb: float | None
    admins: str
    unsure: str
    summaries: bool

    async def post(self, text: str, summary: Summary | None = None, *, private: bool = False) -> object:
        """Post `text` (and the summary, if any) in the conversation; the message, for `edit`.
        `private`: a refusal before any reply, for the author alone where the platform can say so."""
        ...

    async def edit(self, message: object, text: str, summary: Summary | None = None) -> None: ...

    async def answer(self, answer: Answer) -> None:
        """The answer in the platform's markup, with its frame and its "Clip" button."""
        ...

    async def upload(self, clip: Clip) -> None: ...

    async def open(self, question: str) -> Port:
        """The conversation the answer to an admitted `question` goes to."""
        ...

    def busy(self) -> AbstractAsyncContextManager[object]: ...

    async def may_forget(self) -> bool | None:
        """Whether the author is one of `admins`; None when the platform would not say (counted as no)."""
        ...


class Shown:
    """The one message that shows a job's progress. Workers call `set` (it never waits): edits
    run in one task, coalesced, at most one per `port.interval`, so a slow or rate-limited
    platform never slows the ingest, and the last text set is the last one shown."""

    def __init__(self, port: Port, message: object, text: str) -> None:
        self.port = port
        self.message = message
        self.latest: tuple[str, Summary | None] = (text, None)
        self.shown: tuple[str, Summary | None] = self.latest
        self._at = 0.0
        self._task: asyncio.Task[None] | None = None

    def set(self, text: str, summary: Summary | None = None) -> None:
        self.latest = (text, summary)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self.shown != self.latest:
            wait = self._at + self.port.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue  # the text may have moved on meanwhile
            latest = self.latest
            try:
                await self.port.edit(self.message, *latest)
            except Exception:
                log.warning("could not edit the progress message %s", self.message, exc_info=True)
                return
            self.shown, self._at = latest, loop.time()

    async def settle(self) -> None:
        """Wait until the latest text is shown (or its edit failed)."""
        while self._task is not None and not self._task.done():
            await self._task


async def act(port: Port, service: Service, msg: Incoming, decision: Decision) -> None:
    """Do what `decision` says about `msg`: the notes at once, each video indexed on its own
    progress message, then the summary, the answer, the clip or the command's reply."""
    for note in decision.notes(port.style):
        await port.post(note)
    indexed = await asyncio.gather(*(index(port, service, msg.scope, s, msg.author) for s in decision.sources))
    if decision.action in (Action.BOTH, Action.SUMMARY) and decision.sources and not any(indexed):
        return  # each progress message says why its video could not be indexed
    if decision.action == Action.SUMMARY:
        await summary(port, service, msg.scope, next((v for v in indexed if v), None) or decision.argument or None)
    elif decision.question or decision.picture:
        await ask(port, service, msg.scope, decision.question, msg.author, decision.picture)
    elif decision.action == Action.CLIP:  # the moment this thread's answer cites
        await clip(port, service.clip(msg.scope, "", 0, 0, thread=port.thread, max_mb=port.upload_mb,
                                      user=msg.author))
    elif decision.action in COMMANDS and decision.action != Action.HELP:
        await port.post(await command(port, service, msg.scope, decision.action, decision.argument, msg.author))


async def index(port: Port, service: Service, scope: Scope, source: Source, user: str) -> str | None:
    """Acknowledge at once with the message that will show progress, queue the job and follow it
    to its end on that message; the video's id once indexed, None when it could not be. A link
    that holds a playlist queues each entry, and the one message follows them all."""
    name, style = source.name, port.style
    shown = Shown(port, await port.post(present.queued(style, name)), present.queued(style, name))

    async def on_progress(p: Progress) -> None:  # called by the ingest worker: never block it
        if p.stage not in (Stage.DONE, Stage.FAILED):
            shown.set(present.progress(style, name, p))

    indexed: str | None = None
    try:
        playlist = await service.expand(source.url) if source.headers is None else None
        if playlist is not None:
            return await _playlist(port, service, shown, scope, playlist, user)
        sub = await service.submit(scope, source.url, headers=source.headers, requested_by=user,
                                   on_progress=on_progress)
        if sub.already:
            video = await service.video(scope, sub.job.video_id)
            final, indexed = present.already(style, video.title if video else name), sub.job.video_id
        else:
            video = await service.wait(sub.job.id)
            final = present.progress(style, name, Progress(sub.job.id, video.id, Stage.DONE, 1.0, video.title,
                                                           video.duration))
            indexed = video.id
            shown.set(final, await _summary_of(port, service, scope, video.id))
            await shown.settle()
            return indexed
    except UserFacingError as e:
        final = present.failed(style, name, e.message)
    except Exception:
        log.exception("indexing %s for %s failed", source.url, scope.key)
        final = present.failed(style, name, APOLOGY)
    shown.set(final)
    await shown.settle()
    return indexed


async def _playlist(port: Port, service: Service, shown: Shown, scope: Scope, playlist: Playlist,
                    user: str) -> str | None:
    """Each entry of `playlist` queued, the one message edited as they go ("7 of 25 indexed · 1
    failed: <title> — <reason>") until every entry has ended; the first entry's video id."""

    def show(run: PlaylistRun) -> None:
        shown.set(present.playlist_progress(port.style, run, port.limit))

    run = await service.submit_playlist(scope, playlist, requested_by=user, on_change=show)
    show(run)
    await run.wait(service)
    show(run)
    await shown.settle()
    return run.first_video()


async def _summary_of(port: Port, service: Service, scope: Scope, video: str) -> Summary | None:
    """The summary an "Indexed" message carries (POST_SUMMARY), or None (off, forgotten
    meanwhile, or it failed: the text alone)."""
    if not port.summaries:
        return None
    try:
        return await service.summary(scope, video)
    except Exception:
        log.info("no summary of %s in %s to post", video, scope.key, exc_info=True)
        return None


async def or_why(port: Port, doing: str, work: Awaitable[T]) -> T | None:
    """What `work` returns; or None, once the conversation is told why it failed: a
    `UserFacingError`'s message as it is, anything else logged (as `doing` failing) and answered
    with the apology."""
    try:
        return await work
    except UserFacingError as e:
        await port.post(port.style.own(e.message))
    except Exception:
        log.exception("%s failed", doing)
        await port.post(APOLOGY)
    return None


async def summary(port: Port, service: Service, scope: Scope, video: str | None) -> None:
    """The video's summary and chapters under its title (or why there are none)."""
    got = await or_why(port, "the summary", service.summary(scope, video, thread=port.thread))
    if got is not None:
        await port.post(present.summary_title(port.style, got), got)


async def ask(port: Port, service: Service, scope: Scope, question: str, user: str,
              picture: Source | None = None) -> None:
    """Answer in the conversation `port.open` gives. The question is admitted first (rate
    limits, length): a refused one opens no thread, its refusal goes to the asker (40 mentions
    in a few seconds opened 40 threads)."""
    try:
        question = service.admit(scope, question or PICTURE_ASKED, user)
    except UserFacingError as e:
        await port.post(port.style.own(e.message), private=True)
        return
    await respond(await port.open(question), service, scope, question, user, picture)


async def respond(port: Port, service: Service, scope: Scope, question: str, user: str,
                  picture: Source | None = None) -> None:
    """The answer to an admitted question (or to the `picture` posted), in `port`'s conversation."""
    async with port.busy():
        # the posted picture is never sent back: only the stored frame it shows
        asked = service.ask_picture(scope, picture.url, picture.headers or {}, thread=port.thread) if picture \
            else service.ask(scope, question, thread=port.thread, user=user, admitted=True)
        answer = await or_why(port, f"answering in {scope.key}", asked)
    if answer is not None:
        await port.answer(answer)


async def clip(port: Port, work: Awaitable[Clip]) -> None:
    """Upload the clip `work` cuts (or say why there is none)."""
    async with port.busy():
        got = await or_why(port, "the clip", work)
        if got is not None:
            await port.upload(got)


async def command(port: Port, service: Service, scope: Scope, action: Action, argument: str, user: str) -> str:
    """The reply to a command: a user-facing error's message, or the apology. `forget` is the
    core's to allow (`Service.forget`): to the person who posted the video, or to one the
    platform counts among its `admins`."""
    admin: bool | None = False
    try:
        if action == Action.FORGET and argument:
            admin = await port.may_forget()
        return await run_command(service, scope, action, argument, port.style, user=user, admin=bool(admin),
                                 admins=port.admins)
    except Forbidden as e:
        return port.style.own(e.message) + (port.unsure if admin is None else "")
    except UserFacingError as e:
        return port.style.own(e.message)
    except Exception:
        log.exception("the %s command in %s failed", action, scope.key)
        return APOLOGY


def ended(event: JobEvent, platform: str) -> bool:
    """Whether `event` is the end of a job of `platform` that no progress message of this process
    follows (one queued before a restart): then the channel is told (`tell_ended`)."""
    p = event.progress
    return not event.listened and event.job.scope.platform == platform and p.stage in (Stage.DONE, Stage.FAILED)


async def tell_ended(port: Port, service: Service, event: JobEvent) -> None:
    """How a job queued before a restart ended, posted in its channel (with the summary, if POST_SUMMARY)."""
    p, job = event.progress, event.job
    text = present.after_restart(port.style, job, p)
    got = await _summary_of(port, service, job.scope, p.video_id) if p.stage == Stage.DONE else None
    try:
        await port.post(text, got)
    except Exception:
        log.exception("could not tell %s how job %s ended", job.scope.key, job.id)


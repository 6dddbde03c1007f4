"""A posted playlist's entries as jobs, followed together: each entry is submitted as a video of
its own (`Service.submit`: the queue and rate limits, the catalog's one video per link and
channel), and `PlaylistRun` keeps what became of each, for the ONE message that shows the whole
list (worded by `core.chat.present.playlist_progress`).

An entry a limit refuses is named with the refusal and the rest go on; an entry already indexed
or already waiting in this channel is named as such and not queued again, so a playlist posted
twice indexes nothing twice (the second post follows the first one's jobs). Entries past
`MAX_PLAYLIST_VIDEOS` are named as skipped, never submitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from core.errors import APOLOGY, UserFacingError
from core.ingest.playlist import Entry, Playlist
from core.models import Progress, Scope, Stage

if TYPE_CHECKING:
    from core.service import Service

log = logging.getLogger(__name__)


class State(StrEnum):
    QUEUED = "queued"  # submitted, not started
    INDEXING = "indexing"
    WAITING = "waiting"  # already queued or being indexed in this channel before this post
    DONE = "done"
    ALREADY = "already"  # indexed in this channel before this post
    FAILED = "failed"  # the job ended without a video
    REFUSED = "refused"  # not queued: a limit, the address guard, a nested playlist


ENDED = frozenset({State.DONE, State.ALREADY, State.FAILED, State.REFUSED})


@dataclass
class Item:
    entry: Entry
    state: State = State.QUEUED
    message: str = ""  # why it failed or was refused
    title: str = ""  # the indexed video's title, once known
    job_id: str = ""
    video_id: str = ""

    @property
    def name(self) -> str:
        """What to call the entry: the indexed video's title, else the playlist's ("" when neither
        is known: `core.chat.present.entry_name` names it by its address)."""
        return self.title or self.entry.title


class PlaylistRun:
    """What became of a playlist's entries; `on_change` is called (synchronously: it must only
    record or schedule) after every change, from the ingest worker too."""

    def __init__(self, playlist: Playlist, on_change: Callable[[PlaylistRun], None] | None = None) -> None:
        self.playlist = playlist
        self.items = [Item(e) for e in playlist.entries]
        self.on_change = on_change

    # ---- counts, for the message ------------------------------------------------------------------
    def count(self, *states: State) -> int:
        return sum(1 for i in self.items if i.state in states)

    def with_state(self, *states: State) -> list[Item]:
        return [i for i in self.items if i.state in states]

    @property
    def finished(self) -> bool:
        return all(i.state in ENDED for i in self.items)

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:
                log.exception("a playlist's progress callback failed")

    # ---- submitting and following -----------------------------------------------------------------
    async def submit(self, service: Service, scope: Scope, requested_by: str = "") -> None:
        """Submit every entry in order; a refusal names its entry and the next one is tried."""
        for item in self.items:
            if item.entry.problem:
                item.state, item.message = State.REFUSED, item.entry.problem
                continue
            try:
                sub = await service.submit(scope, item.entry.url, requested_by=requested_by,
                                           on_progress=self._follower(item))
            except UserFacingError as e:  # a limit, a full disk (the message says whether it waits)
                item.state, item.message = State.REFUSED, e.message
                continue
            item.job_id, item.video_id = sub.job.id, sub.job.video_id
            if sub.already:
                item.state = State.ALREADY
                video = await service.video(scope, sub.job.video_id)
                item.title = video.title if video is not None else ""
            elif sub.waiting:
                item.state = State.WAITING
        self._changed()

    def _follower(self, item: Item) -> Callable[[Progress], Awaitable[None]]:
        async def on_progress(p: Progress) -> None:
            if item.state in ENDED:
                return
            if p.stage == Stage.DONE:
                item.state, item.title = State.DONE, p.title or item.title
            elif p.stage == Stage.FAILED:
                item.state, item.message = State.FAILED, p.message or APOLOGY
            elif p.stage != Stage.QUEUED:
                item.state = State.INDEXING if item.state != State.WAITING else item.state
                item.title = p.title or item.title
            self._changed()

        return on_progress

    async def wait(self, service: Service) -> None:
        """Until every submitted entry has ended (a job of another process too: `Service.wait`
        reads the catalog)."""

        async def one(item: Item) -> None:
            try:
                video = await service.wait(item.job_id)
            except UserFacingError as e:
                if item.state not in ENDED:
                    item.state, item.message = State.FAILED, e.message
            except Exception:
                log.exception("waiting for job %s of a playlist failed", item.job_id)
                if item.state not in ENDED:
                    item.state, item.message = State.FAILED, APOLOGY
            else:
                if item.state not in ENDED:
                    item.state, item.title = State.DONE, video.title
            self._changed()

        await asyncio.gather(*(one(i) for i in self.items if i.job_id and i.state not in ENDED))

    def first_video(self) -> str | None:
        """The first entry indexed (now or before), for a question asked with the playlist."""
        return next((i.video_id for i in self.items if i.state in (State.DONE, State.ALREADY)), None)

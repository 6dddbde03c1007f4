"""A clip of a cited moment, cut in the jail: which seconds (`span`), why there is none (the
sentences a channel hears), and the parent's side of the cut. The span is the citation's, padded
by `PAD` seconds on each side and kept inside the video, at most `MAX_SECONDS` long.

The clip task (core/ingest/child.py's `clip`, core/ingest/clip.py) runs in a jailed child on the
kept file (core/store/media_keep.py) with the ingest's limits (memory, CPU, file size, open files,
a deadline, no network, Landlock; core/ingest/jail.py), and what it announces is believed only
once it is checked: `clip.mp4`, a regular file in the job folder, no larger than the limit and the
size announced, an ISO-BMFF file (`ftyp` first), one H.264 and one AAC stream, as long as the span
asked (within `TOLERANCE`).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import BadSource, NotFound, Refused, UserFacingError
from core.ingest.fetch import inside
from core.ingest.jail import Jail, Limits, child_settings
from core.models import Answer, Scope, Video, VideoStatus, fmt_time
from core.store.catalog import Catalog
from core.store.media_keep import MediaKeep
from core.text.safety import one_line

TOLERANCE = 0.5  # seconds a clip's length may differ from its span
AT_ONCE = 2  # clips one process cuts at once (each an encode in a jailed child)
UNREADABLE = "I couldn't cut a playable clip from that video."
PAD = 2.0  # seconds before and after the cited span
MAX_SECONDS = 60.0

NOT_KEPT = ("I don't keep video files here (MEDIA_KEEP_GB=0), so I can't post clips; the timestamps "
            "link to the moment instead.")
NO_ANSWER = "There's no answer in this thread to clip; ask me a question first, then say `clip` in its thread."
REMOVED = "The video that answer cites was removed from this channel since, so there is nothing to clip."
GONE = ("I no longer keep the file of “{title}” (older files make room for newer ones within MEDIA_KEEP_GB), "
        "so I can't cut a clip of it.")
ELSEWHERE = ("The file of “{title}” is kept on another machine that this one can't read (MEDIA_DIR must be "
             "a volume every vidrag process shares), so I can't cut a clip of it here.")
PAST_END = "{at} is past the end of “{title}”, which is {length} long."
NOT_READY = "“{title}” isn't indexed, so I can't cut a clip of it yet."
BAD_SPAN = "A clip needs a start before its end (say 1:00 to 1:20)."


@dataclass(frozen=True)
class Clip:
    """An MP4 ready to post: its bytes, and which moment of which video it shows."""

    data: bytes
    video_id: str
    title: str
    start: float
    end: float
    duration: float
    width: int
    height: int

    @property
    def filename(self) -> str:
        return f"clip-{fmt_time(self.start).replace(':', '-')}.mp4"

    def to_json(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "title": self.title, "start": round(self.start, 3),
                "end": round(self.end, 3), "duration": round(self.duration, 3), "width": self.width,
                "height": self.height, "bytes": len(self.data)}


def span(start: float, end: float, duration: float, title: str) -> tuple[float, float]:
    """The seconds a clip of the cited [start, end] shows: padded, inside the video, ≤60 s;
    `UserFacingError` for a span that is not one or lies past the end (`title` already made
    fit to show: `one_line`)."""
    if not (math.isfinite(start) and math.isfinite(end)) or end < start or start < 0:
        raise UserFacingError(BAD_SPAN)
    if start >= duration:
        raise UserFacingError(PAST_END.format(at=fmt_time(start), title=title, length=fmt_time(duration)))
    a = max(0.0, start - PAD)
    b = min(duration, max(end, start) + PAD, a + MAX_SECONDS)
    return a, b


async def cut(settings: Settings, kept: Path, fmt: str, start: float, end: float, max_bytes: int) -> dict[str, Any]:
    """Cut [start, end] of `kept` in a jailed child; the checked MP4's bytes and what ffprobe
    found in it."""
    work = (settings.data_dir / "clips" / uuid.uuid4().hex).absolute()
    limits = Limits.from_settings(settings)
    length = end - start
    found: dict[str, Any] = {}

    async def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "clip" and not found:
            found.update(await asyncio.to_thread(checked, event, work, length, max_bytes))

    task = {"steps": ["clip"], "source": str(kept), "local": True, "start": start, "length": length,
            "max_bytes": max_bytes, "format": fmt, "settings": child_settings(settings)}
    try:
        async with Jail(work, limits, readable=(kept,),
                        deadline=settings.ingest_seconds_base + settings.ingest_seconds_per_minute * length / 60) as jail:
            await jail.run(task, on_event)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    if not found:
        raise BadSource(UNREADABLE)
    return found


def checked(event: dict[str, Any], work: Path, length: float, max_bytes: int) -> dict[str, Any]:
    """The child's "clip" event, believed once the file agrees with it and with the request."""
    path = inside(work, event.get("path"))
    size = path.stat().st_size
    duration, width, height = event.get("duration"), event.get("width"), event.get("height")
    if (path.name != "clip.mp4" or size > max_bytes or size != event.get("bytes") or size < 32
            or event.get("video") != "h264" or event.get("audio") != "aac" or event.get("streams") != 2
            or not isinstance(duration, int | float) or isinstance(duration, bool)
            or abs(float(duration) - length) > TOLERANCE
            or not all(isinstance(v, int) and 0 < v <= 4096 for v in (width, height))):
        raise BadSource(UNREADABLE)
    data = path.read_bytes()
    if len(data) != size or data[4:8] != b"ftyp":
        raise BadSource(UNREADABLE)
    return {"data": data, "duration": float(duration), "width": width, "height": height}


async def clip_of(settings: Settings, media: MediaKeep, scope: Scope, target: Video, start: float, end: float,
                  max_mb: float | None) -> Clip:
    """The clip of [start, end] of `scope`'s video `target` (padded: `span`) within MAX_CLIP_MB and
    `max_mb`, or the sentence why there is none."""
    title = one_line(target.title, 120)
    if target.status != VideoStatus.READY:
        raise UserFacingError(NOT_READY.format(title=title))
    a, b = span(start, end, target.duration, title)
    row, path = await media.find(scope, target.id)
    if row is None:
        raise NotFound(GONE.format(title=title))
    if path is None:
        raise UserFacingError(ELSEWHERE.format(title=title))
    limit = min(settings.max_clip_mb, max_mb or settings.max_clip_mb)
    got = await cut(settings, path, row.format, a, b, int(limit * 2**20))
    return Clip(got["data"], target.id, target.title, a, b, got["duration"], got["width"], got["height"])


async def remember(catalog: Catalog, scope: Scope, thread: str | None, answer: Answer) -> Answer:
    """Keep the moment a thread's latest answer cites first (what `clip` in that thread cuts)."""
    if thread and answer.citations:
        c = answer.citations[0]
        await catalog.put_moment(scope, thread, c.video_id, c.start, c.end)
    return answer


async def moment_of(media: MediaKeep, catalog: Catalog, find: Callable[[Scope, str], Awaitable[Video]], scope: Scope,
                    video: str, start: float, end: float, *, cited: bool = False,
                    thread: str | None = None) -> tuple[Video, float, float]:
    """Which video and span a clip request means: `video` as `find` reads names (or, `cited`, an
    id an answer cited, from a button), or with `thread` the moment its answer cites; the
    sentence why there is none (MEDIA_KEEP_GB=0, no answer in the thread, a video removed since)."""
    if not media.enabled:
        raise Refused(NOT_KEPT)
    moment = await catalog.moment(scope, thread) if thread is not None else None
    if thread is not None and moment is None:
        raise NotFound(NO_ANSWER)
    if moment is not None:
        video, start, end, cited = moment.video_id, moment.start, moment.end, True
    target = await catalog.video(scope, video) if cited else await find(scope, video)
    if target is None:
        raise NotFound(REMOVED)
    return target, start, end


class Clipper:
    """`Service.clip`: the one way into clips, with the kept files it cuts them from (`media`),
    the channel's and the user's question rate limits (`count`) and a cap on clips cut at once."""

    def __init__(self, settings: Settings, catalog: Catalog, find: Callable[[Scope, str], Awaitable[Video]],
                 count: Callable[[Scope, str], None]) -> None:
        self.settings, self.catalog, self.find, self.count = settings, catalog, find, count
        self.media = MediaKeep(settings, catalog)
        self._cutting = asyncio.Semaphore(AT_ONCE)

    async def clip(self, scope: Scope, video: str, start: float, end: float, *, max_mb: float | None = None,
                   user: str = "", cited: bool = False, thread: str | None = None) -> Clip:
        """An MP4 of [start, end] of `scope`'s video `video` (`moment_of`), or of the moment
        `thread`'s answer cites, padded (`span`), within MAX_CLIP_MB and `max_mb` (the platform's
        upload limit); counted as a question of a chat `user`. One sentence (`UserFacingError`)
        when there can be none."""
        target, start, end = await moment_of(self.media, self.catalog, self.find, scope, video, start, end,
                                             cited=cited, thread=thread)
        if user:
            self.count(scope, user)
        async with self._cutting:
            return await clip_of(self.settings, self.media, scope, target, start, end, max_mb)

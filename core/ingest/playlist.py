"""What a posted link holds, the bot's side: one video, or a playlist (a YouTube playlist or
channel page, a page of several videos, an RSS feed) whose entries are queued one by one.

The expansion is yt-dlp reading a page a member chose, so it runs in a jailed child like an
ingest (core/ingest/child.py's "expand" task, core/ingest/ytdlp.py's `expand`): its own network
namespace whose only way out is the guarding proxy, which reads at most `PAGE_BYTES` of pages
plus its 8-MB page allowance (16 MB); the jail's memory and CPU limits; a wall-clock deadline of
`DEADLINE` seconds. Nothing the child
announces is believed: the parent reads at most `cap` entries plus `NAMED` skipped names, each
address at most 2,048 characters, and every entry passes the address guard here before it may
be queued (a `file://` entry or one at a private address is named as refused, not queued).

A link of one video (a video file's address, a site page whose extractor gives single videos)
is not expanded: it costs what it did before playlists, a check of its address
(`ytdlp.single_video_link`, measured in tests/test_playlists.py).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any

from core.config import Settings
from core.errors import BadSource, UserFacingError
from core.ingest.fetch import SOCKET, refusal, way_out
from core.ingest.guard import UrlGuard
from core.ingest.jail import Jail, Limits
from core.ingest.proxy import Pace
from core.ingest.stops import LimitHit
from core.ingest.ytdlp import ENTRY_TITLE_CHARS, ENTRY_URL_CHARS, single_video_link
from core.text.links import looks_like_url

log = logging.getLogger(__name__)

NAMED = 10  # entries past the cap named as skipped; the rest are counted
PAGE_BYTES = 8 * 2**20  # of pages read to expand a link (plus the proxy's page allowance)
DEADLINE = 120.0  # seconds an expansion may take, the child's start included
MEMORY = 768 * 2**20  # the expanding child's address space (a page of 10^6 entries fits or is killed)
CPU = 60  # CPU seconds of the expanding child

# Said of any link whose page passed the limits while it was read for a list: an endless page
# that holds no video at all ends here too, so it does not claim the link was a list.
TOO_LARGE = ("That link's page is larger than I read (the page, or the work of reading it, passed my "
             "limits), so I didn't index or queue anything from it.")
NESTED = "a playlist inside this playlist (I don't expand those again; post it on its own)"
BAD_ENTRY = "its address is not a link I can fetch"


class TooLarge(BadSource):
    """The expansion was stopped by a limit (the jail's memory, CPU or time, the proxy's byte cut
    or pace): the list is refused as a whole, not read again as one video."""

    def __init__(self, why: str = "") -> None:
        super().__init__(TOO_LARGE)
        self.why = why


@dataclass(frozen=True)
class Entry:
    """One entry of a playlist: the address to queue, its title (as the site gives it: hostile
    text, shown only through `core.chat.present`), and why it is not queued ("" when it may be)."""

    url: str
    title: str
    problem: str = ""


@dataclass(frozen=True)
class Playlist:
    """A link's entries: `entries` (at most `MAX_PLAYLIST_VIDEOS`) are queued, `skipped` are named
    past the cap, and `more` counts those past them (-1: an unknown number, yt-dlp read lazily)."""

    source: str
    title: str
    entries: tuple[Entry, ...]
    skipped: tuple[Entry, ...] = ()
    more: int = 0
    outcome: dict[str, Any] = field(default_factory=dict, compare=False)  # the child's (peak memory, limit)


def may_be_playlist(source: str) -> bool:
    """Whether `source` needs expanding (blocking: run it on a thread): a link that is not one
    video by its address. Local files and attachments never are."""
    src = source.strip()
    return looks_like_url(src) and not single_video_link(src)


def read(event: dict[str, Any], source: str, cap: int, guard: UrlGuard) -> Playlist | None:
    """The child's "expanded" event, checked: None for a single video; else at most `cap`
    entries to queue and `NAMED` to name, each address an http(s) link of at most 2,048
    characters that passes `guard` (blocking: DNS), each title a string of bounded length."""
    if event.get("kind") != "playlist":
        return None
    raw = event.get("entries")
    if not isinstance(raw, list):
        raise BadSource("I couldn't read the list of videos at that link.")
    entries: list[Entry] = []
    for item in raw[: cap + NAMED]:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and isinstance(item[1], str) and isinstance(item[2], bool)):
            raise BadSource("I couldn't read the list of videos at that link.")
        url, title, nested = item[0].strip(), item[1][:ENTRY_TITLE_CHARS], item[2]
        entries.append(Entry(url, title, _problem(url, nested, guard) if len(entries) < cap else ""))
    total = event.get("total")
    listed = min(len(raw), cap + NAMED)
    if isinstance(total, int) and not isinstance(total, bool) and total >= listed:
        more = total - listed
    else:  # yt-dlp read lazily and stopped at what it was asked for: more, or not, unknown
        more = -1 if len(raw) >= cap + NAMED else 0
    named = event.get("title")
    return Playlist(source, named[:ENTRY_TITLE_CHARS] if isinstance(named, str) else "",
                    tuple(entries[:cap]), tuple(entries[cap:]), more)


def _problem(url: str, nested: bool, guard: UrlGuard) -> str:
    if nested:
        return NESTED
    if not url or len(url) > ENTRY_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in url):
        return BAD_ENTRY
    try:
        guard.check(url)
    except UserFacingError as e:
        return e.message
    return ""


async def expand(source: str, settings: Settings, guard: UrlGuard | None = None) -> Playlist | None:
    """The playlist `source` holds (None: one video), read in a jailed child. A link the child
    cannot read raises `BadSource` with the reason, as a failed download does."""
    src = source.strip()
    guard = guard or UrlGuard(frozenset(settings.allow_hosts))
    await asyncio.to_thread(guard.check, src)
    cap = settings.max_playlist_videos
    work = settings.data_dir / "playlists" / uuid.uuid4().hex[:16]
    limits = Limits(memory=MEMORY, cpu=CPU, file=PAGE_BYTES, open_files=settings.max_ingest_files)
    pace = Pace(DEADLINE, settings.min_download_kbps * 1024, settings.download_grace_seconds)
    got: dict[str, Any] = {}

    async def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "expanded" and not got:
            got.update(event)

    try:
        async with Jail(work, limits, deadline=DEADLINE) as jail, \
                way_out(guard, work, PAGE_BYTES, pace, jail) as proxy:
            task = {"steps": ["expand"], "source": src, "proxy": SOCKET, "max_bytes": PAGE_BYTES,
                    "cap": cap, "named": NAMED, "settings": {"max_video_pixels": settings.max_video_pixels}}
            try:
                await jail.run(task, on_event)
            except LimitHit as e:
                raise TooLarge(e.kind) from e
            except BadSource as e:
                if proxy.stopped:
                    raise TooLarge(proxy.stopped) from e
                raise (refusal(proxy) or e) from e
            if proxy.stopped:
                raise TooLarge(proxy.stopped)
        log.info("expanded %s: %s", src, jail.outcome)
        playlist = await asyncio.to_thread(read, got, src, cap, guard)
        if playlist is not None:
            playlist.outcome.update(peak_mb=jail.outcome.peak_mb, seconds=jail.outcome.seconds)
        return playlist
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)

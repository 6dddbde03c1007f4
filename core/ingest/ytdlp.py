"""What vidrag lets yt-dlp do, and the one question the chat side asks of it (`is_video_link`).

`download` runs only in the jailed child (core/ingest/child.py): yt-dlp's extractors, manifest
parsers and downloaders read whatever the posted link serves, so a bug in any of them is bounded
by the jail's limits, not paid by the bot. Every request goes through the guarding proxy.

yt-dlp never runs ffmpeg or any other program: an HLS stream it cannot decrypt natively would be
handed to ffmpeg, which opens its own connections (around the proxy, honouring `NO_PROXY`) and
ignores the size limit. It is run with ffmpeg out of reach, on single-file formats only, so a
format it cannot fetch itself is refused rather than delegated.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BadSource, disk_full
from core.ingest.guard import BAD_REDIRECT
from core.ingest.proxy import too_big
from core.ingest.stops import LimitHit
from core.text.links import MAX_LINK_CHARS, has_video_suffix

log = logging.getLogger(__name__)

SUBTITLE_SUFFIXES = (".vtt", ".srt", ".ttml")
# What yt-dlp raises, besides its own errors, when a page or manifest is malformed (found by
# tests/reliability/test_fuzz.py); MemoryError is not here: it is the jail's memory limit.
MALFORMED = (UnicodeError, ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError,
             RecursionError, ZeroDivisionError, AssertionError)


@dataclass
class Fetched:
    path: Path
    title: str
    url: str  # a link a person can open at a time (`with_time`), empty for local files
    subtitles: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _site_extractors() -> list[Any]:
    """yt-dlp's site extractors, each pattern compiled. A pattern compiles on its first use, and
    the ~1,800 of them took 0.7-0.9 s on one thread: under load that held the GIL long enough to
    stall the event loop 1.1 s (found by tests/reliability/test_fuzz.py). Compiled here one at a
    time, the GIL let go after each."""
    from yt_dlp.extractor import gen_extractor_classes

    extractors = [ie for ie in gen_extractor_classes() if ie.ie_key() != "Generic"]
    for ie in extractors:
        ie.suitable("https://example.invalid/")
        time.sleep(0)
    return extractors


def is_video_link(url: str) -> bool:
    """Whether a link posted without a mention is worth indexing: a video file, or a page that a
    site-specific yt-dlp extractor claims (YouTube, Vimeo, Loom, …); a news article is not.

    A link longer than `MAX_LINK_CHARS` is never matched against the extractors' patterns (some
    are quadratic, and a thread running one holds the GIL: a 20,000-character link stalled the
    event loop ~24 s). The first call loads yt-dlp's extractors (about a second): call it off the
    event loop."""
    if has_video_suffix(url):
        return True
    return len(url) <= MAX_LINK_CHARS and any(ie.suitable(url) for ie in _site_extractors())


# Protocols yt-dlp downloads natively over HTTP (so through the proxy); rtmp, rtsp, mms and the
# like would open their own sockets.
_HTTP_ONLY = "[protocol~='^(https?|m3u8|m3u8_native|http_dash_segments)$']"


def download(url: str, work: Path, max_bytes: int, max_seconds: float, proxy: str) -> Fetched:
    """Blocking yt-dlp download, run in the jailed child (core/ingest/child.py). Format near 360p, subtitles requested; every
    request through `proxy`; no cookies, config files, local files, exec or user post-processors.

    ffmpeg is out of yt-dlp's reach (a `ffmpeg_location` that does not exist, also in the context
    variable that `FFmpegFD.available()` reads — set in this thread's context only): its HLS
    downloader then decrypts AES-128 natively instead of delegating, and refuses what it cannot
    fetch itself (an unknown `#EXT-X-KEY` method) instead of handing it to ffmpeg, which would
    connect around the proxy and past the size limit. Without a merger, formats are single files
    (a video without its sound track when a site offers nothing else); post-processing is off."""
    import yt_dlp
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    no_ffmpeg = str(work / "no-ffmpeg-for-yt-dlp")
    FFmpegPostProcessor._ffmpeg_location.set(no_ffmpeg)

    sizes: dict[str, int] = {}

    def limit_size(d: dict[str, Any]) -> None:
        # Counted as it streams, for every file and every fragment (HLS, DASH), whatever the
        # server announced: a stream with no Content-Length is stopped at the limit too.
        key = str(d.get("tmpfilename") or d.get("filename") or "")
        sizes[key] = max(sizes.get(key, 0), int(d.get("downloaded_bytes") or 0))
        if sum(sizes.values()) > max_bytes or int(d.get("total_bytes") or 0) > max_bytes:
            sizes["__too_big__"] = 1
            raise yt_dlp.utils.DownloadCancelled("the download is larger than the limit")

    def refuse_long(info: dict[str, Any], *, incomplete: bool) -> str | None:
        d = info.get("duration")
        if d and d > max_seconds:
            return f"too long ({int(d // 60)} min)"
        return None

    opts: dict[str, Any] = {
        "outtmpl": str(work / "video.%(ext)s"), "format_sort": ["res:360", "+size"],
        "format": f"b[height<=480]{_HTTP_ONLY}/b{_HTTP_ONLY}/bv*[height<=480]{_HTTP_ONLY}/bv*{_HTTP_ONLY}",
        "ffmpeg_location": no_ffmpeg, "fixup": "never", "hls_prefer_native": True,
        "writesubtitles": True, "writeautomaticsub": True, "subtitleslangs": ["en.*", "en"],
        "subtitlesformat": "vtt/srt/ttml", "noplaylist": True, "quiet": True, "no_warnings": True,
        "match_filter": refuse_long,  # size: `limit_size`, which also sees fragments and unsized streams
        "paths": {"home": str(work), "temp": str(work)},
        "socket_timeout": 30, "retries": 2, "fragment_retries": 2, "noprogress": True, "cachedir": False,
        "allowed_extractors": ["default", "-generic:local"],
        "proxy": proxy, "progress_hooks": [limit_size], "enable_file_urls": False,
        "cookiefile": None, "cookiesfrombrowser": None, "external_downloader": {"default": "native"},
        "concurrent_fragment_downloads": 1, "playlist_items": "1", "lazy_playlist": True,
    }
    too_big_msg = too_big(max_bytes)
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
    except MALFORMED as e:  # yt-dlp's own code failing on what the site served (a fragment's host
        # that IDNA cannot encode raised a bare UnicodeError): the page's fault, said once, not retried
        log.info("yt-dlp failed on %s: %s: %s", url, type(e).__name__, e)
        if "__too_big__" in sizes:
            raise BadSource(too_big_msg) from e
        raise BadSource("I couldn't read a video at that link (its page or playlist is malformed).") from e
    except yt_dlp.utils.YoutubeDLError as e:  # DownloadError, and a RequestError let out of extraction
        msg = f"{type(e).__name__}: {e}"
        log.info("yt-dlp refused %s: %s", url, msg)
        if (full := disk_full(e)) is not None:  # the disk's fault, not the link's
            raise full from e
        if "__too_big__" in sizes:
            raise BadSource(too_big_msg) from e
        if "Unsupported URL" in msg:
            raise BadSource("I don't recognise a video at that link.") from e
        if "too long" in msg:
            raise BadSource(f"That video is longer than my limit of {int(max_seconds // 60)} minutes.") from e
        if "ffmpeg" in msg or "ffprobe" in msg:
            raise BadSource("That stream needs a downloader other than my own (an encryption or a format "
                            "I don't fetch myself), so I can't index it.") from e
        if any(m in msg for m in ("Invalid IPv6 URL", "Invalid URL", "InvalidURL", "nonnumeric port")):
            raise BadSource(BAD_REDIRECT) from e
        if "File too large" in msg:  # RLIMIT_FSIZE of the jail
            raise LimitHit("file") from e
        raise BadSource("I couldn't download that video (the site refused or it is private).") from e
    if info is None:
        raise BadSource(f"That video is longer than my limit of {int(max_seconds // 60)} minutes, or larger "
                        f"than {max_bytes // 2**20} MB.")
    files = [p for p in work.glob("video.*") if p.suffix not in (*SUBTITLE_SUFFIXES, ".part", ".ytdl")]
    if "__too_big__" in sizes:
        raise BadSource(too_big_msg)
    if not files:
        raise BadSource(too_big_msg)
    subs = sorted(p for p in work.glob("video.*") if p.suffix in SUBTITLE_SUFFIXES)
    page = info.get("webpage_url") or url
    return Fetched(path=files[0], title=str(info.get("title") or "video"), url=page,
                   subtitles=subs[0] if subs else None)


# ---- playlists ---------------------------------------------------------------------------------
ENTRY_URL_CHARS = 2048  # a longer entry address is named as skipped, never queued
ENTRY_TITLE_CHARS = 300


def single_video_link(url: str) -> bool:
    """Whether `url` is one video without asking the site: a video file's address, or a page whose
    site extractor says its results are single videos (a YouTube watch page). Such a link is queued
    as it is, never expanded; anything else (a playlist, a channel, a page of any site) is expanded
    in the jail first. Call it off the event loop (yt-dlp's extractors load on first use)."""
    if has_video_suffix(url):
        return True
    if len(url) > MAX_LINK_CHARS:
        return False
    ie = next((ie for ie in _site_extractors() if ie.suitable(url)), None)
    return ie is not None and ie.is_single_video(url) is True


# Site extractors whose results are lists by their name (yt-dlp's `is_single_video` says "any" of
# some: YoutubeTab serves channels and playlists, and a channel's home page may be one video).
_LIST_EXTRACTOR = re.compile(r"playlist|tab|channel|user|album|series|season|collection|feed|show", re.I)


def _nested(entry: dict[str, Any], url: str) -> bool:
    """An entry that is a playlist itself, by what yt-dlp says without fetching it: its type, or a
    site extractor whose results are playlists. It is not expanded again."""
    if entry.get("_type") in ("playlist", "multi_video"):
        return True
    if len(url) > MAX_LINK_CHARS:
        return False
    ie = next((ie for ie in _site_extractors() if ie.suitable(url)), None)
    if ie is None:
        return False
    single = ie.is_single_video(url)
    return single is False or (single is None and bool(_LIST_EXTRACTOR.search(ie.ie_key())))


def _entry_url(entry: dict[str, Any]) -> str:
    """The address to queue for an entry: its page (`webpage_url` of a site's entry, `url` of a
    flat one), or, for a video the page itself holds (`<video>` tags of a generic page), the
    media file the page names."""
    if entry.get("_type") in ("url", "url_transparent", "playlist", "multi_video"):
        return str(entry.get("url") or entry.get("webpage_url") or "")
    formats = entry.get("formats") or []
    direct = next((f.get("url") for f in formats if isinstance(f, dict) and f.get("url")), None)
    page = entry.get("webpage_url") or entry.get("original_url")
    return str(direct or entry.get("url") or page or "")


def expand(url: str, proxy: str, cap: int, named: int) -> dict[str, Any]:
    """What the link holds, without downloading any video, run in the jailed child: a single
    video (`{"kind": "video"}`), or a playlist's title, its first `cap` entries as
    `[address, title, nested]`, the next `named` entries' titles (named as skipped), and how many
    entries it has in all when yt-dlp knows (-1 when not). yt-dlp reads the playlist lazily
    (`lazy_playlist`, `playlist_items`), so a channel of 10,000 videos costs its first pages only;
    a page that lists its entries inline is read whole, within the proxy's byte cut and the jail's
    memory and time."""
    import yt_dlp

    opts: dict[str, Any] = {
        "quiet": True, "no_warnings": True, "skip_download": True, "extract_flat": "in_playlist",
        "lazy_playlist": True, "playlist_items": f"1:{cap + named}", "noplaylist": False,
        "socket_timeout": 30, "retries": 2, "cachedir": False, "proxy": proxy, "enable_file_urls": False,
        "allowed_extractors": ["default", "-generic:local"], "cookiefile": None, "cookiesfrombrowser": None,
        "ignore_no_formats_error": True,
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=False)
    except MALFORMED as e:
        log.info("yt-dlp failed expanding %s: %s: %s", url, type(e).__name__, e)
        raise BadSource("I couldn't read a video at that link (its page or playlist is malformed).") from e
    except yt_dlp.utils.YoutubeDLError as e:
        msg = f"{type(e).__name__}: {e}"
        log.info("yt-dlp refused expanding %s: %s", url, msg)
        if (full := disk_full(e)) is not None:
            raise full from e
        if "Unsupported URL" in msg:
            raise BadSource("I don't recognise a video at that link.") from e
        if any(m in msg for m in ("Invalid IPv6 URL", "Invalid URL", "InvalidURL", "nonnumeric port")):
            raise BadSource(BAD_REDIRECT) from e
        raise BadSource("I couldn't read that link (the site refused or it is private).") from e
    if not isinstance(info, dict) or info.get("_type") not in ("playlist", "multi_video"):
        return {"kind": "video"}
    entries: list[list[Any]] = []
    page_title = str(info.get("title") or "")
    for entry in list(info.get("entries") or [])[: cap + named]:
        if not isinstance(entry, dict):
            continue
        address = _entry_url(entry)
        title = str(entry.get("title") or "")[:ENTRY_TITLE_CHARS]
        if title.startswith(f"{page_title} (") and title.endswith(")") and title[len(page_title) + 2:-1].isdigit():
            title = ""  # "Lectures (3)": the generic extractor's name for a page's third <video>; the file's name says more
        entries.append([address[: ENTRY_URL_CHARS + 1], title, _nested(entry, address)])
    count = info.get("playlist_count")
    total = count if isinstance(count, int) and not isinstance(count, bool) and count >= len(entries) else -1
    return {"kind": "playlist", "title": str(info.get("title") or "")[:ENTRY_TITLE_CHARS], "entries": entries,
            "total": total}

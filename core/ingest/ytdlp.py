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

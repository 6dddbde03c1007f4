"""Links as text: whether a string is an http(s) link, whether a name looks like a video file,
and a link that opens a video at a moment. Nothing here fetches or resolves anything; the chat
rule (core/chat) and the answers (core/answer) read links through these without importing the
ingest pipeline."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpeg", ".mpg", ".ogv",
                            ".3gp", ".flv", ".wmv"})

# Longer links are never handed to a pattern of a site's extractor (core/ingest/ytdlp.py): some
# of yt-dlp's are quadratic (a 20,000-character link held the GIL ~24 s, 2,000 characters 0.26 s),
# and no video page's address is anywhere near this long.
MAX_LINK_CHARS = 512


def has_video_suffix(name: str) -> bool:
    try:
        path = urlsplit(name).path if "://" in name else name
    except ValueError:
        return False
    return PurePosixPath(path).suffix.lower() in VIDEO_SUFFIXES


def looks_like_url(text: str) -> bool:
    try:
        return urlsplit(text.strip()).scheme in ("http", "https")
    except ValueError:
        return False


def with_time(url: str, seconds: float) -> str:
    """A link that opens the video at `seconds`: YouTube's `t=` parameter, a media fragment else."""
    if not url:
        return ""
    s = int(max(0, seconds))
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        host = ""
    if host.endswith("youtube.com") or host == "youtu.be":
        return f"{url}{'&' if '?' in url else '?'}t={s}s"
    if host.endswith("vimeo.com"):
        return f"{url.split('#')[0]}#t={s}s"
    return f"{url.split('#')[0]}#t={s}"

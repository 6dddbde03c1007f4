"""Getting the video onto disk: local paths (console only), links through yt-dlp, and chat
attachments from the platform's file URL with the bot's token.

Every URL, and every redirect hop, passes `check_url`: http(s) only, and no loopback, private,
link-local, multicast, reserved or cloud-metadata address unless the host is explicitly allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from .errors import BadSource

log = logging.getLogger(__name__)

Resolver = Callable[[str], list[str]]

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def system_resolver(host: str) -> list[str]:
    try:
        return list({ai[4][0] for ai in socket.getaddrinfo(host, None)})
    except socket.gaierror as e:
        raise BadSource(f"I can't find the site `{host}` (DNS lookup failed).") from e


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    h = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    # inet_aton forms browsers and curl accept: decimal (2130706433), hex (0x7f000001), octal, short.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except OSError:
        return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None:
                return is_public(embedded)
        if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 of an IPv4 address
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local
                                 or ip.is_loopback or ip.is_private or ip.is_unspecified)


@dataclass(frozen=True)
class UrlGuard:
    allow_hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=system_resolver)

    def check(self, url: str) -> None:
        """Raise BadSource unless `url` is http(s) to a public address (or an allowed host)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BadSource("I only fetch http and https links.")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise BadSource("That link has no host name.")
        if host in self.allow_hosts:
            return
        if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
            raise BadSource("That link points inside a private network, which I don't fetch.")
        ip = _parse_ip(host)
        addresses = [ip] if ip else [_parse_ip(a) for a in self.resolver(host)]
        if not addresses or any(a is None or not is_public(a) for a in addresses):
            raise BadSource("That link points inside a private network, which I don't fetch.")


@dataclass
class Fetched:
    path: Path
    title: str
    url: str  # a link a person can open at a time (`with_time`), empty for local files
    subtitles: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def looks_like_url(text: str) -> bool:
    return urlsplit(text.strip()).scheme in ("http", "https")


def with_time(url: str, seconds: float) -> str:
    """A link that opens the video at `seconds`: YouTube's `t=` parameter, a media fragment else."""
    if not url:
        return ""
    s = int(max(0, seconds))
    host = (urlsplit(url).hostname or "").lower()
    if host.endswith("youtube.com") or host == "youtu.be":
        return f"{url}{'&' if '?' in url else '?'}t={s}s"
    if host.endswith("vimeo.com"):
        return f"{url.split('#')[0]}#t={s}s"
    return f"{url.split('#')[0]}#t={s}"


async def download_file(url: str, dest: Path, guard: UrlGuard, max_bytes: int,
                        headers: dict[str, str] | None = None,
                        transport: httpx.AsyncBaseTransport | None = None) -> Path:
    """Stream a platform attachment to `dest`, checking each redirect hop and the size as it comes."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=60, transport=transport) as client:
        for _ in range(6):
            guard.check(url)
            async with client.stream("GET", url, headers=headers or {}) as r:
                if r.is_redirect:
                    url = urljoin(url, r.headers["location"])
                    headers = None  # never forward the bot's token to another host
                    continue
                if r.status_code != 200:
                    raise BadSource(f"I couldn't download that file (the server answered {r.status_code}).")
                if int(r.headers.get("content-length") or 0) > max_bytes:
                    raise BadSource(f"That file is larger than my limit of {max_bytes // 2**20} MB.")
                size = 0
                with dest.open("wb") as fh:
                    async for chunk in r.aiter_bytes(1 << 16):
                        size += len(chunk)
                        if size > max_bytes:
                            raise BadSource(f"That file is larger than my limit of {max_bytes // 2**20} MB.")
                        fh.write(chunk)
                return dest
        raise BadSource("That link redirects too many times.")


def _ytdlp(url: str, work: Path, guard: UrlGuard, max_bytes: int, max_seconds: float) -> Fetched:
    """Blocking yt-dlp download (run in a thread). Format near 360p, subtitles requested."""
    import yt_dlp

    def refuse_long(info: dict[str, Any], *, incomplete: bool) -> str | None:
        d = info.get("duration")
        if d and d > max_seconds:
            return f"too long ({int(d // 60)} min)"
        return None

    opts: dict[str, Any] = {
        "outtmpl": str(work / "video.%(ext)s"), "format_sort": ["res:360", "+size"],
        "format": "bv*[height<=480]+ba/b[height<=480]/bv*+ba/b", "merge_output_format": "mp4",
        "writesubtitles": True, "writeautomaticsub": True, "subtitleslangs": ["en.*", "en"],
        "subtitlesformat": "vtt", "noplaylist": True, "quiet": True, "no_warnings": True,
        "max_filesize": max_bytes, "match_filter": refuse_long, "paths": {"home": str(work)},
        "socket_timeout": 30, "retries": 2, "noprogress": True, "cachedir": False,
        "allowed_extractors": ["default", "-generic:local"],
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as e:
        msg = str(e)
        log.info("yt-dlp refused %s: %s", url, msg)
        if "Unsupported URL" in msg:
            raise BadSource("I don't recognise a video at that link.") from e
        if "too long" in msg:
            raise BadSource(f"That video is longer than my limit of {int(max_seconds // 60)} minutes.") from e
        raise BadSource("I couldn't download that video (the site refused or it is private).") from e
    if info is None:
        raise BadSource(f"That video is longer than my limit of {int(max_seconds // 60)} minutes, or larger "
                        f"than {max_bytes // 2**20} MB.")
    files = [p for p in work.glob("video.*") if p.suffix not in (".vtt", ".part", ".ytdl")]
    if not files:
        raise BadSource(f"That video is larger than my limit of {max_bytes // 2**20} MB.")
    subs = sorted(work.glob("*.vtt"))
    page = info.get("webpage_url") or url
    return Fetched(path=files[0], title=str(info.get("title") or "video"), url=page,
                   subtitles=subs[0] if subs else None)


async def fetch(source: str, work: Path, guard: UrlGuard, *, max_bytes: int, max_seconds: float,
                headers: dict[str, str] | None = None, allow_local: bool = False) -> Fetched:
    """Bring `source` into `work`: a local file (console only), an attachment (with `headers`),
    or a link for yt-dlp."""
    work.mkdir(parents=True, exist_ok=True)
    src = source.strip()
    if not looks_like_url(src):
        if not allow_local:
            raise BadSource("Send me a video link (http or https) or upload a video file.")
        path = Path(src).expanduser()
        if not path.is_file():
            raise BadSource(f"I can't find the file `{src}`.")
        return Fetched(path=path.resolve(), title=path.stem, url="")
    guard.check(src)
    if headers is not None:  # a chat attachment: a plain file download with the bot's token
        name = Path(urlsplit(src).path).name or "attachment"
        path = await download_file(src, work / f"upload{Path(name).suffix[:8]}", guard, max_bytes, headers)
        return Fetched(path=path, title=Path(name).stem, url="")
    return await asyncio.to_thread(_ytdlp, src, work, guard, max_bytes, max_seconds)

"""Getting the video onto disk: local paths (console only), links through yt-dlp, and chat
attachments from the platform's file URL with the bot's token.

Every URL, and every redirect hop, passes `UrlGuard`: http(s) only, and no loopback, private,
link-local, multicast, reserved or cloud-metadata address unless the host is explicitly allowed.

yt-dlp follows redirects, manifests and fragments itself, inside whichever HTTP library it picks,
so checking the first URL is not enough. Rather than patch its internals, every request it makes
goes through `GuardProxy`, a local HTTP proxy that checks each destination with the same guard
and connects to the very address it checked (no second DNS lookup for a rebinding name to change).
That covers every hop, every HLS/DASH fragment and every subtitle file, whatever yt-dlp's
extractor does. The size limit is a progress hook counting the bytes of every file and fragment,
and the proxy counts every byte of the download besides (pages and manifests included, which an
extractor reads into memory whole) and cuts it past the limit, or when it is too slow (`Pace`).

yt-dlp never runs ffmpeg or any other program: an HLS stream it cannot decrypt natively would be
handed to ffmpeg, which opens its own connections (around the proxy, honouring `NO_PROXY`) and
ignores the size limit. It is run with ffmpeg out of reach, on single-file formats only, so a
format it cannot fetch itself is refused rather than delegated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from core.errors import BadSource

log = logging.getLogger(__name__)

Resolver = Callable[[str], list[str]]

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def system_resolver(host: str) -> list[str]:
    try:
        return list({str(ai[4][0]) for ai in socket.getaddrinfo(host, None)})
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
        self.address(url)

    def address(self, url: str) -> str:
        """The checked address to connect to for `url` (the host itself when allowed by name)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise BadSource("That doesn't look like a valid link.") from e
        if parts.scheme not in ("http", "https"):
            raise BadSource("I only fetch http and https links.")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise BadSource("That link has no host name.")
        if port == 0:
            raise BadSource("That doesn't look like a valid link.")
        if host in self.allow_hosts:
            return host
        if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
            raise BadSource(PRIVATE)
        ip = _parse_ip(host)
        addresses = [ip] if ip else [_parse_ip(a) for a in self.resolver(host)]
        if not addresses or any(a is None or not is_public(a) for a in addresses):
            raise BadSource(PRIVATE)
        first = addresses[0]
        assert first is not None
        return str(first.ipv4_mapped or first) if isinstance(first, ipaddress.IPv6Address) else str(first)


PRIVATE = "That link points inside a private network, which I don't fetch."


@dataclass(frozen=True)
class Pace:
    """How long a download may take: `deadline` seconds in all, and at least `min_rate` bytes a
    second over every window of `grace` seconds (a server sending a byte every 10 s held the only
    ingest slot for as long as it liked)."""

    deadline: float
    min_rate: float
    grace: float


def too_big(max_bytes: int) -> str:
    return f"That video is larger than my limit of {max_bytes / 2**20:g} MB."


class GuardProxy:
    """A local HTTP proxy (127.0.0.1, an ephemeral port) for one download: plain requests in
    absolute form and CONNECT tunnels for https, each destination checked with `guard` and
    connected to at the checked address. Refusals are answered 403 and remembered in `refused`.

    Every byte coming back is counted in `received`; past `max_bytes` (or when `watch` finds the
    download too slow) the proxy `stop`s: every connection is closed, new ones are refused, and
    `stopped` says why in words for the user."""

    def __init__(self, guard: UrlGuard, max_bytes: int | None = None) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        self.refused: list[str] = []
        self.received = 0
        self.stopped = ""
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def stop(self, reason: str) -> None:
        if not self.stopped:
            log.info("download stopped: %s", reason)
            self.stopped = reason
        for w in list(self._writers):
            w.close()

    def _count(self, n: int) -> None:
        self.received += n
        if self.max_bytes is not None and self.received > self.max_bytes:
            self.stop(too_big(self.max_bytes))

    async def watch(self, pace: Pace) -> None:
        """Stop the download past `pace.deadline`, or when the last `pace.grace` seconds brought
        less than `pace.min_rate` bytes a second."""
        start = time.monotonic()
        seen: collections.deque[tuple[float, int]] = collections.deque([(start, 0)])
        while not self.stopped:
            await asyncio.sleep(min(1.0, pace.grace / 4, pace.deadline / 4))
            now = time.monotonic()
            seen.append((now, self.received))
            while len(seen) > 1 and seen[1][0] <= now - pace.grace:
                seen.popleft()
            if now - start > pace.deadline:
                self.stop(f"That download took longer than my limit of {pace.deadline / 60:g} minutes, "
                          "so I stopped it.")
            elif now - start >= pace.grace and self.received - seen[0][1] < pace.min_rate * pace.grace:
                self.stop(f"That server sends too slowly (under {pace.min_rate / 1024:g} KB/s), so I "
                          "stopped the download.")

    async def __aenter__(self) -> GuardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopped:
            writer.close()
            return
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            line, _, rest = head.partition(b"\r\n")
            method, target, version = line.decode("latin-1").split(" ", 2)
            tunnel = method.upper() == "CONNECT"
            url = f"https://{target}/" if tunnel else target
            parts = urlsplit(url)
            if not tunnel and parts.scheme != "http":
                raise BadSource("I only fetch http and https links.")
            try:
                address = await asyncio.to_thread(self.guard.address, url)
            except BadSource:
                self.refused.append(f"{parts.scheme}://{parts.netloc}")
                raise
            port = parts.port or (443 if tunnel else 80)
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(address, port), 30)
            upstream = up_writer
            if tunnel:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # origin form, one request per connection, no proxy headers forwarded
                path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
                keep = [h for h in rest.split(b"\r\n") if h and not h.lower().startswith(
                    (b"proxy-", b"connection:", b"keep-alive:"))]
                up_writer.write(f"{method} {path} {version}\r\n".encode("latin-1")
                                + b"\r\n".join([*keep, b"Connection: close"]) + b"\r\n\r\n")
            self._writers.add(up_writer)
            pipes = [asyncio.create_task(_pipe(reader, up_writer)),
                     asyncio.create_task(_pipe(up_reader, writer, self._count))]
            _, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
        except BadSource:
            with contextlib.suppress(Exception):
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
            log.info("proxy request failed: %s", type(e).__name__)
            with contextlib.suppress(Exception):
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        finally:
            for w in (upstream, writer):
                if w is not None:
                    w.close()
                    self._writers.discard(w)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                count: Callable[[int], None] | None = None) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(1 << 16):
            if count is not None:
                count(len(data))
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()


@dataclass
class Fetched:
    path: Path
    title: str
    url: str  # a link a person can open at a time (`with_time`), empty for local files
    subtitles: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpeg", ".mpg", ".ogv",
                            ".3gp", ".flv", ".wmv"})


def has_video_suffix(name: str) -> bool:
    return PurePosixPath(urlsplit(name).path if "://" in name else name).suffix.lower() in VIDEO_SUFFIXES


@functools.cache
def _site_extractors() -> list[Any]:
    from yt_dlp.extractor import gen_extractor_classes

    return [ie for ie in gen_extractor_classes() if ie.ie_key() != "Generic"]


def is_video_link(url: str) -> bool:
    """Whether a link posted without a mention is worth indexing: a video file, or a page that a
    site-specific yt-dlp extractor claims (YouTube, Vimeo, Loom, …); a news article is not.
    The first call loads yt-dlp's extractors (about a second): call it off the event loop."""
    return has_video_suffix(url) or any(ie.suitable(url) for ie in _site_extractors())


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
                        transport: httpx.AsyncBaseTransport | None = None, proxy: str | None = None) -> Path:
    """Stream a platform attachment to `dest`, checking each redirect hop and the size as it comes
    (and, through `proxy`, connecting only to the address checked)."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=60, transport=transport, proxy=proxy,
                                 trust_env=False) as client:
        for _ in range(6):
            await asyncio.to_thread(guard.check, url)  # getaddrinfo: never on the loop
            async with _refuse_bad_location(), client.stream("GET", url, headers=headers or {}) as r:
                if r.is_redirect:
                    url = _redirect_target(url, r.headers.get("location", ""))
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


BAD_REDIRECT = "That link redirects to an address that isn't valid, so I can't follow it."


@contextlib.asynccontextmanager
async def _refuse_bad_location() -> Any:
    """httpx parses a redirect's `Location` as it receives the answer, and says so with a
    protocol error: that is the server's malformed address, not a failed connection."""
    try:
        yield
    except httpx.RemoteProtocolError as e:
        if "location header" in str(e).lower():
            raise BadSource(BAD_REDIRECT) from e
        raise


def _redirect_target(url: str, location: str) -> str:
    """The next hop of a redirect; a malformed `Location` (`http://[::1`, `http://exa mple`) is
    the server's answer, refused once as such, not an internal error to retry."""
    try:
        target = urljoin(url, location.strip())
        parts = urlsplit(target)
        _ = parts.port
    except ValueError as e:
        raise BadSource(BAD_REDIRECT) from e
    if not location.strip() or any(c.isspace() or ord(c) < 32 for c in parts.netloc):
        raise BadSource(BAD_REDIRECT)
    return target


# Protocols yt-dlp downloads natively over HTTP (so through the proxy); rtmp, rtsp, mms and the
# like would open their own sockets.
_HTTP_ONLY = "[protocol~='^(https?|m3u8|m3u8_native|http_dash_segments)$']"


def _ytdlp(url: str, work: Path, guard: UrlGuard, max_bytes: int, max_seconds: float,
           proxy: str) -> Fetched:
    """Blocking yt-dlp download (run in a thread). Format near 360p, subtitles requested; every
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
        "subtitlesformat": "vtt", "noplaylist": True, "quiet": True, "no_warnings": True,
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
    except yt_dlp.utils.YoutubeDLError as e:  # DownloadError, and a RequestError let out of extraction
        msg = f"{type(e).__name__}: {e}"
        log.info("yt-dlp refused %s: %s", url, msg)
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
        raise BadSource("I couldn't download that video (the site refused or it is private).") from e
    if info is None:
        raise BadSource(f"That video is longer than my limit of {int(max_seconds // 60)} minutes, or larger "
                        f"than {max_bytes // 2**20} MB.")
    files = [p for p in work.glob("video.*") if p.suffix not in (".vtt", ".part", ".ytdl")]
    if "__too_big__" in sizes:
        raise BadSource(too_big_msg)
    if not files:
        raise BadSource(too_big_msg)
    subs = sorted(work.glob("*.vtt"))
    page = info.get("webpage_url") or url
    return Fetched(path=files[0], title=str(info.get("title") or "video"), url=page,
                   subtitles=subs[0] if subs else None)


# What a download may read besides the media itself (pages, manifests, subtitles), before the
# proxy cuts it.
PAGE_ALLOWANCE = 8 * 2**20


async def fetch(source: str, work: Path, guard: UrlGuard, *, max_bytes: int, max_seconds: float,
                headers: dict[str, str] | None = None, allow_local: bool = False,
                pace: Pace | None = None) -> Fetched:
    """Bring `source` into `work`: a local file (console only), an attachment (with `headers`),
    or a link for yt-dlp. Whatever the downloader does, the proxy reads no more than `max_bytes`
    plus `PAGE_ALLOWANCE`, and no longer or slower than `pace` allows."""
    work.mkdir(parents=True, exist_ok=True)
    src = source.strip()
    if not looks_like_url(src):
        if not allow_local:
            raise BadSource("Send me a video link (http or https) or upload a video file.")
        path = Path(src).expanduser()
        if not path.is_file():
            raise BadSource(f"I can't find the file `{src}`.")
        return Fetched(path=path.resolve(), title=path.stem, url="")
    await asyncio.to_thread(guard.check, src)  # getaddrinfo: never on the loop
    async with GuardProxy(guard, max_bytes + PAGE_ALLOWANCE) as proxy:
        watch = asyncio.create_task(proxy.watch(pace)) if pace is not None else None
        try:
            if headers is not None:  # a chat attachment: a plain file download with the bot's token
                name = Path(urlsplit(src).path).name or "attachment"
                path = await download_file(src, work / f"upload{Path(name).suffix[:8]}", guard, max_bytes,
                                           headers, proxy=proxy.url)
                got = Fetched(path=path, title=Path(name).stem, url="")
            else:
                got = await asyncio.to_thread(_ytdlp, src, work, guard, max_bytes, max_seconds, proxy.url)
        except (BadSource, httpx.HTTPError, httpx.InvalidURL) as e:
            if proxy.refused:  # whatever the downloader made of the 403, the reason is the address
                log.info("refused %s on the way to %s", proxy.refused, src)
                raise BadSource(PRIVATE) from e
            if proxy.stopped:
                raise BadSource(proxy.stopped) from e
            if isinstance(e, httpx.HTTPError | httpx.InvalidURL):
                raise BadSource("I couldn't download that file (the connection failed).") from e
            raise
        finally:
            if watch is not None:
                watch.cancel()
        if proxy.stopped:  # a cut stream can look complete to a downloader (no length, then EOF)
            raise BadSource(proxy.stopped)
        return got

"""Getting the video onto disk, the bot's side: local paths (console only), chat attachments from
the platform's file URL with the bot's token (`download_file`), and links, which a jailed child
fetches with yt-dlp (core/ingest/child.py, core/ingest/ytdlp.py).

Every URL, and every redirect hop, passes the address guard (core/ingest/guard.py); every request
of a download goes through the guarding proxy (core/ingest/proxy.py), which counts its bytes and
cuts it past `max_bytes` plus `PAGE_ALLOWANCE` or when `Pace` finds it too slow — and then the
jailed child is killed at once (`way_out`), whatever its downloader was doing.

An attachment is downloaded here, in the bot: the bot's token must not reach the child, and the
download only copies bytes (nothing parses them until the child does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from core.errors import BadSource
from core.ingest.guard import BAD_REDIRECT, PRIVATE, UrlGuard
from core.ingest.jail import Jail, Limits
from core.ingest.proxy import GuardProxy, Pace
from core.ingest.ytdlp import Fetched
from core.text.links import looks_like_url

# What a download may read besides the media itself (pages, manifests, subtitles), before the
# proxy cuts it.
PAGE_ALLOWANCE = 8 * 2**20
SOCKET = "proxy.sock"  # the proxy's socket file, in the job folder


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


@contextlib.asynccontextmanager
async def way_out(guard: UrlGuard, work: Path, max_bytes: int, pace: Pace | None,
                  jail: Jail) -> AsyncIterator[GuardProxy]:
    """The jailed child's only way out: a guarding proxy on `SOCKET` in the job folder `work`
    (bound through /proc/self/fd, so a deep folder does not pass the 108-byte limit of a socket
    address), watched by `pace`; when it stops the download, the child is killed with the reason."""
    folder = os.open(work, os.O_PATH | os.O_DIRECTORY)  # open until the proxy is closed
    try:
        proxy = GuardProxy(guard, max_bytes + PAGE_ALLOWANCE, unix=Path(f"/proc/self/fd/{folder}/{SOCKET}"))
        proxy.on_stop = jail.stop
        async with proxy:
            watch = asyncio.create_task(proxy.watch(pace)) if pace is not None else None
            try:
                yield proxy
            finally:
                if watch is not None:
                    watch.cancel()
    finally:
        os.close(folder)


def refusal(proxy: GuardProxy) -> BadSource | None:
    """What the proxy knows better than the downloader: an address it refused (whatever the
    downloader made of the 403) or the download it cut."""
    if proxy.refused:
        return BadSource(PRIVATE)
    if proxy.stopped:
        return BadSource(proxy.stopped)
    return None


def inside(work: Path, rel: object) -> Path:
    """`work / rel` for a relative path the child announced, if it is a regular file inside `work`
    (no `..`, no link out)."""
    if not isinstance(rel, str) or not rel or len(rel) > 512 or rel.startswith("/") or "\0" in rel:
        raise BadSource("I couldn't read what that video turned into.")
    path = work / rel
    try:
        real = path.resolve(strict=True)
        ok = real.is_relative_to(work.resolve()) and path.is_file() and not path.is_symlink()
    except (OSError, RuntimeError):
        ok = False
    if not ok:
        raise BadSource("I couldn't read what that video turned into.")
    return path


def local_file(src: str, allow_local: bool) -> Path:
    """The file on this machine that `src` names (the console's own videos), as written; `BadSource`
    where files are not taken by name (a chat) or there is no such file."""
    if not allow_local:
        raise BadSource("Send me a video link (http or https) or upload a video file.")
    path = Path(src).expanduser()
    if not path.is_file():
        raise BadSource(f"I can't find the file `{src}`.")
    return path


async def fetch(source: str, work: Path, guard: UrlGuard, *, max_bytes: int, max_seconds: float,
                headers: dict[str, str] | None = None, allow_local: bool = False,
                pace: Pace | None = None, limits: Limits | None = None) -> Fetched:
    """Bring `source` into `work`: a local file (console only), an attachment (with `headers`),
    or a link, fetched by yt-dlp in a jailed child (`limits`). Whatever the downloader does, the
    proxy reads no more than `max_bytes` plus `PAGE_ALLOWANCE`, and no longer or slower than
    `pace` allows."""
    work.mkdir(parents=True, exist_ok=True)
    src = source.strip()
    if not looks_like_url(src):
        path = local_file(src, allow_local)
        return Fetched(path=path.resolve(), title=path.stem, url="")
    await asyncio.to_thread(guard.check, src)  # getaddrinfo: never on the loop
    if headers is not None:  # a chat attachment: a plain file download with the bot's token, here
        return await fetch_attachment(src, work, guard, max_bytes, headers, pace)
    limits = limits or Limits(memory=1536 * 2**20, cpu=int(120 + 20 * max_seconds / 60),
                              file=max_bytes + PAGE_ALLOWANCE, open_files=256)
    got: dict[str, Any] = {}

    async def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "fetched":
            got.update(event)

    async with Jail(work, limits, deadline=(pace.deadline if pace else 3600) + 60) as jail, \
            way_out(guard, work, max_bytes, pace, jail) as proxy:
        task = {"steps": ["fetch"], "source": src, "proxy": SOCKET, "max_bytes": max_bytes,
                "settings": {"max_video_minutes": max_seconds / 60, "max_video_pixels": 3840 * 2160}}
        try:
            await jail.run(task, on_event)
        except BadSource as e:
            raise (refusal(proxy) or e) from e
        if proxy.stopped:  # a cut stream can look complete to a downloader (no length, then EOF)
            raise BadSource(proxy.stopped)
    return fetched(work, got)


def fetched(work: Path, event: dict[str, Any]) -> Fetched:
    """The child's "fetched" event, checked: files inside `work`, a title and an http(s) link."""
    path = inside(work, event.get("path"))
    subs = event.get("subtitles")
    url = str(event.get("url") or "")
    return Fetched(path=path, title=str(event.get("title") or "video")[:4096],
                   url=url if looks_like_url(url) and len(url) <= 2048 else "",
                   subtitles=inside(work, subs) if subs else None)


async def fetch_attachment(url: str, work: Path, guard: UrlGuard, max_bytes: int, headers: dict[str, str],
                           pace: Pace | None) -> Fetched:
    async with GuardProxy(guard, max_bytes + PAGE_ALLOWANCE) as proxy:
        watch = asyncio.create_task(proxy.watch(pace)) if pace is not None else None
        try:
            name = Path(urlsplit(url).path).name or "attachment"
            path = await download_file(url, work / f"upload{Path(name).suffix[:8]}", guard, max_bytes,
                                       headers, proxy=proxy.url)
        except (BadSource, httpx.HTTPError, httpx.InvalidURL) as e:
            refused = refusal(proxy)
            if refused is not None:
                raise refused from e
            if isinstance(e, httpx.HTTPError | httpx.InvalidURL):
                raise BadSource("I couldn't download that file (the connection failed).") from e
            raise
        finally:
            if watch is not None:
                watch.cancel()
        if proxy.stopped:
            raise BadSource(proxy.stopped)
    return Fetched(path=path, title=Path(name).stem, url="")

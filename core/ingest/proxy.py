"""The guarding proxy: every request a download makes (yt-dlp's pages, manifests, fragments and
subtitles, an attachment's redirect hops) goes through `GuardProxy`, a local HTTP proxy that checks
each destination with the address guard (core/ingest/guard.py) and connects to the very address it
checked. It counts every byte coming back and cuts the download past a size, or when it is too
slow (`Pace`).

It runs in the bot process; the jailed ingest (core/ingest/jail.py) reaches it through a socket
file in its job folder, its only way out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from core.errors import BadSource
from core.ingest.guard import UrlGuard

log = logging.getLogger(__name__)


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

    def __init__(self, guard: UrlGuard, max_bytes: int | None = None, unix: Path | None = None) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        self.unix = unix
        self.on_stop: Callable[[str], None] | None = None  # told once, when the download is stopped
        self.refused: list[str] = []
        self.received = 0
        self.connected: float | None = None  # when the first connection came (the pace's windows start there)
        self.stopped = ""
        self.finished = False  # the download is over: no new connection, no more watching
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def stop(self, reason: str) -> None:
        if not self.stopped:
            log.info("download stopped: %s", reason)
            self.stopped = reason
            if self.on_stop is not None:
                self.on_stop(reason)
        for w in list(self._writers):
            w.close()

    def _count(self, n: int) -> None:
        self.received += n
        if self.max_bytes is not None and self.received > self.max_bytes:
            self.stop(too_big(self.max_bytes))

    async def watch(self, pace: Pace) -> None:
        """Stop the download past `pace.deadline`, or when the last `pace.grace` seconds brought
        less than `pace.min_rate` bytes a second. The rate's windows start at the first connection
        to the proxy: the jailed child's own start (seconds on a loaded machine) is not the
        server's slowness; the deadline counts from the start."""
        start = time.monotonic()
        seen: collections.deque[tuple[float, int]] = collections.deque()
        while not self.stopped and not self.finished:
            await asyncio.sleep(min(1.0, pace.grace / 4, pace.deadline / 4))
            if self.finished:
                return
            now = time.monotonic()
            if self.connected is not None and not seen:
                seen.append((self.connected, 0))
            if seen:
                seen.append((now, self.received))
            while len(seen) > 1 and seen[1][0] <= now - pace.grace:
                seen.popleft()
            if now - start > pace.deadline:
                self.stop(f"That download took longer than my limit of {pace.deadline / 60:g} minutes, "
                          "so I stopped it.")
            elif seen and now - seen[0][0] >= pace.grace and self.received - seen[0][1] < pace.min_rate * pace.grace:
                self.stop(f"That server sends too slowly (under {pace.min_rate / 1024:g} KB/s), so I "
                          "stopped the download.")

    def finish(self) -> None:
        """The download is over (the jailed child has its file): refuse new connections and stop
        watching the pace, so that the minutes the child then spends decoding, with no byte
        coming, are not taken for a stalled download."""
        self.finished = True
        if self._server is not None:
            self._server.close()

    async def __aenter__(self) -> GuardProxy:
        if self.unix is not None:  # the jailed ingest's way out (core/ingest/jail.py): a socket file
            self.unix.unlink(missing_ok=True)
            self._server = await asyncio.start_unix_server(self._serve, str(self.unix))
            os.chmod(self.unix, 0o600)
            self.url = f"unix:{self.unix}"
        else:
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
        if self.unix is not None:
            self.unix.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopped:
            writer.close()
            return
        self._writers.add(writer)
        if self.connected is None:
            self.connected = time.monotonic()
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

"""FakeMediaServer: a local web site (127.0.0.1) for fetch tests — plain video files, an HTML page
with a <video> and a captions <track> (what yt-dlp's generic extractor reads), a file that needs
an Authorization header (a chat platform's private file URL), redirects, and hostile timing and
size (`Stream`: a byte every few seconds, a page that never ends)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from tests.fakes.serve import serve


@dataclass(frozen=True)
class Stream:
    """A response sent piece by piece: `chunk` bytes every `delay` seconds until `total` bytes
    (announced in Content-Length when `announce`), or until the client goes away."""

    content_type: str = "text/html"
    chunk: bytes = b"<p>" + b"x" * 65533 + b"\n"
    delay: float = 0.0
    total: int = 2**30  # "endless": a gigabyte, as a last bound for the test machine
    announce: bool = False



class FakeMediaServer:
    def __init__(self, files: dict[str, Path | bytes], token: str = "xoxb-test") -> None:
        self.files = files
        self.token = token
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.redirects: dict[str, str] = {}
        self.streams: dict[str, Stream] = {}
        self.sent: dict[str, int] = {}  # bytes written per streamed name
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((name, dict(request.headers)))
        if name in self.redirects:  # sent as given, a malformed address included
            return web.Response(status=302, headers={"Location": self.redirects[name]})
        if name.startswith("private/") and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=403, text="not allowed")
        if name in self.streams:
            return await self._stream(request, name, self.streams[name])
        body = self.files.get(name.removeprefix("private/"))
        if body is None:
            return web.Response(status=404, text="no such file")
        if isinstance(body, Path):
            return web.FileResponse(body)
        # by the name's extension, as a hostile server would: `leak.mp4` is "video/mp4" whatever it holds
        ctype = {".html": "text/html", ".vtt": "text/vtt", ".mp4": "video/mp4"}.get(
            Path(name).suffix, "application/octet-stream")
        return web.Response(body=body, content_type=ctype)

    async def _stream(self, request: web.Request, name: str, spec: Stream) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": spec.content_type})
        if spec.announce:
            resp.content_length = spec.total
        await resp.prepare(request)
        self.sent[name] = 0
        try:
            while self.sent[name] < spec.total:
                piece = spec.chunk[: spec.total - self.sent[name]]
                await resp.write(piece)
                self.sent[name] += len(piece)
                await asyncio.sleep(spec.delay)
        except (ConnectionError, RuntimeError):
            pass  # the client (the guarding proxy) cut the connection
        return resp

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_get("/{name:.+}", self._handle)
        self._runner, self.base = await serve(app, host)
        return self.base

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


def page_with_captions(video: str, vtt: str, title: str) -> bytes:
    return (f"<html><head><title>{title}</title></head><body><video controls>"
            f'<source src="{video}" type="video/mp4">'
            f'<track kind="captions" src="{vtt}" srclang="en" label="English"></video></body></html>').encode()

"""Start a fake's aiohttp app on 127.0.0.1 (or another loopback address) at a free port: what every
fake server here shares."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """The runner (clean it up to stop) and the base URL, `http://HOST:PORT`. Cleaning up
    waits at most a second for handlers still running (aiohttp's default is 60 s): a fake that
    trickles a byte every 30 s to a client the test has already cut off is not waited for."""
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{host}:{port}"

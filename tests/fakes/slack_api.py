"""FakeSlackAPI: a small local aiohttp server that stands in for Slack in tests. It is a fake.

It speaks just enough of Slack's real protocols for slack_sdk and slack_bolt to run unchanged
against it (point `AsyncWebClient(base_url=fake.api_url)` at it):

- Web API methods under `/api/`: `auth.test`, `chat.postMessage`, `chat.update`,
  `files.getUploadURLExternal`, `files.completeUploadExternal`, `apps.connections.open`;
- the upload URL that `files.getUploadURLExternal` hands out (`/upload/<file id>`);
- private file downloads (`/files-pri/...`, `url_private_download`), which need the bot token,
  and public media links (`/media/<name>`) for yt-dlp;
- slash-command `response_url`s (`/respond/<id>`);
- a Socket Mode WebSocket (`/link`): `push()` sends an envelope, acknowledgements are recorded.

Every request is recorded in `calls` (method or path, headers, merged query/form/JSON arguments,
HTTP status, the JSON answered), so a test asserts "`chat.postMessage` was called once with this `thread_ts`".
`rate_limit(method)` answers the next call of a method with HTTP 429 and `Retry-After`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.serve import serve

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"
TEAM = "T0FAKE"
BOT_USER = "U0VIDRAG"
BOT_ID = "B0VIDRAG"
ADMIN, OWNER, MEMBER = "U0ADMIN", "U0OWNER", "U0ALICE"  # the workspace's people, for `users.info`


@dataclass
class Call:
    method: str  # Web API method ("chat.postMessage"), or "upload", "download", "respond"
    args: dict[str, Any]
    headers: dict[str, str]
    status: int = 200
    path: str = ""
    body: bytes = b""
    response: dict[str, Any] = field(default_factory=dict)  # what the fake answered


@dataclass
class FakeSlackAPI:
    calls: list[Call] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # "/files-pri/..." path -> file served with the token
    media: dict[str, Path] = field(default_factory=dict)  # "/media/<name>" name -> file served to anyone
    acks: list[dict[str, Any]] = field(default_factory=list)  # Socket Mode acknowledgements
    # `users.info` answers from here (an admin, an owner, an ordinary member) and `user_not_found`
    # for anyone else, as Slack does
    users: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        ADMIN: {"is_admin": True, "is_owner": False},
        OWNER: {"is_admin": True, "is_owner": True},
        MEMBER: {"is_admin": False, "is_owner": False},
    })
    url: str = ""
    _limits: dict[str, list[int]] = field(default_factory=dict)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _ws: web.WebSocketResponse | None = None
    _ws_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _acked: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> FakeSlackAPI:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack_sdk reads `users.info` with GET
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{rest:.*}", self._download)
        app.router.add_get("/media/{name}", self._media)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_get("/link", self._socket)
        self._runner, self.url = await serve(app)
        return self

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # ---- test controls --------------------------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: int = 0) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and `Retry-After: retry_after`."""
        self._limits[method] = [times, retry_after]

    def serve_file(self, path_: str, file: Path) -> str:
        """Serve `file` at `/files-pri/<path_>` to bearers of the bot token; returns its URL."""
        self.files[path_] = file
        return f"{self.url}/files-pri/{path_}"

    def serve_media(self, name: str, file: Path) -> str:
        """Serve `file` at `/media/<name>` to anyone (a public video link); `name` is URL-encoded."""
        self.media[name] = file
        return f"{self.url}/media/{name}"

    def called(self, method: str, status: int | None = 200, **match: Any) -> list[Call]:
        """Recorded calls of `method` (answered with `status`; None: any) whose arguments match."""
        return [c for c in self.calls if c.method == method and (status is None or c.status == status)
                and all(c.args.get(k) == v for k, v in match.items())]

    async def push(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Send a Socket Mode envelope to the connected client; return its acknowledgement."""
        async with asyncio.timeout(5):
            await self._ws_ready.wait()
            assert self._ws is not None
            await self._ws.send_str(json.dumps(envelope))
            async with self._acked:
                await self._acked.wait_for(
                    lambda: any(a.get("envelope_id") == envelope["envelope_id"] for a in self.acks))
        return next(a for a in self.acks if a.get("envelope_id") == envelope["envelope_id"])

    # ---- handlers -------------------------------------------------------------------------------
    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return args

    def _record(self, method: str, request: web.Request, args: dict[str, Any], status: int = 200,
                body: bytes = b"") -> None:
        self.calls.append(Call(method, args, dict(request.headers), status, request.path, body))

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        limit = self._limits.get(method)
        if limit and limit[0] > 0:
            limit[0] -= 1
            self._record(method, request, args, 429)
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(limit[1])})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            self._record(method, request, args, 200)
            return web.json_response({"ok": False, "error": "invalid_auth"})
        reply = {"ok": True, **self._reply(method, args)}
        self._record(method, request, args)
        self.calls[-1].response = reply
        return web.json_response(reply)

    def _reply(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            if user is None:
                return {"ok": False, "error": "user_not_found"}
            return {"user": {"id": args["user"], "team_id": TEAM, "is_bot": False, **user}}
        if method == "auth.test":
            return {"url": "https://fake.slack.com/", "team": "Fake", "user": "vidrag", "team_id": TEAM,
                    "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}
        if method == "chat.postMessage":
            ts = f"1800000000.{next(self._ts):06d}"
            return {"channel": args.get("channel"), "ts": ts,
                    "message": {"text": args.get("text"), "ts": ts, "bot_id": BOT_ID}}
        if method == "chat.update":
            return {"channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):08d}"
            return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = json.loads(args.get("files") or "[]")
            return {"files": [{"id": f["id"], "title": f.get("title", "")} for f in files]}
        if method == "apps.connections.open":
            return {"url": f"{self.url.replace('http', 'ws', 1)}/link"}
        return {}

    async def _upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._record("upload", request, {"file_id": request.match_info["file_id"]}, body=body)
        return web.Response(text="OK - " + str(len(body)))

    async def _download(self, request: web.Request) -> web.StreamResponse:
        rest = request.match_info["rest"]
        ok = request.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
        self._record("download", request, {"file": rest}, 200 if ok and rest in self.files else 403)
        if not ok or rest not in self.files:
            return web.Response(status=403, text="not allowed")
        return web.FileResponse(self.files[rest])

    async def _media(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        file = next((f for n, f in self.media.items() if n == name or _unquote(n) == name), None)
        self._record("media", request, {"name": name}, 200 if file else 404)
        return web.FileResponse(file) if file else web.Response(status=404)

    async def _respond(self, request: web.Request) -> web.Response:
        self._record("respond", request, {"id": request.match_info["id"], **await request.json()})
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._record("socket", request, {})
        self._ws = ws
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "connection_info": {"app_id": "A0FAKE"}}))
        self._ws_ready.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                async with self._acked:
                    self.acks.append(json.loads(msg.data))
                    self._acked.notify_all()
        return ws


def _unquote(name: str) -> str:
    from urllib.parse import unquote

    return unquote(name)

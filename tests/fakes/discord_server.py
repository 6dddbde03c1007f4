"""FakeDiscord: a small local server that speaks Discord's gateway and REST protocols.

It stands in for discord.com so the tests run the *real* discord.py client end to end — its
websocket gateway (HELLO, IDENTIFY, READY, heartbeats, dispatched events), its HTTP client, its
model objects, its CommandTree and its interaction webhooks — with nothing patched inside the
library except the two base URLs (`point_discord_py_at`). It listens on 127.0.0.1 only and also
serves the "CDN" (attachment files) and plain media links for yt-dlp.

Tests speak as users (`post`, `slash`, `autocomplete`), then read what the bot did: every REST call
is recorded in `requests` (method, path, JSON body, uploaded files), and `messages` holds each
message's latest state after edits, so "the progress message ends at 'Indexed'" is one wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yarl
from aiohttp import WSMsgType, web

from tests.fakes.serve import serve

DISCORD_EPOCH_MS = 1420070400000
GUILD_ID = 410000000000000001
BOT_ID = 410000000000000002
OWNER_ID = 410000000000000003


@dataclass
class Recorded:
    """One REST request the bot made."""

    method: str
    path: str
    json: Any = None
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def _user(uid: int, name: str, bot: bool = False) -> dict:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name, "avatar": None,
            "bot": bot}


def _json(data: Any, status: int = 200) -> web.Response:
    # exactly "application/json": discord.py's json_or_text compares the header as a whole
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())


class FakeDiscord:
    """One guild with text channels, one bot, any number of users; plus DMs."""

    MESSAGE_CONTENT = 1 << 15

    def __init__(self, channels: tuple[str, ...] = ("general", "random"), *,
                 message_content_enabled: bool = True, heartbeat_ms: int = 41250) -> None:
        # `message_content_enabled=False` is a bot whose portal setting is off: asking for the intent
        # closes the gateway with 4014, and messages that do not mention the bot arrive blank.
        self.message_content_enabled = message_content_enabled
        self.heartbeat_ms = heartbeat_ms
        self.heartbeats: list[float] = []  # when each heartbeat arrived (time.perf_counter())
        self._ids = itertools.count(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) + 1)
        self.bot = _user(BOT_ID, "vidrag", bot=True)
        self.channels: dict[str, dict] = {}
        for name in channels:
            cid = self.snowflake()
            self.channels[name] = {"id": str(cid), "type": 0, "guild_id": str(GUILD_ID), "name": name,
                                   "position": len(self.channels), "permission_overwrites": [], "nsfw": False,
                                   "parent_id": None, "topic": None, "last_message_id": None}
        self.threads: dict[str, dict] = {}
        self.messages: dict[str, dict] = {}
        self.requests: list[Recorded] = []
        self.commands: list[dict] = []
        self.identify: dict | None = None
        self._interaction_channels: dict[str, str] = {}  # interaction token -> channel id
        self._pending: set[asyncio.Task[None]] = set()
        self.files: dict[str, bytes | Path] = {}  # served at /cdn/<name> and /media/<name>
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ---- set-up -----------------------------------------------------------------------------------
    def snowflake(self) -> int:
        return next(self._ids)

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{name}", self._serve_file)
        app.router.add_get("/media/{name}", self._serve_file)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner, self.url = await serve(app)
        return self.url

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner:
            await self._runner.cleanup()

    def point_discord_py_at(self, monkeypatch: Any) -> None:
        """Send discord.py's REST calls (HTTPClient and interaction webhooks) and its gateway here."""
        import discord.gateway
        import discord.http

        monkeypatch.setattr(discord.http.Route, "BASE", f"{self.url}/api/v10")
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                            yarl.URL(f"{self.url.replace('http', 'ws')}/gateway"))

    # ---- gateway ----------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}, "s": None, "t": None})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data["op"] == 1:  # heartbeat
                self.heartbeats.append(time.perf_counter())
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif data["op"] == 2:  # identify
                if data["d"].get("intents", 0) & self.MESSAGE_CONTENT and not self.message_content_enabled:
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                self.identify = data["d"]
                await self._notify()
                await self.dispatch("READY", {
                    "v": 10, "user": self.bot, "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                    "session_id": "fake-session", "resume_gateway_url": f"{self.url.replace('http', 'ws')}/gateway",
                    "application": {"id": str(BOT_ID), "flags": 0}, "private_channels": [], "relationships": []})
                await self.dispatch("GUILD_CREATE", self._guild())
        return ws

    async def dispatch(self, event: str, data: dict) -> None:
        assert self._ws is not None, "the bot is not connected to the fake gateway"
        self._seq += 1
        await self._ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    def _guild(self) -> dict:
        everyone = {"id": str(GUILD_ID), "name": "@everyone", "permissions": str(0x7FFFFFFF),
                    "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False}
        return {"id": str(GUILD_ID), "name": "Fake guild", "owner_id": str(OWNER_ID), "icon": None,
                "splash": None, "discovery_splash": None, "banner": None, "features": [], "emojis": [],
                "stickers": [], "roles": [everyone], "channels": list(self.channels.values()),
                "threads": list(self.threads.values()), "members": [], "member_count": 3, "large": False,
                "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
                "mfa_level": 0, "premium_tier": 0, "nsfw_level": 0, "preferred_locale": "en-US",
                "system_channel_flags": 0, "afk_timeout": 300, "unavailable": False, "joined_at": _now(),
                "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": []}

    # ---- users speaking ---------------------------------------------------------------------------
    async def post(self, channel: str, content: str, *, author: dict | None = None, mention_bot: bool = False,
                   attachments: list[tuple[str, str, bytes | Path]] = (), dm: bool = False) -> dict:
        """A user posts `content` (and `attachments` as (filename, content_type, data)) in `channel`:
        a channel name, a thread id, or with `dm=True` any id for a DM channel."""
        author = author or _user(OWNER_ID, "alice")
        if mention_bot:
            content = f"<@{BOT_ID}> {content}"
        atts = []
        for name, ctype, data in attachments:
            key = f"{self.snowflake()}-{name}"
            self.files[key] = data
            size = data.stat().st_size if isinstance(data, Path) else len(data)
            atts.append({"id": str(self.snowflake()), "filename": name, "size": size, "content_type": ctype,
                         "url": f"{self.url}/cdn/{key}", "proxy_url": f"{self.url}/cdn/{key}"})
        msg = self._message(self.channel_id(channel) if not dm else str(channel), author, content, atts,
                            guild=not dm)
        msg["mentions"] = [self.bot] if mention_bot else []
        if not (mention_bot or dm or self.intents & self.MESSAGE_CONTENT):
            msg.update(content="", attachments=[])  # what Discord sends without the intent
        self.messages[msg["id"]] = msg
        await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def slash(self, channel: str, name: str, options: dict[str, Any] | None = None, *,
                    permissions: int = 0x7FFFFFFF, kind: int = 2, focused: str | None = None,
                    user: tuple[int, str] = (OWNER_ID, "alice")) -> str:
        """A user (`user`: id and name; alice by default) runs `/name` (kind 2) or types in an
        option with autocomplete (kind 4); returns the interaction token, which keys the responses
        in `requests`."""
        token = f"tok{self.snowflake()}"
        ch = self.channel(channel)
        self._interaction_channels[token] = ch["id"]
        opts = [{"name": k, "type": 3, "value": v, **({"focused": True} if k == focused else {})}
                for k, v in (options or {}).items()]
        member = {"user": _user(*user), "roles": [], "joined_at": _now(), "deaf": False,
                  "mute": False, "permissions": str(permissions), "flags": 0}
        await self.dispatch("INTERACTION_CREATE", {
            "id": str(self.snowflake()), "application_id": str(BOT_ID), "type": kind, "token": token,
            "version": 1, "guild_id": str(GUILD_ID), "channel_id": ch["id"], "channel": ch, "member": member,
            "data": {"id": str(self.snowflake()), "name": name, "type": 1, "options": opts},
            "app_permissions": str(0x7FFFFFFF), "locale": "en-US", "guild_locale": "en-US",
            "entitlements": [], "authorizing_integration_owners": {"0": str(GUILD_ID)}, "context": 0,
            "attachment_size_limit": 10 * 2**20})
        return token

    async def press(self, message: dict, custom_id: str | None = None, *,
                    user: tuple[int, str] = (OWNER_ID, "alice")) -> str:
        """A user presses a button of the bot's `message` (the first one, or the one whose
        `custom_id` is given: a client may send any); returns the interaction token."""
        buttons = [c for row in message.get("components") or [] for c in row.get("components", [])]
        custom_id = custom_id if custom_id is not None else buttons[0]["custom_id"]
        token = f"tok{self.snowflake()}"
        channel_id = message["channel_id"]
        ch = next(c for c in [*self.channels.values(), *self.threads.values()] if c["id"] == channel_id)
        self._interaction_channels[token] = channel_id
        member = {"user": _user(*user), "roles": [], "joined_at": _now(), "deaf": False,
                  "mute": False, "permissions": str(0x7FFFFFFF), "flags": 0}
        await self.dispatch("INTERACTION_CREATE", {
            "id": str(self.snowflake()), "application_id": str(BOT_ID), "type": 3, "token": token,
            "version": 1, "guild_id": str(GUILD_ID), "channel_id": channel_id, "channel": ch, "member": member,
            "message": message, "data": {"custom_id": custom_id, "component_type": 2},
            "app_permissions": str(0x7FFFFFFF), "locale": "en-US", "guild_locale": "en-US",
            "entitlements": [], "authorizing_integration_owners": {"0": str(GUILD_ID)}, "context": 0,
            "attachment_size_limit": 10 * 2**20})
        return token

    # ---- what the bot did -------------------------------------------------------------------------
    @property
    def intents(self) -> int:
        return (self.identify or {}).get("intents", 0)

    def channel_id(self, channel: str) -> str:
        return self.channel(channel)["id"]

    def channel(self, channel: str) -> dict:
        if channel in self.channels:
            return self.channels[channel]
        return self.threads[channel]

    def bot_messages(self, channel: str) -> list[dict]:
        cid = self.channel_id(channel) if channel in self.channels or channel in self.threads else channel
        return [m for m in self.messages.values() if m["channel_id"] == cid and m["author"]["id"] == str(BOT_ID)]

    def calls(self, method: str, path_part: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and path_part in r.path]

    async def wait_for(self, predicate: Callable[[], Any], within: float = 60) -> Any:
        """Wait until `predicate()` is truthy (checked after each request the bot makes and after
        each IDENTIFY)."""
        async def until() -> Any:
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result
        return await asyncio.wait_for(until(), within)

    # ---- REST -------------------------------------------------------------------------------------
    def _message(self, channel_id: str, author: dict, content: str, attachments: list[dict],
                 guild: bool = True, reference: dict | None = None) -> dict:
        msg = {"id": str(self.snowflake()), "channel_id": channel_id, "author": author, "content": content,
               "timestamp": _now(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
               "mentions": [], "mention_roles": [], "attachments": attachments, "embeds": [], "pinned": False,
               "type": 19 if reference else 0, "flags": 0, "components": []}
        if guild:
            msg["guild_id"] = str(GUILD_ID)
            msg["member"] = {"roles": [], "joined_at": _now(), "deaf": False, "mute": False, "flags": 0}
        if reference:
            msg["message_reference"] = {k: str(v) if k.endswith("_id") else v for k, v in reference.items()}
        return msg

    async def _read(self, request: web.Request) -> tuple[Any, dict[str, tuple[str, bytes]]]:
        if not request.can_read_body:
            return None, {}
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            files = {k: (v.filename, v.file.read()) for k, v in form.items() if isinstance(v, web.FileField)}
            return json.loads(str(form["payload_json"])), files
        return await request.json(), {}

    def _stored_attachments(self, files: dict[str, tuple[str, bytes]]) -> list[dict]:
        out = []
        for filename, data in files.values():
            key = f"{self.snowflake()}-{filename}"
            self.files[key] = data
            out.append({"id": str(self.snowflake()), "filename": filename, "size": len(data),
                        "url": f"{self.url}/cdn/{key}", "proxy_url": f"{self.url}/cdn/{key}"})
        return out

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        body, files = await self._read(request)
        path = "/" + request.match_info["path"]
        rec = Recorded(request.method, path, body, files, dict(request.query))
        try:
            return self._route(rec)
        finally:
            self.requests.append(rec)
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _route(self, r: Recorded) -> web.StreamResponse:  # noqa: C901 - one table of routes
        p = r.path.strip("/").split("/")
        ok = _json
        if r.method == "GET" and r.path == "/users/@me":
            return ok(self.bot)
        if r.method == "GET" and r.path == "/oauth2/applications/@me":
            return ok({"id": str(BOT_ID), "name": "vidrag", "icon": None, "description": "", "bot_public": True,
                       "bot_require_code_grant": False, "owner": _user(OWNER_ID, "alice"), "verify_key": "0",
                       "flags": 0, "team": None, "summary": "", "rpc_origins": []})
        if r.method == "PUT" and p[0] == "applications" and p[-1] == "commands":
            self.commands = [{**c, "id": str(self.snowflake()), "application_id": str(BOT_ID), "version": "1"}
                             for c in r.json]
            return ok(self.commands)
        if p[0] == "channels":
            cid = p[1]
            if r.method == "GET" and len(p) == 2:
                return ok(next(c for c in [*self.channels.values(), *self.threads.values()] if c["id"] == cid))
            if r.method == "POST" and p[2:] == ["typing"]:
                return web.Response(status=204)
            if r.method == "POST" and p[2:] == ["messages"]:
                msg = self._message(cid, self.bot, r.json.get("content") or "", self._stored_attachments(r.files),
                                    guild=self._in_guild(cid), reference=r.json.get("message_reference"))
                msg["components"] = r.json.get("components") or []
                self.messages[msg["id"]] = msg
                return ok(msg)
            if r.method == "PATCH" and p[2] == "messages":
                msg = self.messages[p[3]]
                msg.update(content=r.json.get("content", msg["content"]), edited_timestamp=_now())
                return ok(msg)
            if r.method == "PUT" and "reactions" in p:
                return web.Response(status=204)
            if r.method == "POST" and p[2] == "messages" and p[-1] == "threads":
                parent = next(c for c in self.channels.values() if c["id"] == cid)
                thread = self._thread(p[3], parent, r.json["name"])
                self._later(self.dispatch("THREAD_CREATE", {**thread, "newly_created": True}))
                return ok(thread)
        if r.method == "POST" and p[0] == "interactions" and p[-1] == "callback":
            iid = p[1]
            message = None
            if r.json.get("type") == 4:  # an immediate message
                message = self._interaction_message(r.json.get("data") or {}, r.files)
            return ok({"interaction": {"id": iid, "type": 2, "response_message_id": message and message["id"],
                                       "response_message_loading": r.json.get("type") == 5,
                                       "response_message_ephemeral": False},
                       "resource": {"type": r.json.get("type"), **({"message": message} if message else {})}})
        if p[0] == "webhooks":
            token = p[2]
            if r.method == "POST" and len(p) == 3:  # a followup message
                return ok(self._interaction_message(r.json, r.files, token))
            if r.method == "PATCH" and p[3] == "messages":
                return ok(self._interaction_message(r.json, r.files, token))
        return _json({"message": f"fake Discord has no route {r.method} {r.path}", "code": 0},
                                 status=404)

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        """Send a gateway event after the REST response, as Discord does; kept until it is sent."""
        async def quietly() -> None:
            with contextlib.suppress(ConnectionError, AssertionError):  # the bot left meanwhile
                await coro
        task = asyncio.get_running_loop().create_task(quietly())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _in_guild(self, cid: str) -> bool:
        return any(c["id"] == cid for c in [*self.channels.values(), *self.threads.values()])

    def _interaction_message(self, data: dict, files: dict, token: str = "") -> dict:
        msg = self._message(str(data.get("channel_id") or self._interaction_channels.get(token, "")), self.bot,
                            data.get("content") or "", self._stored_attachments(files))
        msg["interaction_token"] = token
        msg["flags"] = data.get("flags", 0)
        self.messages[msg["id"]] = msg
        return msg

    def _thread(self, message_id: str, parent: dict, name: str) -> dict:
        thread = {"id": message_id, "type": 11, "guild_id": str(GUILD_ID), "parent_id": parent["id"], "name": name,
                  "owner_id": str(BOT_ID), "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
                  "last_message_id": None, "flags": 0,
                  "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "locked": False,
                                      "archive_timestamp": _now()}}
        self.threads[message_id] = thread
        return thread

    # ---- files ------------------------------------------------------------------------------------
    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="not found")
        if isinstance(data, Path):
            return web.FileResponse(data)
        return web.Response(body=data, content_type="application/octet-stream")

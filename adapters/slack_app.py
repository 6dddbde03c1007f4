"""Slack adapter: slack-bolt's AsyncApp translating Slack events into service calls, and answers
into threaded Slack messages.

- A message event becomes a `core.chat.incoming.Incoming` (Slack's mrkdwn decoded, its `<url|label>`
  links read, shared files with the bot token to fetch them), and `decide` says what it asks, by
  the rule every platform shares; `core.chat.flow` does it through a `SlackPort`. Each video to index gets one reply in the message's thread that
  shows its progress (`chat.update`) and then the result or the reason it failed.
- A question is answered in the message's thread: timestamps become links to the video, and the
  best frame is uploaded into the same thread (`files_upload_v2`). The thread root's ts is the
  core's conversation key, so follow-up mentions in a thread carry its turns.
- `/vidrag videos | summary [video] | forget <video> | status` answers privately (ephemeral, via
  `respond`); a video's summary and chapters are blocks, each chapter a link to its second, in
  its "Indexed" message too (POST_SUMMARY);
  `forget` (there or by mention) is for the person who posted the video and for workspace admins
  and owners (`users.info`); the core decides (`Service.forget`).
- A question is admitted (rate limits, length) before anything is posted for it: a refused one
  opens no thread; its refusal goes to the asker alone (`chat.postEphemeral`).

Slack delivers one mention twice (as `app_mention` and as `message`) and retries deliveries it
thinks were lost (`X-Slack-Retry-Num`), so each message is handled once per (team, channel, ts).
That memory is per process: several HTTP workers behind one request URL would each keep their own.
Listeners only decide and schedule; the work runs in tasks this class tracks, so Slack gets its
acknowledgement at once. What the bot says about jobs and videos is worded by `core.chat.present`, in
Slack's markup (`STYLE`): every string that came from a video (title, file name) is bounded and
neutralized by `safety.one_line` (no live link, no mention), then escaped (`&`, `<`, `>`), so it
cannot form a mention (`<!channel>`) or a link; a model's text is escaped too.

In HTTP mode a request whose signature headers are missing or malformed (a timestamp that is not
a number) is refused with 401 before slack_bolt reads them, and a body that is not text with 400:
the SDK would raise on either and answer 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler, async_default_handlers
from slack_sdk.web.async_client import AsyncWebClient

from core.chat import flow, present
from core.chat.incoming import CLIP_BUTTON, Action, Attachment, Decision, Incoming, clip_button, clip_pressed, decide
from core.config import Settings, SettingsError
from core.errors import APOLOGY, UserFacingError
from core.ingest.cut import Clip
from core.models import Answer, Scope, Summary, fmt_time
from core.service import JobEvent, Service
from core.text.links import has_video_suffix
from core.text.safety import one_line

log = logging.getLogger(__name__)

SECTION_LIMIT = 3000  # characters in one section block's text (Slack's limit)
SECTIONS_PER_MESSAGE = 10  # 30,000 characters: under the 40,000 of a message and its 50 blocks
TEXT_LIMIT = 39_000  # characters of one message's `text` (Slack truncates past 40,000)
UPDATE_INTERVAL = 1.0  # seconds between progress edits: Slack allows about one message/s a channel
SEEN_MAX = 10_000  # (team, channel, ts) keys remembered for deduplication

_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>")
_MENTION = re.compile(r"<[@!#][^>]*>")
_STAMP = re.compile(r"\[(\d{1,2}:\d{2}(?::\d{2})?)\]")


# ---- text: Slack mrkdwn in, Slack mrkdwn out ----------------------------------------------------
def escape(text: str) -> str:
    """Slack's three control characters, so quoted words cannot become mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """`<url|label>` with the URL made safe inside Slack's link syntax."""
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace("&", "&amp;")
    return f"<{safe}|{label}>"


# Slack's markup for the core's wording: a video's own text shown as typed, titles in bold.
STYLE = present.Style(literal=escape, own=escape, bold="*{}*", code="`{}`", link=lambda label, url: link(url, label))

SLASH = {"videos": Action.VIDEOS, "list": Action.VIDEOS, "status": Action.STATUS, "forget": Action.FORGET,
         "summary": Action.SUMMARY, "chapters": Action.SUMMARY}
SLASH_HELP = ("`/vidrag videos`: the videos of this channel\n`/vidrag summary [video]`: what a video is about, "
              "and its chapters\n`/vidrag forget &lt;video&gt;`: delete one\n"
              "`/vidrag status`: what is being indexed\nPost a video link or file to index it; "
              "mention me with a question to ask about the videos.")
# Who may remove a video besides the person who posted it (Service.forget words the refusal), and
# what is added when Slack would not say whether the person is one.
ADMINS = "a workspace admin or owner"
FORGET_UNCHECKED = (" Slack did not tell me whether you are an admin or owner (the app may lack the "
                    "`users:read` scope).")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def to_mrkdwn(answer: Answer) -> str:
    """The answer's text escaped, its `[m:ss]` timestamps turned into links to the video."""
    urls: dict[str, str] = {}
    for c in answer.citations:
        if c.url:
            urls.setdefault(c.label, c.url)

    def stamp(m: re.Match[str]) -> str:
        url = urls.get(m.group(1))
        return link(url, m.group(1)) if url else m.group(0)

    return _STAMP.sub(stamp, escape(answer.text.strip()) or "…")


def sources_line(answer: Answer, limit: int = SECTION_LIMIT) -> str:
    """`Sources: *title* 0:05, 1:20 · *other* 3:02` — each moment linked where it can be."""
    by_video: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    for c in answer.citations:
        titles.setdefault(c.video_id, c.title)
        stamp = link(c.url, c.label) if c.url else c.label
        if stamp not in by_video.setdefault(c.video_id, []):
            by_video[c.video_id].append(stamp)
    parts = [f"{STYLE.video(titles[v])} {', '.join(stamps)}" for v, stamps in by_video.items()]
    line = ""
    for part in parts:
        nxt = f"{line} · {part}" if line else f"Sources: {part}"
        if len(nxt) > limit:
            break
        line = nxt
    return line


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at a line break, else a space (links and
    entities hold no spaces, so they are never cut in two)."""
    out: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text or not out:
        out.append(text)
    return [p for p in out if p] or ["…"]


def answer_messages(answer: Answer, clip: bool = False) -> list[dict[str, Any]]:
    """`chat.postMessage` arguments (text + blocks) for an answer: usually one message; longer
    answers are spread over several, each within Slack's block and message limits. With `clip`,
    the last one ends with a "Clip" button for the first citation."""
    chunks = split_text(to_mrkdwn(answer))
    messages: list[dict[str, Any]] = []
    for i in range(0, len(chunks), SECTIONS_PER_MESSAGE):
        part = chunks[i:i + SECTIONS_PER_MESSAGE]
        messages.append({"text": part[0], "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in part]})
    sources = sources_line(answer)
    if sources:
        messages[-1]["blocks"].append({"type": "context", "elements": [{"type": "mrkdwn", "text": sources}]})
    if clip and answer.citations:
        c = answer.citations[0]
        messages[-1]["blocks"].append({"type": "actions", "elements": [{
            "type": "button", "action_id": CLIP_BUTTON, "text": {"type": "plain_text", "text": present.CLIP_LABEL},
            "value": clip_button(c.video_id, c.start, c.end)}]})
    return messages


def summary_blocks(summary: Summary, lead: str = "") -> list[dict[str, Any]]:
    """A video's summary and chapters (each a link to its second) as blocks, after `lead` (the
    "Indexed" line): sections within Slack's 3,000 characters, at most 50 blocks."""
    sections = ([lead] if lead else []) + split_text(
        present.summary_title(STYLE, summary) + "\n" + present.summary_body(STYLE, summary))
    lines = present.chapter_lines(STYLE, summary)
    if lines:
        sections += split_text("*Chapters*\n" + "\n".join(lines))
    return [{"type": "section", "text": {"type": "mrkdwn", "text": t}} for t in sections[:50]]


def links_in(text: str) -> list[str]:
    """The links of a Slack message text (Slack writes them as `<url>` or `<url|label>`)."""
    return [unescape(m.group(1)) for m in _LINK.finditer(text or "")]


def file_type(f: dict[str, Any]) -> str:
    """A shared file's content type: its `mimetype`, else one made from its `filetype` ("mp4")."""
    mimetype = str(f.get("mimetype") or "")
    filetype = str(f.get("filetype") or "").lower()
    if not mimetype.startswith("video/") and has_video_suffix("." + filetype):
        return f"video/{filetype}"
    return mimetype


def plain(text: str) -> str:
    """A Slack message text as plain text: links as their URLs, mentions of people, channels and
    groups taken out (the bot's own among them), `&amp; &lt; &gt;` decoded."""
    text = _LINK.sub(lambda m: f" {m.group(1)} ", text or "")
    return " ".join(unescape(_MENTION.sub(" ", text)).split())


def bounded(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text` cut at a line break to fit one message (a slash reply listing many videos)."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[:cut if cut > 0 else limit - 1] + "…"


def well_formed(headers: Mapping[str, str]) -> bool:
    """Whether a request carries both signature headers in a shape slack_sdk's verifier can
    judge: it raises (a 500) on a timestamp `int()` cannot read ("abc", 5,000 digits) and on a
    signature holding non-ASCII characters (`hmac.compare_digest`)."""
    stamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    return stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 and signature.isascii() and bool(signature)


def web_client(token: str, base_url: str | None = None) -> AsyncWebClient:
    """A Web API client that waits out HTTP 429s (`Retry-After`) and retries dropped connections."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    return AsyncWebClient(token=token, retry_handlers=[*async_default_handlers(),
                                                       AsyncRateLimitErrorRetryHandler(max_retry_count=3)], **kwargs)


class SlackPort:
    """`core.chat.flow.Port` over one Slack thread: every message goes in the thread of `root`
    (or in the channel without one). A refusal before anything was posted there goes to the
    asker alone (`chat.postEphemeral`): it opens no thread."""

    style, limit, interval, admins, unsure = STYLE, SECTION_LIMIT, UPDATE_INTERVAL, ADMINS, FORGET_UNCHECKED
    upload_mb: float | None = None  # the core's own limit (MAX_CLIP_MB)

    def __init__(self, bot: SlackBot, channel: str, root: str | None, user: str = "", opened: bool = True) -> None:
        self.bot, self.client, self.channel, self.thread = bot, bot.client, channel, root
        self.user, self.opened = user, opened
        self.summaries = bot.settings.post_summary

    async def post(self, text: str, summary: Summary | None = None, *, private: bool = False) -> object:
        if private and not self.opened and self.user:
            await self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text)
            return None
        return await self._say(bounded(text), self._blocks(text, summary))

    async def _say(self, text: str, blocks: list[dict[str, Any]] | None) -> str:
        self.opened = True
        r = await self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread, text=text, blocks=blocks,
                                               unfurl_links=False, unfurl_media=False)
        return str(r["ts"])

    async def edit(self, message: object, text: str, summary: Summary | None = None) -> None:
        await self.client.chat_update(channel=self.channel, ts=str(message), text=text,
                                      blocks=self._blocks(text, summary))

    @staticmethod
    def _blocks(text: str, summary: Summary | None) -> list[dict[str, Any]] | None:
        """A summary's blocks after the message's own line (none when that line is the summary's title)."""
        if summary is None:
            return None
        return summary_blocks(summary, "" if text == present.summary_title(STYLE, summary) else text)

    async def answer(self, answer: Answer) -> None:
        for m in answer_messages(answer, clip=self.bot.settings.media_keep_gb > 0):
            await self._say(m["text"], m["blocks"])
        frame = answer.frame
        if frame is None:  # the core only returns frames whose file exists
            return
        title = one_line(next((c.title for c in answer.citations if c.video_id == frame.video_id), "video"))
        label = fmt_time(frame.time)
        try:
            await self.client.files_upload_v2(
                channel=self.channel, thread_ts=self.thread, file=frame.path,
                filename=f"frame-{label.replace(':', '-')}.jpg",
                title=escape(f"{title} at {label}")[:250], alt_txt=escape(f"Frame of {title} at {label}")[:900])
        except Exception:
            log.exception("uploading the frame to %s failed", self.channel)

    async def upload(self, clip: Clip) -> None:
        caption = present.clip_caption(STYLE, clip.title, clip.start, clip.end)
        try:
            await self.client.files_upload_v2(channel=self.channel, thread_ts=self.thread, file=clip.data,
                                              filename=clip.filename, title=escape(one_line(clip.title))[:250],
                                              initial_comment=caption)
        except Exception:
            log.exception("uploading a clip to %s failed", self.channel)
            await self.post(APOLOGY)

    async def open(self, question: str) -> SlackPort:
        return self

    def busy(self) -> AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    async def may_forget(self) -> bool | None:
        """A workspace admin or owner (`users.info`), Slack having no per-channel "manage
        messages" right (Discord's); None when Slack would not say (the app lacks `users:read`, or
        the user is unknown)."""
        if not self.user:
            return False
        try:
            r = await self.client.users_info(user=self.user)
        except SlackApiError as e:
            log.warning("users.info for %s failed (does the app have the users:read scope?): %s", self.user, e)
            return None
        info = r.get("user") or {}
        return bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))


# ---- the bot ------------------------------------------------------------------------------------
class SlackBot:
    """One Bolt app over one `Service`; serve it with `web_app()` (HTTP) or `socket_mode()`."""

    def __init__(self, service: Service, settings: Settings, client: AsyncWebClient | None = None) -> None:
        self.service = service
        self.settings = settings
        self.client = client or web_client(settings.slack_bot_token)
        self.auth = {"Authorization": f"Bearer {self.client.token}"}
        service.auth_headers["slack"] = self.auth  # for file downloads of jobs resumed after a restart
        self._unhook = service.on_job_event(self._on_job_event)
        # No signing secret (Socket Mode only): a random one, so no HTTP request can ever verify.
        self.app = AsyncApp(client=self.client, name="vidrag", process_before_response=True,
                            signing_secret=settings.slack_signing_secret or secrets.token_hex(32))
        # process_before_response: our listeners only decide and schedule, so Slack still gets its
        # acknowledgement at once, and the deduplication decision is made before it does.
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.command("/vidrag")(self._on_command)
        self.app.action(CLIP_BUTTON)(self._on_clip_button)
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- serving --------------------------------------------------------------------------------
    def web_app(self, path: str = "/slack/events") -> web.Application:
        """The HTTP mode endpoint (events and the slash command) plus `/healthz`."""

        async def events(request: web.Request) -> web.Response:
            if not well_formed(request.headers):
                return web.json_response({"error": "invalid request"}, status=401)
            try:
                req = await to_bolt_request(request)
            except (UnicodeDecodeError, LookupError):  # a body that is not text in its declared charset
                return web.json_response({"error": "invalid request"}, status=400)
            return await to_aiohttp_response(await self.app.async_dispatch(req))

        async def health(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post(path, events)
        app.router.add_get("/healthz", health)
        return app

    def socket_mode(self, app_token: str) -> AsyncSocketModeHandler:
        return AsyncSocketModeHandler(self.app, app_token, web_client=self.client)

    async def drain(self) -> None:
        """Wait until every piece of work started so far has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop the work under way and stop hearing the service's jobs (the service may outlive us)."""
        self._unhook()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("slack task failed", exc_info=task.exception())

    def _first_time(self, key: tuple[str, str, str]) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    # ---- events ---------------------------------------------------------------------------------
    def incoming(self, body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> Incoming | None:
        """The event in the core's words; None for what is not a person's new message (a bot's
        post, an edit, a deletion, a join)."""
        channel, ts = event.get("channel"), event.get("ts")
        if not channel or not ts or event.get("bot_id"):
            return None
        if event.get("subtype") not in (None, "file_share", "thread_broadcast"):
            return None
        team = context.get("team_id") or body.get("team_id") or event.get("team") or ""
        text = event.get("text") or ""
        bot_user = context.get("bot_user_id")
        files = tuple(Attachment(f["url_private_download"], str(f.get("name") or present.source_name(
            f["url_private_download"])), file_type(f), self.auth)
                      for f in event.get("files") or [] if f.get("url_private_download"))
        return Incoming(
            scope=Scope("slack", team, channel), text=plain(text), author=event.get("user", ""),
            mentioned=event.get("type") == "app_mention" or bool(bot_user and f"<@{bot_user}>" in text),
            direct=event.get("channel_type") == "im", links=tuple(links_in(text)), attachments=files,
            thread=event.get("thread_ts"), raw=event)

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> None:
        msg = self.incoming(body, event, context)
        if msg is None:
            return
        decision = await decide(msg)
        if decision.action == Action.NOTHING or not self._first_time((msg.scope.workspace, msg.scope.channel,
                                                                        event["ts"])):
            return
        self._spawn(self._act(msg, decision, msg.thread or event["ts"]))

    async def _act(self, msg: Incoming, decision: Decision, root: str) -> None:
        """Do what `decision` says (`flow.act`), every reply in the message's thread."""
        port = SlackPort(self, msg.scope.channel, root, msg.author, opened=msg.thread is not None)
        await flow.act(port, self.service, msg, decision)

    async def _on_clip_button(self, ack: Any, body: dict[str, Any], context: dict[str, Any]) -> None:
        """The "Clip" button under an answer: acknowledged at once, the moment its value names cut
        in the channel it was pressed in and posted in the answer's thread. The value comes back
        from Slack as the client sent it: `clip_pressed` reads it as any posted text."""
        await ack()
        actions = body.get("actions") or [{}]
        moment = clip_pressed(actions[0].get("value") if isinstance(actions[0], dict) else None)
        channel = (body.get("channel") or {}).get("id")
        team = context.get("team_id") or (body.get("team") or {}).get("id") or ""
        message = body.get("message") or {}
        root = message.get("thread_ts") or (body.get("container") or {}).get("thread_ts") or message.get("ts")
        if moment is None or not channel or not root:
            return
        scope = Scope("slack", team, channel)
        video, start, end = moment
        user = str((body.get("user") or {}).get("id") or "")
        self._spawn(flow.clip(SlackPort(self, channel, str(root), user),
                              self.service.clip(scope, video, start, end, user=user, cited=True)))

    async def _on_job_event(self, event: JobEvent) -> None:
        """Tell the channel how a job ended when no progress message of this process follows it
        (a job queued before a restart)."""
        if flow.ended(event, "slack"):
            await flow.tell_ended(SlackPort(self, event.job.scope.channel, None), self.service, event)

    # ---- the slash command ----------------------------------------------------------------------
    async def _on_command(self, ack: Any, command: dict[str, Any], context: dict[str, Any], respond: Any) -> None:
        await ack()
        team = context.get("team_id") or command.get("team_id") or ""
        scope = Scope("slack", team, command.get("channel_id", ""))
        self._spawn(self._command(scope, unescape(command.get("text") or ""), command.get("user_id", ""), respond))

    async def _command(self, scope: Scope, text: str, user: str, respond: Any) -> None:
        sub, _, arg = text.strip().partition(" ")
        action = SLASH.get(sub.lower())
        if action is None:
            reply = SLASH_HELP
        elif action == Action.FORGET and not arg.strip():
            reply = "Which one? `/vidrag forget &lt;video id or title&gt;` (see `/vidrag videos`)."
        elif action == Action.SUMMARY:
            try:
                summary = await self.service.summary(scope, arg.strip() or None)
            except UserFacingError as e:
                reply = escape(e.message)
            except Exception:
                log.exception("the summary in %s failed", scope.key)
                reply = APOLOGY
            else:
                await respond(text=present.summary_title(STYLE, summary), blocks=summary_blocks(summary),
                              response_type="ephemeral")
                return
        else:
            port = SlackPort(self, scope.channel, None, user)
            reply = await flow.command(port, self.service, scope, action, arg.strip(), user)
        await respond(text=bounded(reply), response_type="ephemeral")


async def run(service: Service, settings: Settings, http: bool, port: int | None = None) -> None:
    """Serve Slack until cancelled: HTTP events on `port` (default: the PORT variable, else 3000),
    verified with SLACK_SIGNING_SECRET, or Socket Mode with SLACK_APP_TOKEN."""
    bot = SlackBot(service, settings)
    try:
        if http:
            if not settings.slack_signing_secret:
                raise SettingsError(["Slack HTTP mode needs SLACK_SIGNING_SECRET."])
            runner = web.AppRunner(bot.web_app())
            await runner.setup()
            port = port or int(os.environ.get("PORT", "3000"))  # the platform's PORT (Procfile `web`)
            await web.TCPSite(runner, "0.0.0.0", port).start()
            log.info("Slack HTTP mode listening on :%d/slack/events", port)
            try:
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()
        else:
            if not settings.slack_app_token:
                raise SettingsError(["Slack Socket Mode needs SLACK_APP_TOKEN."])
            handler = bot.socket_mode(settings.slack_app_token)
            try:
                await handler.start_async()
            finally:
                await handler.close_async()
    finally:
        await bot.close()

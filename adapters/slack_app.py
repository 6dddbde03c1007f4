"""Slack adapter: slack-bolt's AsyncApp translating Slack events into service calls, and answers
into threaded Slack messages.

- A message with a video link, or a shared video file, starts an ingest job for the channel's
  scope (team + channel); one reply in the message's thread shows its progress (`chat.update`)
  and then the result or the reason it failed. Files come from `url_private_download` with the
  bot token.
- A mention is a question: the answer goes to the mention's thread, timestamps become links to
  the video, and the best frame is uploaded into the same thread (`files_upload_v2`). The thread
  root's ts is the core's conversation key, so follow-up mentions in a thread carry its turns.
- `/vidrag videos | forget <video> | status` answers privately (ephemeral, via `respond`).

Slack delivers one mention twice (as `app_mention` and as `message`) and retries deliveries it
thinks were lost (`X-Slack-Retry-Num`), so each message is handled once per (team, channel, ts).
That memory is per process: several HTTP workers behind one request URL would each keep their own.
Listeners only decide and schedule; the work runs in tasks this class tracks, so Slack gets its
acknowledgement at once. Every text that came from a video or a model is escaped (`&`, `<`, `>`)
so it cannot form a mention (`<!channel>`) or a link.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler, async_default_handlers
from slack_sdk.web.async_client import AsyncWebClient

from core.config import Settings
from core.errors import APOLOGY, UserFacingError
from core.fetch import has_video_suffix, is_video_link
from core.models import Answer, Progress, Scope, Stage, Video, fmt_time
from core.service import JobEvent, Service

log = logging.getLogger(__name__)

SECTION_LIMIT = 3000  # characters in one section block's text (Slack's limit)
SECTIONS_PER_MESSAGE = 10  # 30,000 characters: under the 40,000 of a message and its 50 blocks
MAX_SOURCES = 5  # links and files indexed from one message
UPDATE_INTERVAL = 1.0  # seconds between progress edits: Slack allows about one message/s a channel
SEEN_MAX = 10_000  # (team, channel, ts) keys remembered for deduplication

INDEX_WORDS = {"", "index", "add", "watch", "learn", "ingest", "please index", "index this"}

_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>")
_MENTION = re.compile(r"<[@!#][^>]*>")
_STAMP = re.compile(r"\[(\d{1,2}:\d{2}(?::\d{2})?)\]")


# ---- text: Slack mrkdwn in, Slack mrkdwn out ----------------------------------------------------
def escape(text: str) -> str:
    """Slack's three control characters, so quoted words cannot become mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def link(url: str, label: str) -> str:
    """`<url|label>` with the URL made safe inside Slack's link syntax."""
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace("&", "&amp;")
    return f"<{safe}|{label}>"


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
    parts = [f"*{escape(titles[v])}* {', '.join(stamps)}" for v, stamps in by_video.items()]
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


def answer_messages(answer: Answer) -> list[dict[str, Any]]:
    """`chat.postMessage` arguments (text + blocks) for an answer: usually one message; longer
    answers are spread over several, each within Slack's block and message limits."""
    chunks = split_text(to_mrkdwn(answer))
    messages = []
    for i in range(0, len(chunks), SECTIONS_PER_MESSAGE):
        part = chunks[i:i + SECTIONS_PER_MESSAGE]
        messages.append({"text": part[0], "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in part]})
    sources = sources_line(answer)
    if sources:
        messages[-1]["blocks"].append({"type": "context", "elements": [{"type": "mrkdwn", "text": sources}]})
    return messages


def links_in(text: str) -> list[str]:
    """The links of a Slack message text (Slack writes them as `<url>` or `<url|label>`)."""
    return [unescape(m.group(1)) for m in _LINK.finditer(text or "")]


def source_name(source: str) -> str:
    """What to call a video before its title is known: the link's file name."""
    return unquote(Path(urlsplit(source).path).name) or source


def is_video_file(f: dict[str, Any]) -> bool:
    return (str(f.get("mimetype", "")).startswith("video/")
            or has_video_suffix("." + str(f.get("filetype", "")).lower()))


def question_of(text: str) -> str:
    """What was asked: the message without mentions and links, as plain text."""
    return " ".join(unescape(_MENTION.sub(" ", _LINK.sub(" ", text or ""))).split())


def progress_text(p: Progress, name: str) -> str:
    title = escape(p.title or name)
    return f":hourglass_flowing_sand: Indexing *{title}*: {p.stage.value}…"


def done_text(v: Video) -> str:
    return (f":white_check_mark: Indexed *{escape(v.title)}* ({fmt_time(v.duration)}). "
            f"Mention me with a question about it.")


def web_client(token: str, base_url: str | None = None) -> AsyncWebClient:
    """A Web API client that waits out HTTP 429s (`Retry-After`) and retries dropped connections."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    return AsyncWebClient(token=token, retry_handlers=[*async_default_handlers(),
                                                       AsyncRateLimitErrorRetryHandler(max_retry_count=3)], **kwargs)


# ---- the bot ------------------------------------------------------------------------------------
class SlackBot:
    """One Bolt app over one `Service`; serve it with `web_app()` (HTTP) or `socket_mode()`."""

    def __init__(self, service: Service, settings: Settings, client: AsyncWebClient | None = None) -> None:
        self.service = service
        self.settings = settings
        self.client = client or web_client(settings.slack_bot_token)
        self.auth = {"Authorization": f"Bearer {self.client.token}"}
        service.auth_headers["slack"] = self.auth  # for file downloads of jobs resumed after a restart
        service.on_job_event(self._on_job_event)
        # No signing secret (Socket Mode only): a random one, so no HTTP request can ever verify.
        self.app = AsyncApp(client=self.client, name="vidrag", process_before_response=True,
                            signing_secret=settings.slack_signing_secret or secrets.token_hex(32))
        # process_before_response: our listeners only decide and schedule, so Slack still gets its
        # acknowledgement at once, and the deduplication decision is made before it does.
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.command("/vidrag")(self._on_command)
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- serving --------------------------------------------------------------------------------
    def web_app(self, path: str = "/slack/events") -> web.Application:
        """The HTTP mode endpoint (events and the slash command) plus `/healthz`."""

        async def events(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await self.app.async_dispatch(await to_bolt_request(request)))

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
    async def _on_event(self, body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> None:
        channel, ts = event.get("channel"), event.get("ts")
        if not channel or not ts or event.get("bot_id"):
            return
        if event.get("subtype") not in (None, "file_share", "thread_broadcast"):
            return  # edits, deletions, joins: nothing to do
        team = context.get("team_id") or body.get("team_id") or event.get("team") or ""
        text = event.get("text") or ""
        bot_user = context.get("bot_user_id")
        mention = event.get("type") == "app_mention" or bool(bot_user and f"<@{bot_user}>" in text)
        sources = await self._sources(event, mention)
        if not (mention or sources) or not self._first_time((team, channel, ts)):
            return
        scope = Scope("slack", team, channel)
        root = event.get("thread_ts") or ts
        user = event.get("user", "")
        for source, headers in sources:
            self._spawn(self._index(scope, root, source, headers, user))
        if not sources:
            self._spawn(self._answer(scope, root, question_of(text), user))

    async def _sources(self, event: dict[str, Any], mention: bool) -> list[tuple[str, dict[str, str] | None]]:
        """Video files (fetched with the bot token) and video links of a message. In a mention
        that says nothing else ("@vidrag <link>"), any link is taken as a video to index."""
        out: list[tuple[str, dict[str, str] | None]] = [
            (f["url_private_download"], self.auth) for f in event.get("files") or []
            if is_video_file(f) and f.get("url_private_download")]
        text = event.get("text") or ""
        any_link = mention and question_of(text).lower() in INDEX_WORDS
        out += [(url, None) for url in links_in(text) if any_link or await asyncio.to_thread(is_video_link, url)]
        return out[:MAX_SOURCES]

    async def _index(self, scope: Scope, root: str, source: str, headers: dict[str, str] | None,
                     user: str) -> None:
        name = source_name(source)
        msg = await self._post(scope.channel, root, f":inbox_tray: Got it: indexing *{escape(name)}*…")
        latest: list[Progress] = []
        changed = asyncio.Event()

        async def on_progress(p: Progress) -> None:  # called by the ingest worker: never block it
            latest[:] = [p]
            changed.set()

        try:
            sub = await self.service.submit(scope, source, headers=headers, requested_by=user,
                                            on_progress=on_progress)
            if sub.already:
                video = await self._video(scope, sub.job.video_id)
                await self._edit(scope.channel, msg, f":white_check_mark: Already indexed: *{escape(video)}*.")
                return
            waiter = asyncio.ensure_future(self.service.wait(sub.job.id))
            try:
                await self._follow(scope.channel, msg, waiter, latest, changed, name)
            finally:
                waiter.cancel()
            final = done_text(waiter.result())
        except UserFacingError as e:
            final = f":warning: I couldn't index *{escape(name)}*: {escape(e.message)}"
        except Exception:
            log.exception("indexing %s for %s failed", source, scope.key)
            final = f":warning: {APOLOGY}"
        await self._edit(scope.channel, msg, final)

    async def _follow(self, channel: str, ts: str, waiter: asyncio.Future[Video], latest: list[Progress],
                      changed: asyncio.Event, name: str) -> None:
        """Edit the progress message as stages pass, at most once per UPDATE_INTERVAL, until the
        job ends."""
        shown = ""
        while not waiter.done():
            wake = asyncio.ensure_future(changed.wait())
            await asyncio.wait({waiter, wake}, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            changed.clear()
            if latest and not waiter.done() and latest[0].stage not in (Stage.DONE, Stage.FAILED):
                text = progress_text(latest[0], name)
                if text != shown:
                    await self._edit(channel, ts, text)
                    shown = text
                    await asyncio.sleep(UPDATE_INTERVAL)

    async def _video(self, scope: Scope, video_id: str) -> str:
        return next((v.title for v in await self.service.videos(scope) if v.id == video_id), video_id)

    async def _answer(self, scope: Scope, root: str, question: str, user: str = "") -> None:
        try:
            answer = await self.service.ask(scope, question, thread=root, user=user)
        except UserFacingError as e:
            await self._post(scope.channel, root, escape(e.message))
            return
        except Exception:
            log.exception("answering in %s failed", scope.key)
            await self._post(scope.channel, root, APOLOGY)
            return
        for m in answer_messages(answer):
            await self._post(scope.channel, root, m["text"], m["blocks"])
        frame = answer.frame
        if frame is not None:  # the core only returns frames whose file exists
            title = next((c.title for c in answer.citations if c.video_id == frame.video_id), "video")
            label = fmt_time(frame.time)
            try:
                await self.client.files_upload_v2(
                    channel=scope.channel, thread_ts=root, file=frame.path,
                    filename=f"frame-{label.replace(':', '-')}.jpg",
                    title=escape(f"{title} at {label}")[:250], alt_txt=escape(f"Frame of {title} at {label}")[:900])
            except Exception:
                log.exception("uploading the frame to %s failed", scope.key)

    async def _on_job_event(self, event: JobEvent) -> None:
        """Tell the channel how a job ended when no progress message of this process follows it
        (a job queued before a restart)."""
        p, job = event.progress, event.job
        if event.listened or job.scope.platform != "slack" or p.stage not in (Stage.DONE, Stage.FAILED):
            return
        name = source_name(job.source)
        text = (f":white_check_mark: Indexed *{escape(p.title or name)}* after a restart. Mention me with a question about it."
                if p.stage == Stage.DONE else f":x: I couldn't index *{escape(name)}*: {escape(p.message or APOLOGY)}")
        try:
            await self.client.chat_postMessage(channel=job.scope.channel, text=text, unfurl_links=False)
        except Exception:
            log.exception("could not tell %s how job %s ended", job.scope.key, job.id)

    async def _post(self, channel: str, thread_ts: str, text: str, blocks: list[dict] | None = None) -> str:
        r = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks,
                                               unfurl_links=False, unfurl_media=False)
        return str(r["ts"])

    async def _edit(self, channel: str, ts: str, text: str) -> None:
        await self.client.chat_update(channel=channel, ts=ts, text=text)

    # ---- the slash command ----------------------------------------------------------------------
    async def _on_command(self, ack: Any, command: dict[str, Any], context: dict[str, Any], respond: Any) -> None:
        await ack()
        team = context.get("team_id") or command.get("team_id") or ""
        scope = Scope("slack", team, command.get("channel_id", ""))
        self._spawn(self._command(scope, unescape(command.get("text") or ""), respond))

    async def _command(self, scope: Scope, text: str, respond: Any) -> None:
        sub, _, arg = text.strip().partition(" ")
        try:
            reply = await self._run_command(scope, sub.lower(), arg.strip())
        except UserFacingError as e:
            reply = escape(e.message)
        except Exception:
            log.exception("/vidrag %s in %s failed", sub, scope.key)
            reply = APOLOGY
        await respond(text=reply, response_type="ephemeral")

    async def _run_command(self, scope: Scope, sub: str, arg: str) -> str:
        if sub in ("videos", "list"):
            videos = await self.service.videos(scope)
            if not videos:
                return "No videos in this channel yet. Post a video link or upload a video."
            return "Videos in this channel:\n" + "\n".join(
                f"• *{escape(v.title)}* ({fmt_time(v.duration)}) `{v.id}` {v.status.value}" for v in videos)
        if sub == "forget":
            if not arg:
                return "Which one? `/vidrag forget &lt;video id or title&gt;` (see `/vidrag videos`)."
            v = await self.service.forget(scope, arg)
            return f"Forgot *{escape(v.title)}* (`{v.id}`): its transcript, frames and vectors are deleted."
        if sub == "status":
            jobs = await self.service.jobs(scope)
            videos = await self.service.videos(scope)
            ready = sum(1 for v in videos if v.status.value == "ready")
            lines = [f"{ready} video{'s' if ready != 1 else ''} ready in this channel."]
            if not jobs:
                lines.append("Nothing is being indexed.")
            titles = {v.id: v.title for v in videos}
            lines += [f"• *{escape(titles.get(j.video_id, j.source))}*: {j.stage.value}"
                      + (f" (attempt {j.attempts + 1})" if j.attempts else "") for j in jobs]
            return "\n".join(lines)
        return ("`/vidrag videos`: the videos of this channel\n`/vidrag forget &lt;video&gt;`: delete one\n"
                "`/vidrag status`: what is being indexed\nPost a video link or file to index it; "
                "mention me with a question to ask about the videos.")


async def run(service: Service, settings: Settings, http: bool, port: int | None = None) -> None:
    """Serve Slack until cancelled: HTTP events on `port` (default: the PORT variable, else 3000),
    verified with SLACK_SIGNING_SECRET, or Socket Mode with SLACK_APP_TOKEN."""
    bot = SlackBot(service, settings)
    try:
        if http:
            if not settings.slack_signing_secret:
                raise SystemExit("Slack HTTP mode needs SLACK_SIGNING_SECRET.")
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
                raise SystemExit("Slack Socket Mode needs SLACK_APP_TOKEN.")
            handler = bot.socket_mode(settings.slack_app_token)
            try:
                await handler.start_async()
            finally:
                await handler.close_async()
    finally:
        await bot.close()

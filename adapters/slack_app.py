"""Slack adapter: slack-bolt's AsyncApp translating Slack events into service calls, and answers
into threaded Slack messages.

- A message event becomes a `core.chat.incoming.Incoming` (Slack's mrkdwn decoded, its `<url|label>`
  links read, shared files with the bot token to fetch them), and `decide` says what it asks, by
  the rule every platform shares. Each video to index gets one reply in the message's thread that
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
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any, TypeVar

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler, async_default_handlers
from slack_sdk.web.async_client import AsyncWebClient

from core.chat import present
from core.chat.incoming import (
    CLIP_BUTTON,
    COMMANDS,
    PICTURE_ASKED,
    Action,
    Attachment,
    Decision,
    Incoming,
    Source,
    clip_button,
    clip_pressed,
    decide,
    run_command,
)
from core.config import Settings, SettingsError
from core.errors import APOLOGY, Forbidden, UserFacingError
from core.ingest.cut import Clip
from core.ingest.playlist import Playlist
from core.models import Answer, Progress, Scope, Stage, Summary, Video, fmt_time
from core.service import JobEvent, Service
from core.text.links import has_video_suffix
from core.text.safety import one_line

log = logging.getLogger(__name__)
T = TypeVar("T")

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
STYLE = present.Style(literal=escape, bold="*{}*", code="`{}`", link=lambda label, url: link(url, label))

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
        """Do what `decision` says, every reply in the message's thread."""
        for note in decision.notes(STYLE):
            await self._post(msg.scope.channel, root, note)
        indexed = await asyncio.gather(*(self._index(msg.scope, root, s, msg.author) for s in decision.sources))
        if decision.action in (Action.BOTH, Action.SUMMARY) and decision.sources and not any(indexed):
            return  # each progress message says why its video could not be indexed
        if decision.action == Action.SUMMARY:
            video = next((v for v in indexed if v), None) or decision.argument or None
            await self._post_summary(msg.scope, root, video)
        elif decision.question or decision.picture:
            opened = msg.thread is not None or bool(decision.sources) or bool(decision.notes(STYLE))
            await self._answer(msg.scope, root, decision.question, msg.author, opened, decision.picture)
        elif decision.action == Action.CLIP:  # the moment this thread's answer cites
            await self._post_clip(msg.scope, root, self.service.clip(msg.scope, "", 0, 0, thread=root,
                                                                                user=msg.author))
        elif decision.action in COMMANDS and decision.action != Action.HELP:
            await self._post(msg.scope.channel, root, bounded(await self._command_reply(
                msg.scope, decision.action, decision.argument, msg.author)))

    async def _index(self, scope: Scope, root: str, source: Source, user: str) -> str | None:
        """Queue `source`, follow its job on one progress message; the video's id once it is
        indexed, None when it could not be."""
        name = source.name
        msg = await self._post(scope.channel, root, present.queued(STYLE, name))
        try:
            playlist = await self.service.expand(source.url) if source.headers is None else None
        except UserFacingError as e:
            await self._edit(scope.channel, msg, present.failed(STYLE, name, e.message))
            return None
        if playlist is not None:
            return await self._index_playlist(scope, msg, playlist, user)
        latest: list[Progress] = []
        changed = asyncio.Event()

        async def on_progress(p: Progress) -> None:  # called by the ingest worker: never block it
            latest[:] = [p]
            changed.set()

        try:
            sub = await self.service.submit(scope, source.url, headers=source.headers, requested_by=user,
                                            on_progress=on_progress)
            if sub.already:
                video = await self.service.video(scope, sub.job.video_id)
                await self._edit(scope.channel, msg, present.already(STYLE, video.title if video else name))
                return sub.job.video_id
            waiter = asyncio.ensure_future(self.service.wait(sub.job.id))
            try:
                await self._follow(scope.channel, msg, waiter, latest, changed, name)
            finally:
                waiter.cancel()
            video = waiter.result()
            final = present.progress(STYLE, name, Progress(sub.job.id, video.id, Stage.DONE, 1.0, video.title,
                                                           video.duration))
            indexed: str | None = video.id
        except UserFacingError as e:
            final, indexed = present.failed(STYLE, name, e.message), None
        except Exception:
            log.exception("indexing %s for %s failed", source.url, scope.key)
            final, indexed = present.failed(STYLE, name, APOLOGY), None
        summary = await self._summary_of(scope, indexed) if indexed and self.settings.post_summary else None
        await self._edit(scope.channel, msg, final, summary_blocks(summary, final) if summary else None)
        return indexed

    async def _index_playlist(self, scope: Scope, msg: str, playlist: Playlist, user: str) -> str | None:
        """Each entry of `playlist` queued, the one message `msg` edited as they go (at most once
        per UPDATE_INTERVAL) until every entry has ended; the first entry's video id once indexed."""
        changed = asyncio.Event()
        run = await self.service.submit_playlist(scope, playlist, requested_by=user,
                                                 on_change=lambda _: changed.set())
        waiter = asyncio.ensure_future(run.wait(self.service))
        shown = ""
        try:
            while True:
                text = present.playlist_progress(STYLE, run, SECTION_LIMIT)
                if text != shown:
                    await self._edit(scope.channel, msg, text)
                    shown = text
                if waiter.done():
                    break
                wake = asyncio.ensure_future(changed.wait())
                await asyncio.wait([waiter, wake], return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                changed.clear()
                if not waiter.done():
                    await asyncio.sleep(UPDATE_INTERVAL)
        finally:
            waiter.cancel()
        return run.first_video()

    async def _summary_of(self, scope: Scope, video: str) -> Summary | None:
        """The summary for an "Indexed" message, or None (forgotten meanwhile, or it failed)."""
        try:
            return await self.service.summary(scope, video)
        except Exception:
            log.info("no summary of %s in %s to post", video, scope.key, exc_info=True)
            return None

    async def _post_summary(self, scope: Scope, root: str, video: str | None) -> None:
        """The video's summary and chapters in the thread (or why there are none)."""
        summary = await self._or_why(scope, root, "the summary", self.service.summary(scope, video, thread=root))
        if summary is not None:
            await self._post(scope.channel, root, present.summary_title(STYLE, summary), summary_blocks(summary))

    async def _or_why(self, scope: Scope, root: str, doing: str, work: Awaitable[T]) -> T | None:
        """What `work` returns; or None, once the thread of `root` is told why it failed: a
        `UserFacingError`'s message as it is, anything else logged (as `doing` failing) and
        answered with the apology."""
        try:
            return await work
        except UserFacingError as e:
            await self._post(scope.channel, root, escape(e.message))
        except Exception:
            log.exception("%s in %s failed", doing, scope.key)
            await self._post(scope.channel, root, APOLOGY)
        return None

    async def _follow(self, channel: str, ts: str, waiter: asyncio.Future[Video], latest: list[Progress],
                      changed: asyncio.Event, name: str) -> None:
        """Edit the progress message as stages pass, at most once per UPDATE_INTERVAL, until the
        job ends."""
        shown = ""
        while not waiter.done():
            wake = asyncio.ensure_future(changed.wait())
            both: list[asyncio.Future[Any]] = [waiter, wake]
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            changed.clear()
            if latest and not waiter.done() and latest[0].stage not in (Stage.DONE, Stage.FAILED):
                text = present.progress(STYLE, name, latest[0])
                if text != shown:
                    await self._edit(channel, ts, text)
                    shown = text
                    await asyncio.sleep(UPDATE_INTERVAL)

    async def _answer(self, scope: Scope, root: str, question: str, user: str = "", opened: bool = True,
                      picture: Source | None = None) -> None:
        """Answer in the thread of `root`. A question the service does not admit (rate limits,
        length) opens no thread: when none is `opened` yet, the refusal goes to the asker alone
        (an ephemeral message in the channel), not into a new thread (40 mentions in a few
        seconds opened 40 threads)."""
        try:
            question = self.service.admit(scope, question or PICTURE_ASKED, user)
        except UserFacingError as e:
            if opened or not user:
                await self._post(scope.channel, root, escape(e.message))
            else:
                await self.client.chat_postEphemeral(channel=scope.channel, user=user, text=escape(e.message))
            return
        # the posted picture is never sent back: only the stored frame it shows
        asked = self.service.ask_picture(scope, picture.url, picture.headers or {}, thread=root) if picture \
            else self.service.ask(scope, question, thread=root, user=user, admitted=True)
        answer = await self._or_why(scope, root, "answering", asked)
        if answer is None:
            return
        for m in answer_messages(answer, clip=self.settings.media_keep_gb > 0):
            await self._post(scope.channel, root, m["text"], m["blocks"])
        frame = answer.frame
        if frame is not None:  # the core only returns frames whose file exists
            title = one_line(next((c.title for c in answer.citations if c.video_id == frame.video_id), "video"))
            label = fmt_time(frame.time)
            try:
                await self.client.files_upload_v2(
                    channel=scope.channel, thread_ts=root, file=frame.path,
                    filename=f"frame-{label.replace(':', '-')}.jpg",
                    title=escape(f"{title} at {label}")[:250], alt_txt=escape(f"Frame of {title} at {label}")[:900])
            except Exception:
                log.exception("uploading the frame to %s failed", scope.key)

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
        self._spawn(self._post_clip(scope, str(root), self.service.clip(scope, video, start, end, user=user,
                                                                        cited=True)))

    async def _post_clip(self, scope: Scope, root: str, work: Awaitable[Clip]) -> None:
        """Upload the clip `work` cuts into the thread of `root` (or say why there is none)."""
        clip = await self._or_why(scope, root, "the clip", work)
        if clip is None:
            return
        caption = present.clip_caption(STYLE, clip.title, clip.start, clip.end)
        try:
            await self.client.files_upload_v2(channel=scope.channel, thread_ts=root, file=clip.data,
                                              filename=clip.filename, title=escape(one_line(clip.title))[:250],
                                              initial_comment=caption)
        except Exception:
            log.exception("uploading a clip to %s failed", scope.key)
            await self._post(scope.channel, root, APOLOGY)

    async def _on_job_event(self, event: JobEvent) -> None:
        """Tell the channel how a job ended when no progress message of this process follows it
        (a job queued before a restart)."""
        p, job = event.progress, event.job
        if event.listened or job.scope.platform != "slack" or p.stage not in (Stage.DONE, Stage.FAILED):
            return
        text = present.after_restart(STYLE, job, p)
        summary = await self._summary_of(job.scope, p.video_id) \
            if p.stage == Stage.DONE and self.settings.post_summary else None
        try:
            await self.client.chat_postMessage(channel=job.scope.channel, text=text, unfurl_links=False,
                                               blocks=summary_blocks(summary, text) if summary else None)
        except Exception:
            log.exception("could not tell %s how job %s ended", job.scope.key, job.id)

    async def _post(self, channel: str, thread_ts: str, text: str, blocks: list[dict] | None = None) -> str:
        r = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks,
                                               unfurl_links=False, unfurl_media=False)
        return str(r["ts"])

    async def _edit(self, channel: str, ts: str, text: str, blocks: list[dict] | None = None) -> None:
        await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    # ---- the slash command ----------------------------------------------------------------------
    async def _is_admin(self, user: str) -> bool | None:
        """Whether `user` is a workspace admin or owner (`users.info`); None when Slack would not
        say (the app lacks `users:read`, or the user is unknown), which callers treat as no."""
        if not user:
            return False
        try:
            r = await self.client.users_info(user=user)
        except SlackApiError as e:
            log.warning("users.info for %s failed (does the app have the users:read scope?): %s", user, e)
            return None
        info = r.get("user") or {}
        return bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))

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
            reply = await self._command_reply(scope, action, arg.strip(), user)
        await respond(text=bounded(reply), response_type="ephemeral")

    async def _command_reply(self, scope: Scope, action: Action, arg: str, user: str) -> str:
        """The reply to a command (`/vidrag …` or a mention): a user-facing error's message, or
        the apology."""
        admin: bool | None = False
        try:
            if action == Action.FORGET and arg:
                # The person who posted the video may remove it (the core checks: Service.forget);
                # so may a workspace admin or owner, Slack having no per-channel "manage messages"
                # right (Discord's).
                admin = await self._is_admin(user)
            return await run_command(self.service, scope, action, arg, STYLE, user=user, admin=bool(admin),
                                     admins=ADMINS)
        except Forbidden as e:
            return escape(e.message) + (FORGET_UNCHECKED if admin is None else "")
        except UserFacingError as e:
            return escape(e.message)
        except Exception:
            log.exception("the %s command in %s failed", action, scope.key)
            return APOLOGY


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

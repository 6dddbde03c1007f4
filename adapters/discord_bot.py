"""The Discord adapter: discord.py events in, calls on `core.service.Service`, messages out.

It only translates. A message becomes a `core.chat.incoming.Incoming` and `decide` says what it asks
(the same rule as on every platform); `core.chat.flow` then does it through a `DiscordPort`: each
video to index gets one reply that is edited as the job moves, a question is answered in a thread
opened on the question (or inside the thread it was asked in), and notes and commands are replies.
Slash commands map to `videos`, `ask`, `summary`, `forget` and `jobs`. Discord's own rules live
here and nowhere else: threads, the 2,000-character limit,
the file size limit, deferring interactions within 3 s, and `AllowedMentions.none()` on everything
sent, so text quoted from a video can never ping anyone.

Without the privileged `message_content` intent Discord blanks the text of messages that do not
mention the bot; `run` falls back to that mode by itself, and the bot then indexes links and files
posted with a mention.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import discord
from discord import app_commands

from core.chat import flow, present
from core.chat.incoming import Action, Attachment, Incoming, clip_button, clip_pressed, decide, find_links, run_command
from core.config import Settings
from core.errors import APOLOGY, Forbidden, UserFacingError
from core.ingest.cut import Clip
from core.models import Answer, Scope, Summary, fmt_time
from core.service import JobEvent, Service
from core.text.safety import one_line

log = logging.getLogger(__name__)

LIMIT = 2000  # characters in one Discord message
EMBED_LIMIT = 4096  # characters in one embed's description
NO_PINGS = discord.AllowedMentions.none()
HELP = present.HELP
# Who may remove a video besides the person who posted it (Service.forget words the refusal).
ADMINS = "a member who can manage messages here"
# Discord's markup for the core's wording: bold titles, and a video's own text shown as typed.
STYLE = present.Style(literal=discord.utils.escape_markdown, link=lambda label, url: f"[{label}](<{url}>)")

# Spans a message must never be split inside: masked links, <links> and bare links.
_ATOMIC = re.compile(r"\[[^\]\n]*\]\(<?https?://[^\s)>]+>?\)|<https?://[^\s>]+>|https?://\S+")
_STAMP = re.compile(r"\[(\d{1,2}:\d{2}(?::\d{2})?)\](?!\()")


# ---- pure translation ---------------------------------------------------------------------------
def scope_for(channel: object) -> Scope:
    """The channel's scope: (guild, channel), a thread counting as its parent channel; DMs are
    (dm, channel)."""
    channel_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
    channel_id = channel_id or channel.id  # type: ignore[attr-defined]
    guild = getattr(channel, "guild", None)
    return Scope("discord", str(guild.id) if guild is not None else "dm", str(channel_id))


def render_answer(answer: Answer) -> str:
    """The answer's text with each [m:ss] linked to its moment, and a line naming the sources."""
    links: dict[str, str] = {}
    for c in answer.citations:
        if c.url:
            links.setdefault(c.label, c.url)
    text = _STAMP.sub(lambda m: f"[{m[1]}](<{links[m[1]]}>)" if m[1] in links else m[0], answer.text)
    by_video: dict[str, list[str]] = {}
    for c in answer.citations:
        stamp = f"[{c.label}](<{c.url}>)" if c.url else c.label
        if stamp not in by_video.setdefault(c.title, []):
            by_video[c.title].append(stamp)
    if by_video:
        text += "\n-# Sources: " + " · ".join(f"{title} {', '.join(s)}" for title, s in by_video.items())
    return text


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at a line break or a space, never inside a link."""
    chunks: list[str] = []
    text = text.strip()
    while len(text) > limit:
        spans = [m.span() for m in _ATOMIC.finditer(text, 0, min(len(text), limit * 2))]

        def inside(i: int, spans: list[tuple[int, int]] = spans) -> bool:
            return any(a < i < b for a, b in spans)

        cut = 0
        for sep, floor in (("\n", limit // 2), (" ", 1)):
            i = text.rfind(sep, 0, limit + 1)
            while i >= floor and inside(i):
                i = text.rfind(sep, 0, i)
            if i >= floor:
                cut = i
                break
        if not cut:  # one long word: cut hard, but before a link rather than through it
            cut = next((a for a, b in spans if a < limit < b and a > 0), limit)
        chunks.append(text[:cut].rstrip())
        text = text[cut:].strip()
    if text:
        chunks.append(text)
    return chunks


def summary_embed(summary: Summary) -> discord.Embed:
    """The summary and the chapters (each a link to its second) as one embed: the sentences,
    then as many chapter lines as the description holds, and how many more there are."""
    body = present.summary_body(STYLE, summary)[: EMBED_LIMIT // 2]
    lines = present.chapter_lines(STYLE, summary)
    head = "\n\n**Chapters**\n"
    room = EMBED_LIMIT - len(body) - len(head) - 40
    shown: list[str] = []
    for line in lines:
        if sum(len(x) + 1 for x in shown) + len(line) > room:
            break
        shown.append(line)
    if len(shown) < len(lines):
        shown.append(f"… and {len(lines) - len(shown)} more")
    embed = discord.Embed(title=STYLE.plain(summary.video.title, 250), url=summary.video.url or None,
                          description=body + (head + "\n".join(shown) if shown else ""))
    return embed


def _thread_name(question: str) -> str:
    """The question as a thread's name: one line, neutralized, within Discord's 100 characters."""
    return one_line(question, 95) or "Question"


def frame_file(answer: Answer, limit: int = 10 * 2**20) -> discord.File | None:
    """The answer's frame as a file to attach (a ≤640 px JPEG: tens of kB), if it is still there."""
    frame = answer.frame
    if frame is None or not frame.path:
        return None
    try:
        with open(frame.path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        log.warning("frame %s is gone", frame.path)
        return None
    if len(data) > limit:
        return None
    return discord.File(io.BytesIO(data), filename=f"frame-{fmt_time(frame.time).replace(':', '-')}.jpg")


def clip_view(answer: Answer) -> discord.ui.View:
    """A "Clip" button for the answer's first citation. The press is read by `on_interaction`
    (the view is not kept in memory: any process reads a press)."""
    c = answer.citations[0]
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label=present.CLIP_LABEL, style=discord.ButtonStyle.secondary,
                                    custom_id=clip_button(c.video_id, c.start, c.end)))
    return view


def upload_mb(guild: discord.Guild | None) -> float:
    """What one message may carry here: the server's limit (10 MiB, more on boosted servers), 10 MiB in a DM."""
    return (guild.filesize_limit if guild is not None else 10 * 2**20) / 2**20


async def send_chunks(send: Callable[..., Awaitable[Any]], text: str, file: discord.File | None = None,
                      reference: discord.Message | None = None, view: discord.ui.View | None = None,
                      embed: discord.Embed | None = None) -> Any:
    """Send `text` in ≤2,000-character pieces, the frame (the clip button, the embed) with the
    first, as a reply to `reference` when given; returns the first message."""
    first = None
    for i, chunk in enumerate(split_message(text) or ["…"]):
        kwargs: dict[str, object] = {"allowed_mentions": NO_PINGS}
        if i == 0:
            kwargs.update({k: v for k, v in (("file", file), ("view", view), ("embed", embed)) if v is not None})
            if reference is not None:
                kwargs.update(reference=reference, mention_author=False)
        sent = await send(chunk, **kwargs)
        if i == 0 and view is not None:
            view.stop()  # kept by no one: `on_interaction` reads the press, in whichever process gets it
        first = first or sent
    return first


class DiscordPort:
    """`core.chat.flow.Port` over one Discord conversation: `send` posts there (a channel's or a
    thread's `send`, or an interaction's follow-up), each message a reply to `reference` when
    given (the message being answered); `channel` types while the bot works."""

    style, limit, interval, admins, unsure = STYLE, LIMIT - 100, 0.0, ADMINS, ""

    def __init__(self, bot: VidragBot, send: Callable[..., Awaitable[Any]], thread: str | None = None, *,
                 channel: discord.abc.Messageable | None = None, reference: discord.Message | None = None,
                 guild: discord.Guild | None = None) -> None:
        self.bot, self.send, self.thread = bot, send, thread
        self.channel, self.reference = channel, reference
        self.upload_mb: float | None = upload_mb(guild)
        self.summaries = bot.settings.post_summary

    async def post(self, text: str, summary: Summary | None = None, *, private: bool = False) -> object:
        return await send_chunks(self.send, text, reference=self.reference,
                                 embed=summary_embed(summary) if summary is not None else None)

    async def edit(self, message: object, text: str, summary: Summary | None = None) -> None:
        assert isinstance(message, discord.Message)
        try:
            if summary is not None:
                await message.edit(content=text, embed=summary_embed(summary), allowed_mentions=NO_PINGS)
            else:
                await message.edit(content=text, allowed_mentions=NO_PINGS)
        except discord.HTTPException:
            log.warning("could not edit the progress message %s", message.id, exc_info=True)

    async def answer(self, answer: Answer) -> None:
        view = clip_view(answer) if answer.citations and self.bot.settings.media_keep_gb > 0 else None
        await send_chunks(self.send, render_answer(answer), frame_file(answer), self.reference, view)

    async def upload(self, clip: Clip) -> None:
        await self.send(present.clip_caption(STYLE, clip.title, clip.start, clip.end), allowed_mentions=NO_PINGS,
                        file=discord.File(io.BytesIO(clip.data), filename=clip.filename))

    async def open(self, question: str) -> DiscordPort:
        """A thread opened on the question in a text channel (or, failing that, a reply in the
        channel); the thread asked in; a reply anywhere else (a DM, a voice channel's chat)."""
        if isinstance(self.channel, discord.TextChannel) and self.reference is not None:
            try:
                thread = await self.reference.create_thread(name=_thread_name(question))
            except discord.HTTPException:
                log.warning("could not open a thread in %s; replying in the channel", self.channel.id)
                return self
            return self.within(thread)
        return self.within(self.channel) if isinstance(self.channel, discord.Thread) else self

    def within(self, thread: discord.Thread) -> DiscordPort:
        return DiscordPort(self.bot, thread.send, str(thread.id), channel=thread, guild=thread.guild)

    def busy(self) -> AbstractAsyncContextManager[object]:
        return self.channel.typing() if self.channel is not None else contextlib.nullcontext()

    async def may_forget(self) -> bool:
        """Manage Messages in this channel (a thread's are its parent's; none in a DM)."""
        author, channel = self.reference.author if self.reference is not None else None, self.channel
        if not isinstance(author, discord.Member) or not isinstance(channel, (discord.abc.GuildChannel, discord.Thread)):
            return False
        return channel.permissions_for(author).manage_messages


# ---- the bot ------------------------------------------------------------------------------------
class VidragBot(discord.Client):
    """discord.py client with the service injected (discord.py's advanced_startup shape)."""

    def __init__(self, service: Service, settings: Settings, *, message_content: bool = True,
                 **options: object) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content  # privileged: see the README's "Run on Discord"
        super().__init__(intents=intents, allowed_mentions=NO_PINGS, **options)  # type: ignore[arg-type]
        self.service = service
        self.settings = settings
        self.tree = app_commands.CommandTree(self)
        self._add_commands()
        self._unhook: Callable[[], None] | None = None
        self._work: set[asyncio.Task[Any]] = set()  # messages being acted on (a job followed to its end)

    async def setup_hook(self) -> None:
        await self.tree.sync()
        self._unhook = self.service.on_job_event(self.on_job_event)

    async def close(self) -> None:
        """Leave the gateway and stop hearing the service's jobs (the service may outlive us)."""
        if self._unhook is not None:
            self._unhook()
        for task in list(self._work):
            task.cancel()
        await super().close()

    async def on_job_event(self, event: JobEvent) -> None:
        """Tell the channel how a job ended when no progress message of this process follows it
        (a job queued before a restart)."""
        if not flow.ended(event, "discord"):
            return
        channel = self.get_channel(int(event.job.scope.channel))
        if channel is not None and hasattr(channel, "send"):
            await flow.tell_ended(DiscordPort(self, channel.send), self.service, event)

    async def on_ready(self) -> None:
        log.info("Discord: logged in as %s (message_content intent: %s)", self.user, self.intents.message_content)

    async def resolve_scope(self, channel: object) -> Scope:
        if isinstance(channel, discord.PartialMessageable) and channel.guild_id is not None:
            channel = await self.fetch_channel(channel.id)  # an uncached thread: find its parent
        return scope_for(channel)

    # ---- messages -------------------------------------------------------------------------------
    async def incoming(self, message: discord.Message) -> Incoming | None:
        """The message in the core's words; None for our own messages and other bots'."""
        if message.author.bot or self.user is None:
            return None
        text = re.sub(rf"<@!?{self.user.id}>", " ", message.content)
        return Incoming(
            scope=await self.resolve_scope(message.channel), text=text, author=str(message.author.id),
            mentioned=any(u.id == self.user.id for u in message.mentions), direct=message.guild is None,
            links=tuple(find_links(text)),
            attachments=tuple(Attachment(a.url, a.filename, a.content_type or "") for a in message.attachments),
            thread=str(message.channel.id) if isinstance(message.channel, discord.Thread) else None, raw=message)

    async def on_message(self, message: discord.Message) -> None:
        """Act on the message (`flow.act`), replying to it; the handler lasts until its videos are
        indexed, and `close` cancels it."""
        task = asyncio.current_task()
        if task is not None:
            self._work.add(task)
        try:
            msg = await self.incoming(message)
            if msg is not None:
                port = DiscordPort(self, message.channel.send, str(message.channel.id), channel=message.channel,
                                   reference=message, guild=message.guild)
                await flow.act(port, self.service, msg, await decide(msg))
        except Exception:
            log.exception("handling message %s failed", message.id)
            await message.channel.send(APOLOGY, allowed_mentions=NO_PINGS)
        finally:
            self._work.discard(task)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A "Clip" button pressed under an answer: the moment it names, cut in the channel it was
        pressed in (the button's value is checked as any posted text: `clip_pressed`)."""
        if interaction.type != discord.InteractionType.component:
            return
        data: dict[str, object] = dict(interaction.data or {})
        moment = clip_pressed(data.get("custom_id"))
        if moment is None:
            return
        await interaction.response.defer(thinking=True)
        scope = await self.resolve_scope(interaction.channel)
        video, start, end = moment
        port = DiscordPort(self, interaction.followup.send, guild=interaction.guild)
        await flow.clip(port, self.service.clip(scope, video, start, end, max_mb=port.upload_mb,
                                                user=str(interaction.user.id), cited=True))

    # ---- slash commands -------------------------------------------------------------------------
    def _add_commands(self) -> None:
        tree = self.tree

        @tree.command(name="videos", description="List this channel's videos and their status.")
        async def videos(interaction: discord.Interaction) -> None:
            await self.slash(interaction, self.list_videos)

        @tree.command(name="ask", description="Ask a question about this channel's videos.")
        @app_commands.describe(question="What do you want to know?")
        async def ask(interaction: discord.Interaction, question: str) -> None:
            await interaction.response.defer(thinking=True)
            await self.slash_ask(interaction, question)

        @tree.command(name="forget", description="Remove a video you posted (or any, with Manage Messages).")
        @app_commands.describe(video="The video to remove")
        async def forget(interaction: discord.Interaction, video: str) -> None:
            user = str(interaction.user.id)
            admin = interaction.guild is not None and interaction.permissions.manage_messages
            try:  # refused privately, before the public "thinking…" (the core decides: Service.forget)
                await self.service.may_forget(await self.resolve_scope(interaction.channel), video,
                                              user=user, admin=admin, admins=ADMINS)
            except Forbidden as e:
                await interaction.response.send_message(e.message, ephemeral=True)
                return
            except UserFacingError:
                pass  # no such video: said below, as every slash command's errors are
            await self.slash(interaction, lambda scope: self.forget_video(scope, video, user, admin))

        @forget.autocomplete("video")
        async def forget_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return await self.video_choices(interaction, current)

        @tree.command(name="summary", description="What a video is about: its summary and chapters.")
        @app_commands.describe(video="The video (by default the latest)")
        async def summary(interaction: discord.Interaction, video: str | None = None) -> None:
            await interaction.response.defer(thinking=True)
            scope = await self.resolve_scope(interaction.channel)
            thread = str(interaction.channel_id) if isinstance(interaction.channel, discord.Thread) else None
            await flow.summary(DiscordPort(self, interaction.followup.send, thread), self.service, scope, video or None)

        @summary.autocomplete("video")
        async def summary_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return await self.video_choices(interaction, current)

        @tree.command(name="status", description="Show the videos being indexed in this channel.")
        async def status(interaction: discord.Interaction) -> None:
            await self.slash(interaction, self.job_status)

        @tree.error
        async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            log.error("slash command failed", exc_info=error)
            send = interaction.followup.send if interaction.response.is_done() else interaction.response.send_message
            await send(APOLOGY, ephemeral=True)

    async def video_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """The channel's videos whose title or id holds what was typed, for a command's `video`."""
        scope = await self.resolve_scope(interaction.channel)
        needle = current.strip().lower()
        # a choice's name holds 100 characters: 77 of title, " (", a 20-character id, ")"
        return [app_commands.Choice(name=f"{one_line(v.title, 76)} ({v.id})", value=v.id)
                for v in await self.service.videos(scope) if needle in f"{v.title} {v.id}".lower()][:25]

    async def slash(self, interaction: discord.Interaction, work: Callable[[Scope], Awaitable[str]]) -> None:
        """Defer first (Discord allows 3 s), then post the result or the user-facing error."""
        await interaction.response.defer(thinking=True)
        scope = await self.resolve_scope(interaction.channel)
        try:
            text = await work(scope)
        except UserFacingError as e:
            text = e.message
        await send_chunks(interaction.followup.send, text)

    async def slash_ask(self, interaction: discord.Interaction, question: str) -> None:
        """Like a mention: the question is echoed (neutralized, as typed), a thread opens on it once
        it is admitted, and the answer goes there; a refused question gets the refusal alone."""
        channel = interaction.channel
        scope = await self.resolve_scope(channel)
        user = str(interaction.user.id)
        try:
            question = self.service.admit(scope, question, user)
        except UserFacingError as e:
            await interaction.followup.send(e.message, allowed_mentions=NO_PINGS)
            return
        port = DiscordPort(self, interaction.followup.send, str(interaction.channel_id), guild=interaction.guild)
        if isinstance(channel, discord.TextChannel):
            echo = await interaction.followup.send(f"**Question:** {STYLE.plain(question, LIMIT - 20)}", wait=True,
                                                   allowed_mentions=NO_PINGS)
            port = port.within(await channel.create_thread(name=_thread_name(question), message=echo))
        await flow.respond(port, self.service, scope, question, user)

    async def list_videos(self, scope: Scope) -> str:
        return await run_command(self.service, scope, Action.VIDEOS, "", STYLE)

    async def forget_video(self, scope: Scope, video: str, user: str, admin: bool) -> str:
        return await run_command(self.service, scope, Action.FORGET, video, STYLE, user=user, admin=admin,
                                 admins=ADMINS)

    async def job_status(self, scope: Scope) -> str:
        return await run_command(self.service, scope, Action.STATUS, "", STYLE)


async def run(service: Service, settings: Settings) -> None:
    """Run the bot until it is closed. If the portal has not enabled the privileged
    `message_content` intent, reconnect without it (links are then read from mentions only)."""
    for message_content in (True, False):
        bot = VidragBot(service, settings, message_content=message_content)
        try:
            async with bot:
                await bot.start(settings.discord_token)
            return
        except discord.PrivilegedIntentsRequired:
            if not message_content:
                raise
            log.warning("The Message Content intent is not enabled for this bot in the Discord developer "
                        "portal; continuing without it: only messages that mention the bot are read.")

"""The Discord adapter: discord.py events in, calls on `core.service.Service`, messages out.

It only translates. A message becomes a `core.chat.incoming.Incoming` and `decide` says what it asks
(the same rule as on every platform); each video to index becomes `submit` (one reply that is
edited as the job moves), a question becomes `ask`, answered in a thread opened on the question
(or inside the thread it was asked in), and notes and commands are replies. Slash commands map to
`videos`, `ask`, `summary`, `forget` and `jobs`. Discord's own rules live here and nowhere else: threads, the 2,000-character limit,
the file size limit, deferring interactions within 3 s, and `AllowedMentions.none()` on everything
sent, so text quoted from a video can never ping anyone.

Without the privileged `message_content` intent Discord blanks the text of messages that do not
mention the bot; `run` falls back to that mode by itself, and the bot then indexes links and files
posted with a mention.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from core.chat import present
from core.chat.incoming import (
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
    find_links,
    run_command,
)
from core.config import Settings
from core.errors import APOLOGY, Forbidden, UserFacingError
from core.ingest.cut import Clip
from core.ingest.playlist import Playlist
from core.jobs.playlists import PlaylistRun, State
from core.models import Answer, Job, Progress, Scope, Stage, Summary, fmt_time
from core.service import JobEvent, Service, Submitted
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


class ProgressMessage:
    """The one message that shows a job's progress. The service awaits the callback inside its
    worker, so it only records the latest state; edits run in a task and are coalesced, and a slow
    or rate-limited Discord never slows the ingest. With `summarize` (POST_SUMMARY), the "Indexed"
    edit waits for the video's chapters and summary and carries them as an embed."""

    def __init__(self, message: discord.Message, name: str,
                 summarize: Callable[[str], Awaitable[Summary]] | None = None) -> None:
        self.message = message
        self.name = name
        self.summarize = summarize
        self.latest: tuple[str, discord.Embed | None] = (message.content, None)
        self.shown: tuple[str, discord.Embed | None] = self.latest
        self._task: asyncio.Task[None] | None = None
        self._summary: asyncio.Task[None] | None = None

    async def __call__(self, p: Progress) -> None:
        text = present.progress(STYLE, self.name, p)
        if p.stage == Stage.DONE and self.summarize is not None:
            self._summary = asyncio.create_task(self._with_summary(text, p.video_id))
            return
        self.set(text)

    async def _with_summary(self, text: str, video_id: str) -> None:
        embed = None
        try:
            assert self.summarize is not None
            embed = summary_embed(await self.summarize(video_id))
        except UserFacingError:
            pass  # forgotten meanwhile: the text alone
        except Exception:
            log.exception("the summary of %s for the progress message failed", video_id)
        self.set(text, embed)

    def set(self, text: str, embed: discord.Embed | None = None) -> None:
        self.latest = (text, embed)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self.shown != self.latest:
            text, embed = latest = self.latest
            try:
                if embed is not None:
                    await self.message.edit(content=text, embed=embed, allowed_mentions=NO_PINGS)
                else:
                    await self.message.edit(content=text, allowed_mentions=NO_PINGS)
            except discord.HTTPException:
                log.warning("could not edit the progress message %s", self.message.id, exc_info=True)
                return
            self.shown = latest


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
        self._playlists: set[asyncio.Task[None]] = set()  # runs followed to their end

    async def setup_hook(self) -> None:
        await self.tree.sync()
        self._unhook = self.service.on_job_event(self.on_job_event)

    async def close(self) -> None:
        """Leave the gateway and stop hearing the service's jobs (the service may outlive us)."""
        if self._unhook is not None:
            self._unhook()
        for task in list(self._playlists):
            task.cancel()
        await super().close()

    async def on_job_event(self, event: JobEvent) -> None:
        """Tell the channel how a job ended when no progress message of this process follows it
        (a job queued before a restart)."""
        p = event.progress
        if event.listened or event.job.scope.platform != "discord" or p.stage not in (Stage.DONE, Stage.FAILED):
            return
        channel = self.get_channel(int(event.job.scope.channel))
        if channel is None or not hasattr(channel, "send"):
            return
        text = present.after_restart(STYLE, event.job, p)
        embed = None
        if p.stage == Stage.DONE and self.settings.post_summary:
            try:
                embed = summary_embed(await self.service.summary(event.job.scope, p.video_id))
            except Exception:  # forgotten meanwhile, or the summary failed: the text alone
                log.info("no summary for %s after a restart", p.video_id, exc_info=True)
        try:
            if embed is not None:
                await channel.send(text, embed=embed, allowed_mentions=NO_PINGS)
            else:
                await channel.send(text, allowed_mentions=NO_PINGS)
        except discord.HTTPException:
            log.warning("could not tell %s how job %s ended", event.job.scope.key, event.job.id)

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
        try:
            msg = await self.incoming(message)
            if msg is None:
                return
            decision = await decide(msg)
            for note in decision.notes(STYLE):
                await message.reply(note, mention_author=False, allowed_mentions=NO_PINGS)
            jobs = [await self.index(message, msg.scope, s) for s in decision.sources]
            if decision.action in (Action.BOTH, Action.SUMMARY) and jobs and not await self.indexed(jobs):
                return  # each progress message says why its video could not be indexed
            if decision.action == Action.SUMMARY:
                first = next((j.job.video_id for j in jobs if j is not None), None)
                thread = str(message.channel.id) if isinstance(message.channel, discord.Thread) else None
                await self.send_summary(message.reply, msg.scope, first or decision.argument or None, thread,
                                        mention_author=False)
            elif decision.question or decision.picture:
                await self.answer_message(message, decision.question, decision.picture)
            elif decision.action == Action.CLIP:  # the moment this thread's answer cites
                async with message.channel.typing():
                    await self.send_clip(message.channel.send, self.service.clip(
                        msg.scope, "", 0, 0, thread=str(message.channel.id), max_mb=self.upload_mb(message.guild),
                        user=str(message.author.id)))
            elif decision.action in COMMANDS and decision.action != Action.HELP:
                await self.send_chunks(message.reply, await self.command(message, msg.scope, decision), None)
        except Exception:
            log.exception("handling message %s failed", message.id)
            await message.channel.send(APOLOGY, allowed_mentions=NO_PINGS)

    async def index(self, message: discord.Message, scope: Scope, source: Source) -> Submitted | None:
        """Acknowledge at once with the message that will show progress, then queue the job; a
        link that holds a playlist queues each entry and that one message follows them all."""
        name = source.name
        reply = await message.reply(present.queued(STYLE, name), mention_author=False, allowed_mentions=NO_PINGS)
        progress = ProgressMessage(reply, name, (lambda video: self.service.summary(scope, video))
                                   if self.settings.post_summary else None)
        try:
            playlist = await self.service.expand(source.url) if source.headers is None else None
        except UserFacingError as e:
            progress.set(present.failed(STYLE, name, e.message))
            return None
        if playlist is not None:
            return await self.index_playlist(progress, scope, playlist, str(message.author.id))
        try:
            sub = await self.service.submit(scope, source.url, headers=source.headers,
                                            requested_by=str(message.author.id), on_progress=progress)
        except UserFacingError as e:
            progress.set(present.failed(STYLE, name, e.message))
            return None
        if sub.already:
            video = await self.service.video(scope, sub.job.video_id)
            progress.set(present.already(STYLE, video.title if video else name))
        return sub

    async def index_playlist(self, progress: ProgressMessage, scope: Scope, playlist: Playlist,
                             user: str) -> Submitted | None:
        """Each entry of `playlist` queued, the one progress message edited as they go ("7 of 25
        indexed · 1 failed: <title> — <reason>"); returns the first entry's job (what a question
        asked with the link waits for)."""

        def show(run: PlaylistRun) -> None:
            progress.set(present.playlist_progress(STYLE, run, LIMIT - 100))

        run = await self.service.submit_playlist(scope, playlist, requested_by=user, on_change=show)
        follow = asyncio.create_task(run.wait(self.service))
        self._playlists.add(follow)
        follow.add_done_callback(self._playlists.discard)
        first = next((i for i in run.items if i.job_id), None)
        if first is None:
            return None
        already = first.state == State.ALREADY
        return Submitted(Job(first.job_id, first.video_id, scope, first.entry.url,
                             Stage.DONE if already else Stage.QUEUED), already=already)

    async def indexed(self, jobs: list[Submitted | None]) -> bool:
        """Wait for the jobs of one message; whether at least one of its videos is now indexed."""
        ok = False
        for sub in jobs:
            if sub is not None and not sub.already:
                try:
                    await self.service.wait(sub.job.id)
                except UserFacingError:
                    continue
            ok = ok or sub is not None
        return ok

    async def send_summary(self, send: Callable[..., Awaitable[object]], scope: Scope, video: str | None,
                           thread: str | None, **kwargs: object) -> None:
        """The video's summary and chapters as an embed under its title (or why there are none)."""
        try:
            summary = await self.service.summary(scope, video, thread=thread)
        except UserFacingError as e:
            await self.send_chunks(send, e.message, None)
            return
        except Exception:
            log.exception("the summary in %s failed", scope.key)
            await self.send_chunks(send, APOLOGY, None)
            return
        await send(present.summary_title(STYLE, summary), embed=summary_embed(summary), allowed_mentions=NO_PINGS,
                   **kwargs)

    async def command(self, message: discord.Message, scope: Scope, decision: Decision) -> str:
        """A command given by mention. `forget` is the core's to allow (`Service.forget`): to the
        member who posted the video, or to one with Manage Messages in this channel (none in a DM)."""
        admin = isinstance(message.author, discord.Member) \
            and message.channel.permissions_for(message.author).manage_messages
        try:
            return await run_command(self.service, scope, decision.action, decision.argument, STYLE,
                                     user=str(message.author.id), admin=bool(admin), admins=ADMINS)
        except UserFacingError as e:
            return e.message

    async def answer_message(self, message: discord.Message, question: str, picture: Source | None = None) -> None:
        """Answer in the thread the question was asked in, or in a new thread on the question.
        The thread is opened only once the question is admitted (rate limits, length): a refused
        one gets one short reply in place (40 mentions in a few seconds opened 40 threads)."""
        scope = await self.resolve_scope(message.channel)
        try:
            question = self.service.admit(scope, question or PICTURE_ASKED, str(message.author.id))
        except UserFacingError as e:
            await message.reply(e.message, mention_author=False, allowed_mentions=NO_PINGS)
            return
        where: discord.abc.Messageable = message.channel
        reference: discord.Message | None = None
        if isinstance(message.channel, discord.TextChannel):
            try:
                where = await message.create_thread(name=_thread_name(question))
            except discord.HTTPException:
                log.warning("could not open a thread in %s; replying in the channel", message.channel.id)
                reference = message
        elif not isinstance(message.channel, discord.Thread):
            reference = message  # a DM, a voice channel's chat: no threads there
        key = str(where.id)  # type: ignore[attr-defined]
        async with where.typing():
            text, file, view = await self.ask(scope, question, key, str(message.author.id), picture)
        await self.send_chunks(where.send, text, file, reference=reference, view=view)

    async def ask(self, scope: Scope, question: str, thread: str, user: str,
                  picture: Source | None = None) -> tuple[str, discord.File | None, discord.ui.View | None]:
        """The answer to an admitted question (or to the `picture` posted) as text, the frame as
        a file and the "Clip" button of its first citation (or the user-facing error as text)."""
        try:
            if picture is not None:  # the posted picture is never sent back: only the stored frame
                answer = await self.service.ask_picture(scope, picture.url, picture.headers or {}, thread=thread)
            else:
                answer = await self.service.ask(scope, question, thread=thread, user=user, admitted=True)
        except UserFacingError as e:
            return e.message, None, None
        except Exception:
            log.exception("answering %r in %s failed", question, scope.key)
            return APOLOGY, None, None
        return render_answer(answer), self.frame_file(answer), self.clip_view(answer)

    def clip_view(self, answer: Answer) -> discord.ui.View | None:
        """A "Clip" button for the answer's first citation, when clips can be cut here. The press
        is read by `on_interaction` (the view is not kept in memory: any process reads a press)."""
        if not answer.citations or self.settings.media_keep_gb <= 0:
            return None
        c = answer.citations[0]
        view = discord.ui.View(timeout=None)
        view.add_item(discord.ui.Button(label=present.CLIP_LABEL, style=discord.ButtonStyle.secondary,
                                        custom_id=clip_button(c.video_id, c.start, c.end)))
        return view

    def upload_mb(self, guild: discord.Guild | None) -> float:
        """What one message may carry here: the server's limit (10 MiB, more on boosted servers),
        10 MiB in a DM."""
        return (guild.filesize_limit if guild is not None else 10 * 2**20) / 2**20

    async def send_clip(self, send: Callable[..., Awaitable[object]], work: Awaitable[Clip]) -> None:
        """Post the clip `work` cuts, with a line saying what it shows (or the sentence why not)."""
        try:
            clip = await work
        except UserFacingError as e:
            await send(e.message, allowed_mentions=NO_PINGS)
            return
        except Exception:
            log.exception("a clip failed")
            await send(APOLOGY, allowed_mentions=NO_PINGS)
            return
        await send(present.clip_caption(STYLE, clip.title, clip.start, clip.end), allowed_mentions=NO_PINGS,
                   file=discord.File(io.BytesIO(clip.data), filename=clip.filename))

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
        await self.send_clip(interaction.followup.send, self.service.clip(
            scope, video, start, end, max_mb=self.upload_mb(interaction.guild), user=str(interaction.user.id),
            cited=True))

    def frame_file(self, answer: Answer, limit: int = 10 * 2**20) -> discord.File | None:
        frame = answer.frame
        if frame is None or not frame.path:
            return None
        try:
            with open(frame.path, "rb") as fh:  # a ≤640 px JPEG: tens of kB
                data = fh.read(limit + 1)
        except OSError:
            log.warning("frame %s is gone", frame.path)
            return None
        if len(data) > limit:
            return None
        return discord.File(io.BytesIO(data), filename=f"frame-{fmt_time(frame.time).replace(':', '-')}.jpg")

    async def send_chunks(self, send: Callable[..., Awaitable[object]], text: str, file: discord.File | None,
                          reference: discord.Message | None = None, view: discord.ui.View | None = None) -> object:
        """Send `text` in ≤2,000-character pieces, the frame (and the clip button) with the first;
        returns the first message."""
        first = None
        for i, chunk in enumerate(split_message(text) or ["…"]):
            kwargs: dict[str, object] = {"allowed_mentions": NO_PINGS}
            if i == 0 and file is not None:
                kwargs["file"] = file
            if i == 0 and view is not None:
                kwargs["view"] = view
            if i == 0 and reference is not None:
                kwargs["reference"] = reference
                kwargs["mention_author"] = False
            sent = await send(chunk, **kwargs)
            if i == 0 and view is not None:
                view.stop()  # kept by no one: `on_interaction` reads the press, in whichever process gets it
            first = first or sent
        return first

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
            await self.send_summary(interaction.followup.send, scope, video or None, thread)

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
        await self.send_chunks(interaction.followup.send, text, None)

    async def slash_ask(self, interaction: discord.Interaction, question: str) -> None:
        """Like a mention: the question is echoed (neutralized, as typed), a thread opens on it once
        it is admitted, and the answer goes there; a refused question gets the refusal alone."""
        channel = interaction.channel
        scope = await self.resolve_scope(channel)
        try:
            question = self.service.admit(scope, question, str(interaction.user.id))
        except UserFacingError as e:
            await interaction.followup.send(e.message, allowed_mentions=NO_PINGS)
            return
        if isinstance(channel, discord.TextChannel):
            echo = await interaction.followup.send(f"**Question:** {STYLE.plain(question, LIMIT - 20)}", wait=True,
                                                   allowed_mentions=NO_PINGS)
            thread = await channel.create_thread(name=_thread_name(question), message=echo)
            async with thread.typing():
                text, file, view = await self.ask(scope, question, str(thread.id), str(interaction.user.id))
            await self.send_chunks(thread.send, text, file, view=view)
            return
        text, file, view = await self.ask(scope, question, str(interaction.channel_id), str(interaction.user.id))
        await self.send_chunks(interaction.followup.send, text, file, view=view)

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

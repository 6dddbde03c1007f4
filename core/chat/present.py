"""What the bot says about jobs and videos, worded once for every platform.

Each adapter used to keep its own copy of the progress, status and list texts, and the copies
drifted (Slack said "attempt 2" on a first try; Discord posted titles raw). Here every text about a
job or a video is built from core values, and every string that came from a video (title, file
name, a link's name) passes `safety.one_line` first: one line, at most `TITLE_LIMIT` characters,
no live mention, no link. A platform only says how it marks text up (`Style`): how to make a
string literal in its markup and how to make it bold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from core.errors import APOLOGY
from core.models import Job, Progress, Stage, Summary, Video, VideoStatus, fmt_time
from core.text.safety import TITLE_LIMIT, one_line

if TYPE_CHECKING:
    from core.jobs.playlists import Item, PlaylistRun

HELP = ("Post a video link or upload a video in this channel and I'll index it. Then mention me with a "
        "question and I'll answer in a thread, citing the moments. Mention me with `videos` or `status` "
        "to see what I have, or `forget` and a video's id to remove it. In an answer's thread, `clip` posts "
        "the moment it cites as a video.")
FORGET_WHICH = "Which video? Mention me with `forget` and the video's id or title (`videos` lists them)."
NO_VIDEOS = "No videos in this channel yet. Post a video link or upload a video."
NOTHING_INDEXING = "Nothing is being indexed in this channel."
ASK_ABOUT_IT = "Mention me with a question about it."
ASK_ABOUT_PART = "You can ask about that part already."
STAGE_WORDS = {Stage.QUEUED: "queued", Stage.FETCH: "downloading", Stage.PROBE: "probing",
               Stage.FRAMES: "extracting frames", Stage.TRANSCRIBE: "transcribing", Stage.OCR: "reading the screen",
               Stage.EMBED: "indexing", Stage.DONE: "ready", Stage.FAILED: "failed"}
_ICON = {VideoStatus.READY: "✅", VideoStatus.QUEUED: "⏳", VideoStatus.INDEXING: "⏳", VideoStatus.FAILED: "❌"}


def _same(text: str) -> str:
    return text


def _bracketed(label: str, url: str) -> str:
    return f"[{label}]"


@dataclass(frozen=True)
class Style:
    """How one platform marks text up. `literal` makes any text show as typed (Discord escapes
    its markdown, Slack its `& < >`); `own` makes the bot's own sentence safe without undoing its
    marks (a user-facing error's message: Slack escapes `& < >`, Discord needs nothing); `bold`
    and `code` are format strings."""

    literal: Callable[[str], str] = _same
    own: Callable[[str], str] = _same
    bold: str = "**{}**"
    code: str = "`{}`"
    link: Callable[[str, str], str] = _bracketed  # (label, url) -> a link in this markup

    def video(self, text: str, limit: int = TITLE_LIMIT) -> str:
        """A string from a video (title, file name), bounded, neutralized and shown in bold."""
        return self.bold.format(self.literal(one_line(text, limit)))

    def plain(self, text: str, limit: int = 1000) -> str:
        """Any other text that is not the bot's own (an error's message), made literal."""
        return self.literal(one_line(text, limit))


PLAIN = Style(bold="{}", code="{}")  # a terminal


def source_name(source: str) -> str:
    """What to call a video before its title is known: the link's file name (or its host and
    path when the path names no file), a local file's name."""
    parts = urlsplit(source)
    name = unquote(PurePosixPath(parts.path).name)
    if parts.netloc and "." not in name:
        return unquote(parts.netloc + parts.path).rstrip("/") or source
    return name or source


def queued(style: Style, name: str) -> str:
    return f"⏳ Queued {style.video(name)}…"


def progress(style: Style, name: str, p: Progress) -> str:
    """The one message that follows a job, at any stage; `name` is used until a title is known."""
    if p.stage == Stage.DONE:
        return f"✅ Indexed {style.video(p.title or name)} ({fmt_time(p.duration)}). {ASK_ABOUT_IT}"
    if p.stage == Stage.FAILED:
        return f"❌ I couldn't index {style.video(name)}: {style.plain(p.message or APOLOGY)}"
    if p.stage == Stage.QUEUED and p.message:  # back in the queue, and why (a full disk)
        return f"⏳ {style.video(p.title or name)}: {style.plain(p.message)}"
    length = f" ({fmt_time(p.duration)})" if p.duration else ""
    if 0 < p.indexed_to < p.duration:  # window by window: the part done is searchable already
        return (f"⏳ {STAGE_WORDS[p.stage].capitalize()}… {style.video(p.title or name)}: indexed up to "
                f"{fmt_time(p.indexed_to)} of {fmt_time(p.duration)}. {ASK_ABOUT_PART}")
    return f"⏳ {STAGE_WORDS[p.stage].capitalize()}… {style.video(p.title or name)}{length}"


def failed(style: Style, name: str, message: str) -> str:
    return f"❌ I couldn't index {style.video(name)}: {style.plain(message)}"


def already(style: Style, title: str) -> str:
    return f"✅ Already indexed here: {style.video(title)}. {ASK_ABOUT_IT}"


def after_restart(style: Style, job: Job, p: Progress) -> str:
    """How a job queued before a restart ended (no progress message of this process follows it)."""
    name = source_name(job.source)
    if p.stage == Stage.DONE:
        return f"✅ Indexed {style.video(p.title or name)} after a restart. {ASK_ABOUT_IT}"
    return failed(style, name, p.message or APOLOGY)


def not_videos(style: Style, names: Sequence[str]) -> str:
    shown = ", ".join(style.video(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
    return f"I can only index video files, and {shown} doesn't look like one."


def video_list(style: Style, videos: Sequence[Video], total: int | None = None) -> str:
    """One line per video; `total` (when more than are listed) adds a line saying how many more."""
    if not videos:
        return NO_VIDEOS
    lines = [f"{_ICON.get(v.status, '•')} {style.video(v.title)} ({fmt_time(v.duration)}) — "
             f"{v.status.value}{_so_far(v)} · {style.code.format(v.id)}" for v in videos]
    if total is not None and total > len(videos):
        lines.append(f"…and {total - len(videos)} more.")
    return "\n".join(lines)


def job_status(style: Style, jobs: Sequence[Job], videos: Sequence[Video], ready: int | None = None) -> str:
    """What is being indexed: `jobs`, titled from `videos`, and the count of `ready` videos
    (counted in `videos` when not given). `attempts` counts the attempt under way (the lease
    counted it), so a first try shows no number."""
    ready = sum(1 for v in videos if v.status == VideoStatus.READY) if ready is None else ready
    lines = [f"{ready} video{'s' if ready != 1 else ''} ready in this channel."]
    titles = {v.id: v.title for v in videos}
    of = {v.id: v for v in videos}
    lines += [f"⏳ {style.video(titles.get(j.video_id) or source_name(j.source))} — {STAGE_WORDS[j.stage]}"
              + (_so_far(of[j.video_id]) if j.video_id in of else "")
              + (f" (attempt {j.attempts})" if j.attempts > 1 else "") for j in jobs]
    if not jobs:
        lines.append(NOTHING_INDEXING)
    return "\n".join(lines)


def _so_far(video: Video) -> str:
    """", indexed up to 34:10 of 1:30:00" for a video whose first windows are searchable, else ""."""
    if video.status == VideoStatus.READY or video.indexed_to <= 0:
        return ""
    return f", indexed up to {fmt_time(video.indexed_to)} of {fmt_time(video.duration)}"


def forgot(style: Style, video: Video) -> str:
    return f"🗑️ Removed {style.video(video.title)} from this channel: its transcript, frames and vectors are deleted."


CLIP_LABEL = "🎬 Clip"  # the button under an answer


def clip_caption(style: Style, title: str, start: float, end: float) -> str:
    """The line posted with a clip."""
    return f"🎬 {fmt_time(start)}–{fmt_time(end)} of {style.video(title)}"


LISTED = 50  # videos one `videos` reply lists (a channel may have thousands; the rest are counted)
MAX_SOURCES = 5  # videos indexed from one message; a message with more links gets one reply that says so


def too_many(style: Style, dropped: int) -> str:
    return (f"I index at most {MAX_SOURCES} videos from one message, so I skipped {dropped} "
            f"link{'s' if dropped != 1 else ''}; post {'them' if dropped != 1 else 'it'} again in another message.")


# ---- chapters and summary -----------------------------------------------------------------------
CHAPTER_TITLE_LIMIT = 80
SUMMARIZING = "📋 Here is what it is about:"
_STAMP = re.compile(r"\[(\d{1,2}:\d{2}(?::\d{2})?)\]")


def summary_title(style: Style, summary: Summary) -> str:
    return f"📋 {style.video(summary.video.title)} ({fmt_time(summary.video.duration)})"


def summary_body(style: Style, summary: Summary) -> str:
    """The summary's sentences (text from the video: made literal), each [m:ss] a link to its
    moment where the video has a link."""
    urls = {c.label: c.url for c in summary.citations if c.url}
    out, at = [], 0
    for m in _STAMP.finditer(summary.text):
        out.append(style.literal(summary.text[at:m.start()]))
        out.append(style.link(m[1], urls[m[1]]) if m[1] in urls else m[0])
        at = m.end()
    out.append(style.literal(summary.text[at:]))
    return "".join(out).strip()


def chapter_lines(style: Style, summary: Summary) -> list[str]:
    """One line per chapter: its start (a link to that second where the video has a link) and its
    title (text from the video: bounded, neutralized, literal)."""
    return [f"{style.link(fmt_time(c.start), c.url) if c.url else fmt_time(c.start)} "
            f"{style.plain(c.title, CHAPTER_TITLE_LIMIT)}" for c in summary.chapters]


def summary_text(style: Style, summary: Summary) -> str:
    """The whole summary as one text: title, sentences, chapters."""
    parts = [summary_title(style, summary), summary_body(style, summary)]
    lines = chapter_lines(style, summary)
    if lines:
        parts.append(style.bold.format("Chapters") + "\n" + "\n".join(lines))
    return "\n\n".join(p for p in parts if p)



# ---- playlists ----------------------------------------------------------------------------------
SHOWN_PER_KIND = 8  # entries named per line kind (failed, refused, …); the rest are counted


def reading_list(style: Style, name: str) -> str:
    return f"⏳ Reading the list of videos at {style.video(name)}…"


def entry_name(item: Item) -> str:
    """What to call a playlist's entry: its title, else its address's file name."""
    return item.name or source_name(item.entry.url)


def playlist_counts(run: PlaylistRun) -> str:
    """"7 of 25 indexed · 1 failed · 2 not queued" (entries already indexed here count as indexed)."""
    from core.jobs.playlists import State

    text = f"{run.count(State.DONE, State.ALREADY)} of {len(run.items)} indexed"
    if failed := run.count(State.FAILED):
        text += f" · {failed} failed"
    if refused := run.count(State.REFUSED):
        text += f" · {refused} not queued"
    return text


def playlist_progress(style: Style, run: PlaylistRun, limit: int = 1900) -> str:
    """The one message of a posted playlist, at any point: "7 of 25 indexed · 1 failed" and then
    each entry that failed, was refused, was already here, or was skipped past the cap, with
    its reason, at most `limit` characters (the entries' titles are hostile text: bounded and
    made literal by `style.video`)."""
    from core.jobs.playlists import State

    p = run.playlist
    taken = len(run.items)
    failed = run.with_state(State.FAILED)
    refused = run.with_state(State.REFUSED)
    icon = "⏳" if not run.finished else "✅" if not failed and not refused else "⚠️"
    lines = [f"{icon} {style.video(p.title or source_name(p.source))}: {playlist_counts(run)}"]

    def named(items: list[Item], what: str, icon: str, with_reason: bool = True) -> None:
        for item in items[:SHOWN_PER_KIND]:
            reason = f" — {style.plain(item.message, 200)}" if with_reason and item.message else ""
            lines.append(f"{icon} {what}{style.video(entry_name(item), 80)}{reason}")
        if len(items) > SHOWN_PER_KIND:
            lines.append(f"{icon} …and {len(items) - SHOWN_PER_KIND} more")

    named(failed, "failed: ", "❌")
    named(refused, "not queued: ", "⛔")
    already = run.with_state(State.ALREADY)
    named(already, "already indexed here: ", "☑️", False)
    named(run.with_state(State.WAITING), "already queued here: ", "⏳", False)
    if p.skipped or p.more:
        names = ", ".join(style.video(e.title or source_name(e.url), 60) for e in p.skipped)
        more = (f" and {p.more} more" if p.more > 0 else " and more" if p.more < 0 else "")
        lines.append(f"⏭️ skipped (I queue at most {taken} videos of a list): {names}{more}")
    text = "\n".join(lines)
    if len(text) > limit:
        text = text[: text.rfind("\n", 0, limit - 2)] + "\n…"
    return text

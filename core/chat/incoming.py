"""One chat message in the core's words (`Incoming`), and the one rule that says what it asks of
the bot (`decide`).

Each adapter used to read messages by its own rules, and the rules drifted: Slack indexed any
link beside a mention only if the rest of the message was "index" or "add", Discord any link at
all; Discord explained itself to a bare mention and Slack answered "ask me a question"; only
Discord said that a PDF is not a video or that it skipped links past the fifth. As errbot and
opsdroid do, an adapter now only translates: its platform's event becomes an `Incoming` (the
platform's markup decoded, the bot's own mention taken out of the text, the raw payload riding
along), `decide` says what to do, and the adapter does it in its own idiom (Discord replies and
threads, Slack `thread_ts`), worded by `core.chat.present`.

The rule, in full:

- A message that does not address the bot (no mention, not a direct message) is only read for
  videos: video files, and links that look like videos (a video file's suffix, or a page a site
  extractor of yt-dlp claims). Anything else in it is someone else's conversation.
- A message that addresses the bot gets every link and every video file indexed (the person
  asked), a note naming the files that are not videos, and then:
  - with something to index, text ending in "?" is a question about it, answered once the videos
    are indexed (`BOTH`); other text is a caption ("here's yesterday's talk");
  - with nothing to index, a command word (`help`, `videos` or `list`, `status`, `forget <video>`)
    is that command, other text is a question, and a bare mention gets the help text.
- At most `present.MAX_SOURCES` videos are taken from one message; the rest are named in one
  note, and a wall of unaddressed links costs a bounded number of checks.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from core.chat import present
from core.ingest.fetch import has_video_suffix, is_video_link
from core.models import Scope

if TYPE_CHECKING:
    from core.service import Service

_URL = re.compile(r"https?://[^\s<>]+")
_TRAILING = ".,;:!?)]'\""
_COMMAND = re.compile(r"(help|videos|list|status|forget)\b[\s:]*(.*)", re.IGNORECASE | re.DOTALL)
CHECKED_LINKS = 4 * present.MAX_SOURCES  # links of one unaddressed message checked at most


def find_links(text: str) -> list[str]:
    """The http(s) links of plain text (Discord, the console), without the punctuation that
    ends the sentence around them."""
    return [u.rstrip(_TRAILING) for u in _URL.findall(text)]


@dataclass(frozen=True)
class Attachment:
    """A file posted with the message, at the platform's URL; `headers` are what that URL needs
    (the bot's token on Slack, nothing on Discord) and stay in memory only."""

    url: str
    name: str
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_video(self) -> bool:
        return self.content_type.startswith("video/") or has_video_suffix(self.name)


@dataclass(frozen=True)
class Incoming:
    """What a platform's message says, in no platform's terms.

    `text` is plain text (the platform's markup decoded, links written as their URLs) without the
    bot's mention; `links` are the links in it, in order. `mentioned` is an explicit mention of the
    bot, `direct` a one-to-one conversation (which addresses the bot without one). `thread` is the
    conversation the message was posted in, if any (a Discord thread, a Slack `thread_ts`);
    `raw` is the platform's own payload, for the adapter that made this."""

    scope: Scope
    text: str
    author: str = ""
    mentioned: bool = False
    direct: bool = False
    links: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    thread: str | None = None
    raw: object = None

    @property
    def addressed(self) -> bool:
        return self.mentioned or self.direct


class Action(StrEnum):
    NOTHING = "nothing"  # not for the bot
    INDEX = "index"  # index `sources`
    ASK = "ask"  # answer `question`
    BOTH = "both"  # index `sources`, then answer `question` about them
    REFUSE = "refuse"  # only files that are not videos: the note says so
    HELP = "help"
    VIDEOS = "videos"
    STATUS = "status"
    FORGET = "forget"  # remove `argument` (the adapter checks the author may)


COMMANDS = (Action.HELP, Action.VIDEOS, Action.STATUS, Action.FORGET)


@dataclass(frozen=True)
class Source:
    """One video to index: a link, or a file at the platform's URL with the headers it needs."""

    url: str
    name: str  # what to call it until its title is known
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Decision:
    """What one incoming message asks of the bot, decided before any work starts."""

    action: Action
    sources: tuple[Source, ...] = ()
    question: str = ""
    argument: str = ""
    refused: tuple[str, ...] = ()  # names of attached files that are not videos
    dropped: int = 0  # links and files skipped past `present.MAX_SOURCES`

    def notes(self, style: present.Style) -> list[str]:
        """What to say at once, before any work: files refused, links skipped, or the help text."""
        out = [present.not_videos(style, self.refused)] if self.refused else []
        if self.dropped:
            out.append(present.too_many(style, self.dropped))
        if self.action == Action.HELP:
            out.append(present.HELP)
        return out


def _question(text: str, links: tuple[str, ...]) -> str:
    for link in sorted(links, key=len, reverse=True):
        text = text.replace(link, " ")
    text = re.sub(r"\s+([?.!,;:])", r"\1", " ".join(text.split()))
    return text if re.search(r"\w", text) else ""


def _command(text: str) -> tuple[Action, str] | None:
    m = _COMMAND.fullmatch(text.strip().lstrip("/"))
    if m is None:
        return None
    word, rest = m[1].lower(), m[2].strip()
    if word == "forget":
        return Action.FORGET, rest
    return (Action.VIDEOS if word == "list" else Action(word), "") if not rest else None


async def decide(msg: Incoming, is_video: Callable[[str], bool] = is_video_link) -> Decision:
    """What `msg` asks of the bot (see the module's docstring for the rule). `is_video` tells
    whether an unaddressed link looks like a video; it may block (yt-dlp's extractors load on
    first use), so it runs in a thread, once for all the links of a message."""
    addressed = msg.addressed
    files = [a for a in msg.attachments if a.is_video]
    refused = tuple(a.name for a in msg.attachments if not a.is_video) if addressed else ()
    if addressed:
        links, unchecked = list(msg.links), 0
    else:
        checked = list(msg.links[:CHECKED_LINKS])
        links = await asyncio.to_thread(lambda: [u for u in checked if is_video(u)]) if checked else []
        unchecked = len(msg.links) - len(checked)
    found = [Source(a.url, a.name, dict(a.headers)) for a in files]
    found += [Source(u, present.source_name(u)) for u in links]
    sources = tuple(found[:present.MAX_SOURCES])
    dropped = max(0, len(found) - present.MAX_SOURCES) + unchecked if (sources or addressed) else 0
    if not addressed:
        return Decision(Action.INDEX if sources else Action.NOTHING, sources, dropped=dropped)
    text = _question(msg.text, msg.links)
    if sources:
        asks = text.endswith("?")
        return Decision(Action.BOTH if asks else Action.INDEX, sources, text if asks else "", refused=refused,
                        dropped=dropped)
    if refused:
        return Decision(Action.REFUSE, refused=refused, dropped=dropped)
    if not text:
        return Decision(Action.HELP)
    command = _command(text)
    if command is not None:
        return Decision(command[0], argument=command[1])
    return Decision(Action.ASK, question=text)


async def run_command(service: Service, scope: Scope, action: Action, argument: str,
                      style: present.Style) -> str:
    """The reply to a command, worded by `core.chat.present` (a `UserFacingError` is the caller's to
    show). `FORGET` removes: the adapter has checked that the author may."""
    if action == Action.VIDEOS:
        return present.video_list(style, await service.videos(scope))
    if action == Action.STATUS:
        return present.job_status(style, await service.jobs(scope), await service.videos(scope))
    if action == Action.FORGET:
        if not argument:
            return present.FORGET_WHICH
        return present.forgot(style, await service.forget(scope, argument))
    return present.HELP

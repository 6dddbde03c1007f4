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
  - with nothing to index, a command word (`help`, `videos` or `list`, `status`, `forget <video>`,
    `summary [video]` or `chapters [video]`) is that command, a request for what a video is about
    ("what is this video about?", "summarize the bread video", "tl;dr", "give me the chapters",
    in English, Italian, Spanish, German and French: `summary_request`) is `summary`, other text
    is a question, and a bare mention gets the help text;
  - with something to index, a request for what it is about is `summary` of it once indexed;
  - `clip` (alone, "clip it", "clip this", "clip please") in an answer's thread posts the moment
    the answer cites as a video (`CLIP`; a button under each answer does the same: `clip_button`);
  - with nothing to index and a picture attached (JPEG, PNG or WebP), the picture is a screenshot
    asked about (`PICTURE`: which moment it shows), whatever the words beside it; a video attached
    with it is indexed instead, as an upload.
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
from core.ingest.ytdlp import is_video_link
from core.models import Scope, VideoStatus
from core.text.links import has_video_suffix

if TYPE_CHECKING:
    from core.service import Service

_URL = re.compile(r"https?://[^\s<>]+")
_TRAILING = ".,;:!?)]'\""
_COMMAND = re.compile(r"(help|videos|list|status|forget|summary|chapters|clip)\b[\s:]*(.*)", re.IGNORECASE | re.DOTALL)
CHECKED_LINKS = 4 * present.MAX_SOURCES  # links of one unaddressed message checked at most
PICTURE_ASKED = "Where is this picture from?"  # a picture's question, for rate limits and thread names
PICTURE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_CLIP_WORDS = re.compile(r"(?:(?:it|this|that|the moment|please|pls)\b[\s!.]*)*", re.IGNORECASE)
CLIP_BUTTON = "vidrag-clip"  # the "Clip" button's id prefix on Discord, its action id on Slack
_CLIP_VALUE = re.compile(r"vidrag-clip:([0-9A-Za-z_-]{1,40}):(\d{1,6}(?:\.\d{1,3})?):(\d{1,6}(?:\.\d{1,3})?)")


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

    @property
    def is_picture(self) -> bool:
        """A JPEG, PNG or WebP by its type or name (what its bytes are is checked when it is read)."""
        return not self.is_video and (self.content_type.split(";")[0].strip().lower() in PICTURE_TYPES
                                      or self.name.lower().endswith(PICTURE_SUFFIXES))


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
    FORGET = "forget"  # remove `argument` (if the author may: `Service.forget`)
    SUMMARY = "summary"  # chapters and summary of the video `argument` names (or of `sources`, once indexed)
    PICTURE = "picture"  # which moment the attached picture `picture` shows
    CLIP = "clip"  # the moment the thread's answer cites, as a video (`Service.clip_thread`)


COMMANDS = (Action.HELP, Action.VIDEOS, Action.STATUS, Action.FORGET, Action.SUMMARY)


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
    picture: Source | None = None  # a screenshot asked about (`PICTURE`)

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
    if word == "clip":  # "clip", "clip it", "clip this please"; "clip art for slides?" is a question
        return (Action.CLIP, "") if _CLIP_WORDS.fullmatch(rest) else None
    if word == "forget":
        return Action.FORGET, rest
    if word in ("summary", "chapters"):  # "summary bread", "chapters of part 2"; a question is read as one
        rest = re.sub(r"^(?:of|for)\s+", "", rest, flags=re.IGNORECASE).rstrip("!. ")
        return None if rest.endswith("?") else (Action.SUMMARY, rest)
    return (Action.VIDEOS if word == "list" else Action(word), "") if not rest else None


def clip_button(video_id: str, start: float, end: float) -> str:
    """The value a "Clip" button under an answer carries: the cited moment (Discord's custom_id
    holds 100 characters; this is at most 69)."""
    return f"{CLIP_BUTTON}:{video_id}:{max(start, 0):.1f}:{max(end, start, 0):.1f}"


def clip_pressed(value: object) -> tuple[str, float, float] | None:
    """The moment a pressed "Clip" button names, or None for a value that is not one. The value
    comes back from the platform as the client sent it: it is checked here like any posted text,
    and the video is then looked up in the channel the button was pressed in only."""
    m = _CLIP_VALUE.fullmatch(value) if isinstance(value, str) and len(value) <= 100 else None
    return (m[1], float(m[2]), float(m[3])) if m else None


# ---- "what is this video about?" ----------------------------------------------------------------
# What a request for a summary looks like, in the languages vidrag transcribes. A request names its
# video, if at all, by a reference (`_REF`: "it", "this video", "the bread video", "part 2", an id);
# a sentence with anything else in it ("what is the Calvin cycle about?", "summarize what she
# says about rates") is a question about a detail, and is answered as one.
_NOUN = (r"(?:video|vid|clip|talk|lecture|recording|episode|movie|film|one|filmato|lezione|registrazione|"
         r"episodio|v[ií]deo|charla|clase|grabaci[oó]n|vortrag|vorlesung|aufnahme|folge|vid[eé]o|"
         r"conf[eé]rence|cours|enregistrement|[eé]pisode)")
_DET = (r"(?:the|this|that|il|lo|la|questo|questa|quel|el|este|esta|ese|der|die|das|dem|den|dieses|diesem|"
        r"diese|le|ce|cette|cet)")
_NAME = r"[^?!.,;:]{1,60}?"
# a video: "it", "this", "the video", "this bread video", "the video about bread", "part 2", an id
_REF = (rf"(?:it|this|that|esto|eso|es|ça|cela|lui|(?:{_DET}\s+)?(?:{_NAME}\s+)?{_NOUN}(?:\s+{_NAME})?"
        r"|(?:part|episode|ep\.?|parte|teil|partie)\s*\w+|[0-9a-f]{6,12})")
_OF = r"(?:of|for|on|about|del|della|dello|dell['’]|di|de|del|des|de\s+la|du|von|vom|zum|zur|über)"
_PLEASE = r"(?:please|pls|per favore|por favor|bitte|s['’]il (?:te|vous) pla[iî]t)"
_ASK = r"(?:(?:can|could|would|will)\s+you\s+|(?:please\s+)?)"
_GIVE = (r"(?:give\s+me|show\s+me|send\s+me|let\s+me\s+see|i\s+want|i['’]d\s+like|get\s+me|list|"
         r"dammi|fammi|mostrami|mi\s+fai|dame|hazme|mu[eé]strame|gib\s+mir|zeig\s+mir|donne[-\s]moi|"
         r"fais[-\s]moi|montre[-\s]moi|what\s+are|quali\s+sono|cu[aá]les\s+son|welche\s+sind|quels\s+sont)")
_WHAT = (r"(?:a|an|the|un|uno|una|il|i|gli|el|los|las|eine|einen|die|le|les)?\s*(?:quick\s+|short\s+|brief\s+)?"
         r"(?:summary|summaries|overview|recap|synopsis|tl;?\s*dr|chapters|chapter\s+list|outline|"
         r"riassunto|sommario|sintesi|capitoli|resumen|s[ií]ntesis|cap[ií]tulos|zusammenfassung|[üu]berblick|"
         r"kapitel|r[eé]sum[eé]|chapitres|aper[cç]u)")
_VERB = (r"(?:summari[sz]e|sum\s+up|recap|tl;?\s*dr|riassumi|riassumere|resume|res[uú]melo|resumir|"
         r"fass(?:e)?(?:\s+\w+){0,3}\s+zusammen|zusammenfassen|r[eé]sume|r[eé]sumer)")
_REQUESTS = [
    # what is it about / di cosa parla / de qué trata / worum geht es / de quoi parle
    rf"(?:what(?:['’]s|\s+is|\s+was)|whats)\s+(?P<ref>{_REF})\s+(?:all\s+)?about",
    rf"what\s+(?:does|did)\s+(?P<ref>{_REF})\s+(?:cover|talk\s+about|discuss|explain|say)",
    rf"(?:di\s+)?(?:che\s+)?cosa\s+(?:parla|tratta|dice)\s*(?P<ref>{_REF})?",
    rf"(?:de\s+)?qu[eé]\s+(?:trata|va|habla)\s*(?P<ref>{_REF})?",
    rf"(?:worum|wovon)\s+(?:geht\s+es|geht['’]s|handelt)\s*(?:in\s+|im\s+|bei\s+)?(?P<ref>{_REF})?",
    rf"(?:de\s+quoi|[çc]a)\s+(?:parle|traite)(?:\s+de\s+quoi)?\s*(?P<ref>{_REF})?",
    # summarize it / riassumi il video / resume el video / fasse das Video zusammen / résume la vidéo
    rf"{_ASK}{_VERB}(?:\s+(?P<ref>{_REF}))?",
    # a summary, the chapters (of the video), give me the chapters, what are the chapters
    rf"{_ASK}(?:{_GIVE}\s+)?{_WHAT}(?:\s+{_OF})?(?:\s+(?P<ref>{_REF}))?",
]
_REQUEST = [re.compile(r, re.IGNORECASE) for r in _REQUESTS]
_THANKS = re.compile(r"\s*(?:thanks|thank\s+you|thx|ty|cheers|grazie|gracias|danke|merci)(?:\s+\w+){0,2}[\s!.]*",
                     re.IGNORECASE)
_GENERIC = re.compile(rf"(?:it|this|that|esto|eso|es|ça|cela|lui|(?:{_DET}\s+)?{_NOUN})", re.IGNORECASE)


def summary_request(text: str) -> str | None:
    """Whether `text` asks what a video is about (for its summary or chapters): None if not, else
    the words that name the video ("" for "it", "this video": the conversation's or the latest).
    Several sentences ("What is this video about? Summarize it.") must each ask it."""
    parts = [p for p in re.split(r"(?<=[?!.])\s+", text.strip()) if p.strip(" ?!.") and not _THANKS.fullmatch(p)]
    named = [_one_request(p) for p in parts]
    return None if not named or None in named else next((n for n in named if n), "")


def _one_request(text: str) -> str | None:
    said = " ".join(text.replace("’", "'").split()).strip(" ?!.¿¡:,;")
    said = re.sub(rf"(?:,?\s*{_PLEASE})+$|^(?:{_PLEASE}\s*,?\s*)+|^(?:hey|hi|ok|so|and)\s*,?\s+", "", said,
                  flags=re.IGNORECASE).strip(" ?!.,")
    for rx in _REQUEST:
        m = rx.fullmatch(said)
        if m is not None:
            ref = (m.groupdict().get("ref") or "").strip()
            return "" if not ref or _GENERIC.fullmatch(ref) else ref
    return None


async def decide(msg: Incoming, is_video: Callable[[str], bool] = is_video_link) -> Decision:
    """What `msg` asks of the bot (see the module's docstring for the rule). `is_video` tells
    whether an unaddressed link looks like a video; it may block (yt-dlp's extractors load on
    first use), so it runs in a thread, once for all the links of a message."""
    addressed = msg.addressed
    files = [a for a in msg.attachments if a.is_video]
    pictures = [a for a in msg.attachments if a.is_picture] if addressed else []
    refused = tuple(a.name for a in msg.attachments if not a.is_video and not a.is_picture) if addressed else ()
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
        if text and summary_request(text) is not None:  # "summarize this: <link>"
            return Decision(Action.SUMMARY, sources, refused=refused, dropped=dropped)
        asks = text.endswith("?")
        return Decision(Action.BOTH if asks else Action.INDEX, sources, text if asks else "", refused=refused,
                        dropped=dropped)
    if pictures:
        first = pictures[0]
        return Decision(Action.PICTURE, refused=refused, dropped=dropped,
                        picture=Source(first.url, first.name, dict(first.headers)))
    if refused:
        return Decision(Action.REFUSE, refused=refused, dropped=dropped)
    if not text:
        return Decision(Action.HELP)
    command = _command(text)
    if command is not None:
        return Decision(command[0], argument=command[1])
    named = summary_request(text)
    if named is not None:
        return Decision(Action.SUMMARY, argument=named)
    return Decision(Action.ASK, question=text)


async def run_command(service: Service, scope: Scope, action: Action, argument: str,
                      style: present.Style, thread: str | None = None, *, user: str | None = None,
                      admin: bool = False, admins: str = "an admin") -> str:
    """The reply to a command, worded by `core.chat.present` (a `UserFacingError` is the caller's to
    show). `FORGET` removes if `Service.forget` allows it: to the operator (`user` None), to the
    `user` who posted the video, or to an `admin` (the adapter says whether the author is one on
    its platform, and what its admins are called: `admins`). `SUMMARY` without an argument is of
    the video the conversation `thread` is about, else the latest."""
    if action == Action.VIDEOS:
        listed = await service.videos(scope, present.LISTED)
        total = await service.count_videos(scope) if len(listed) == present.LISTED else None
        return present.video_list(style, listed, total)
    if action == Action.STATUS:
        jobs = await service.jobs(scope)  # queued or running: bounded by the channel's queue limit
        videos = [v for j in jobs if (v := await service.video(scope, j.video_id)) is not None]
        return present.job_status(style, jobs, videos, await service.count_videos(scope, VideoStatus.READY))
    if action == Action.FORGET:
        if not argument:
            return present.FORGET_WHICH
        return present.forgot(style, await service.forget(scope, argument, user=user, admin=admin, admins=admins))
    if action == Action.SUMMARY:
        return present.summary_text(style, await service.summary(scope, argument or None, thread=thread))
    return present.HELP

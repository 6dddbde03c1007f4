"""What the bot posts cannot ping anyone or carry a link it did not make.

Answers quote retrieved transcript and on-screen text, and an LLM may repeat what a video told it
to: `neutralize` is the last step before an answer leaves the core, and `one_line` is the step
every video string (title, uploader, file name) takes before any platform sees it. Mentions
(`@everyone`, `@here`, `@channel`, Discord `<@id>`/`<@&role>`/`<#channel>`, Slack
`<!here>`/`<@U…>`) are broken with a zero-width space or angle-quote look-alikes; URLs and bare
domain names are defanged (`hxxps://evil[.]example`), so no platform turns them into links. The
bot's own citation links are added by the adapters from `Answer.citations`, never from the text,
so they are untouched.

Every pattern here runs in time linear in its input: these functions run on the event loop for
each citation, and a video's title is chosen by whoever posted the link (a 12 KB title once cost
17 s of loop time per question). No pattern may backtrack over a run it already consumed, so
there are no nested quantifiers; dotted names are found with possessive quantifiers anchored at
a label's start, and the "is this a domain?" decision is plain Python on the match.
"""

from __future__ import annotations

import re

TITLE_LIMIT = 200  # characters of a video's title (or any one video string) shown on a platform

_AT = re.compile(r"@(?=(?:everyone|here|channel|all)\b)", re.I)
_ANGLE = re.compile(r"<([@#!]|(?:https?|ftp|mailto|tel):)([^>]*)>?", re.I)
_URL = re.compile(r"\b(?:https?|ftp|file|mailto|tel|javascript|data)(?=:)", re.I)
# A dotted name: labels of letters, digits, '-' or '_' joined by a dot (ASCII, ideographic or
# full-width: browsers read all three as a dot). The look-behind starts a match only where a label
# starts and the possessive `++` never gives back what a label took, so each character is read a
# bounded number of times however the input is built ("a." * 50000, one 100 KB label, ...).
_DOT = "[.\u3002\uff0e\uff61]"
_DOTTED = re.compile(rf"(?<![\w-])[\w-]++(?:{_DOT}[\w-]++)+")
_DOT_RE = re.compile(_DOT)
# Control characters (a terminal obeys ESC sequences, OSC 52 writes the clipboard) and bidi
# overrides (they make "exe.mp4" read as "4pm.exe") are dropped; tab and line breaks stay.
_INVISIBLE = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
                            *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def _is_tld(label: str) -> bool:
    """Whether `label` could be a top-level domain: every TLD is letters only (two or more, any
    script) or an IDN's `xn--` form. Judged by shape, not from a list, so `.shop`, `.ninja`,
    `.pw` and next year's TLDs are all caught."""
    return (len(label) >= 2 and label.isalpha()) or label.lower().startswith("xn--")


def _defang_domain(m: re.Match[str]) -> str:
    """`evil.example` → `evil[.]example` when any label after the first looks like a TLD
    (`evil.com.x` is defanged too); version numbers, addresses and `e.g.` stay as they are."""
    name = m.group(0)
    labels = _DOT_RE.split(name)
    if not any(_is_tld(label) for label in labels[1:]):
        return name
    return _DOT_RE.sub("[.]", name)


def _defang_scheme(m: re.Match[str]) -> str:
    word = m.group(0)
    if word.lower().startswith(("http", "ftp")):
        return word.replace("t", "x").replace("T", "X")
    return word[0] + "\u200b" + word[1:]


def neutralize(text: str) -> str:
    """`text` with no live mention, no link and no control character; readable as before.
    Linear in `len(text)`."""
    text = text.translate(_INVISIBLE)
    text = _ANGLE.sub(lambda m: f"‹{m.group(1)}{m.group(2)}›", text)
    text = _AT.sub("@\u200b", text)
    text = _URL.sub(_defang_scheme, text)
    text = _DOTTED.sub(_defang_domain, text)
    return text.replace("<@", "‹@").replace("<#", "‹#").replace("<!", "‹!")


def one_line(text: str, limit: int = TITLE_LIMIT) -> str:
    """A string from a video (title, uploader, file name) made fit to show anywhere: one line
    (a title cannot start a heading, a quote or a list), at most `limit` characters, neutralized.
    Only the first characters are ever read, so a 100 KB title costs what a short one does."""
    head = " ".join(text[: limit * 4].split())
    cut = len(head) > limit or len(text) > limit * 4
    safe = neutralize(head[:limit])
    if len(safe) > limit:  # defanging lengthens ("." → "[.]"): cut again, after it
        safe, cut = safe[:limit], True
    return safe.rstrip() + "…" if cut else safe

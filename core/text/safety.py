"""What the bot posts cannot ping anyone or carry a link it did not make.

Answers quote retrieved transcript and on-screen text, and an LLM may repeat what a video told it
to: `neutralize` is the last step before an answer leaves the core, and `one_line` is the step
every video string (title, uploader, file name) and every echoed question takes before any
platform sees it. Mentions (`@everyone`, `@here`, `@channel`, Discord `<@id>`/`<@&role>`/
`<#channel>`, Slack `<!here>`/`<@U…>`) are broken with a zero-width space or angle-quote
look-alikes. Links are defanged (`hxxps[:]//evil[.]example`), so no platform turns them into
links and no reader's browser opens them. The bot's own citation links are added by the adapters
from `Answer.citations`, never from the text, so they are untouched.

The link rule is written for forms nobody listed, not as a list of cases (issue 22 found
`xhttps://93.184.216.34/claim` and `evil\ufe52com` passing the earlier one):

- every `://` is broken (`[:]//`), whatever precedes it: the scheme may start after letters or
  digits, be unknown, or be written in full-width letters; what follows it (a host of any form:
  an integer or IPv6 address, one label) is then no link either;
- every host-looking token is broken wherever it starts: a dotted name one of whose labels after
  the first could be a top-level domain (letters only, any script, or an IDN's `xn--` form), any
  dotted name with an `xn--` label, and an IPv4 literal (four numbers, decimal or `0x`);
- the text is read through a fold that maps look-alikes to what a browser or a linkifier makes of
  them: every character whose compatibility form is one ASCII character (full-width letters,
  `\uff0e`, `\ufe52`, `\u2024`, `\uff1a`, `\uff0f`), ideographic full stops, and slash and colon
  look-alikes (`\u2215`, `\u2044`, `\u2236`, …); a backslash counts as a slash (browsers read
  `https:\\host`). Invisible characters that could split a name from a linkifier's view but not
  from a browser's (zero-width space, word joiner, soft hyphen, …) are dropped; zero-width joiners
  and variation selectors stay (emoji need them) but count as part of a name.

Known schemes without `//` (`mailto:`, `javascript:`, `data:`, …) are broken with a zero-width
space after their first letter, as before. What is lost: version numbers of four parts or more and bare IP
addresses read `10[.]0[.]0[.]1`; three-part versions, decimals and `e.g.` read as written.

Every pattern here runs in time linear in its input: these functions run on the event loop for
each citation, and a video's title is chosen by whoever posted the link (a 12 KB title once cost
17 s of loop time per question). No pattern may backtrack over a run it already consumed, so
there are no nested quantifiers; dotted names are found with possessive quantifiers anchored at
a label's start, and the "is this a host?" decision is plain Python on the match.
"""

from __future__ import annotations

import functools
import re
import unicodedata

TITLE_LIMIT = 200  # characters of a video's title (or any one video string) shown on a platform

_AT = re.compile(r"@(?=(?:everyone|here|channel|all)\b)", re.I)
_ANGLE = re.compile(r"<([@#!]|(?:https?|ftp|mailto|tel):)([^>]*)>?", re.I)
# Read on the folded text (`_fold`), where every look-alike is its ASCII original.
_SEPARATOR = re.compile(r":(?=[/\\]{2})")  # the colon of any `://` (or `:\\`), whatever precedes it
_WEB_SCHEME = re.compile(r"(?:https?|ftps?)(?=:)", re.I)  # inside a longer word too: `xhttps:`
_OTHER_SCHEME = re.compile(r"\b(?:file|mailto|tel|javascript|vbscript|data|sms|callto|intent)(?=:)", re.I)
# A dotted name: labels of letters, digits, '-' or '_' joined by dots. The look-behind starts a
# match only where a label starts and the possessive `++` never gives back what a label took, so
# each character is read a bounded number of times however the input is built ("a." * 50000,
# one 100 KB label, ...).
_DOTTED = re.compile(r"(?<![\w-])[\w-]++(?:\.[\w-]++)+")
_IP_LABEL = re.compile(r"\d+|0x[0-9a-f]+", re.I)
_JOINED = re.compile(r"[-_]")
# Control characters (a terminal obeys ESC sequences, OSC 52 writes the clipboard) and bidi
# overrides (they make "exe.mp4" read as "4pm.exe") are dropped, and so are invisible characters
# that split a name for a linkifier but not for a browser; tab and line breaks stay.
_INVISIBLE = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
                            *range(0x202A, 0x202F), *range(0x2066, 0x206A),
                            0x00AD, 0x034F, 0x061C, 0x180E, 0x200B, 0x200E, 0x200F, *range(0x2060, 0x2065), 0xFEFF])
_DOTS = "\u3002\uff61\u0701\u0702\ua60e\ua4f8\U00010a50"  # beside those whose compatibility form is "."
_SLASHES = "\\\u2215\u2044\u2571\u27cb\u29f8\u1735\u3033\u31d3\u2f03\u4e3f\uff3c\u2216\u29f5\u29f9\ufe68"
_COLONS = "\u2236\ua789\u02d0\u02f8\u0589\u05c3\u0703\u0704\u16ec\ufe30\u1803\u1809\u205a\u2e2c\ua4fd"
_JOINERS = [0x200C, 0x200D, *range(0xFE00, 0xFE10)]  # kept in the text, part of a name in the fold


@functools.cache
def _fold_table() -> dict[int, str]:
    """One character for one: the character a look-alike stands for (ASCII, or a letter or digit of
    another script; so positions in the fold are positions in the text). Built once, on first use (~0.1 s)."""
    table: dict[int, str] = {}
    for lo, hi in ((0x80, 0x3400), (0xA000, 0x20000)):  # CJK ideographs have no compatibility forms
        for cp in range(lo, hi):
            n = unicodedata.normalize("NFKC", chr(cp))
            # an ASCII look-alike, or a letter or digit of another script (the Kangxi radical
            # U+2F90 is the ideograph 衣 to a browser, inside a name: found by the parser-tier fuzzer)
            if len(n) == 1 and n != chr(cp) and (n.isascii() or n.isalnum()):
                table[cp] = n
    table.update({ord(c): "." for c in _DOTS})
    table.update({ord(c): "/" for c in _SLASHES})
    table.update({ord(c): ":" for c in _COLONS})
    table.update(dict.fromkeys(_JOINERS, "-"))
    return table


def _fold(text: str) -> str:
    return text.translate(_fold_table())


def _is_tld(label: str) -> bool:
    """Whether `label` could be a top-level domain: every TLD is letters only (two or more, any
    script) or an IDN's `xn--` form. Judged by shape, not from a list, so `.shop`, `.ninja`,
    `.pw` and next year's TLDs are all caught."""
    return (len(label) >= 2 and label.isalpha()) or label.lower().startswith("xn--")


def _is_host(name: str) -> bool:
    """Whether a dotted name (folded) names a host: a TLD-shaped label after the first
    (`evil.com.x` too), an `xn--` label anywhere, or four numbers in a row (an IPv4 literal, also
    inside a longer run or joined to other text by `-`: a linkifier finds `0.131.0x34.0x86` in
    `7-0.0.131.0x34.0x86` and `1.2.3.4` in `1.2.3.4-x`, as the parser-tier fuzzer showed). Three-part versions, decimals and `e.g.` are not."""
    labels = name.split(".")
    # an `xn--` label after a '-' too: a zero-width joiner folds to '-', and "\u200dxn--p1ai.x1" is
    # still a punycode host to a linkifier (found by the parser-tier fuzzer)
    # a label's part before a '-' counts too: a linkifier reads "7x1.exam-1.0x90" as "7x1.exam"
    if any(_is_tld(label) or _is_tld(label.split("-", 1)[0]) for label in labels[1:]) \
            or any(label.lstrip("-_").lower().startswith("xn--") for label in labels):
        return True
    run = 0  # numbers in a row; a label joined to a number by '-' or '_' ends or starts a run
    for label in labels:
        if _IP_LABEL.fullmatch(label.strip("-_")):
            run += 1
        else:
            parts = _JOINED.split(label)
            if run >= 3 and _IP_LABEL.fullmatch(parts[0]):  # "1.2.3.4-x": a linkifier stops at '-'
                return True
            run = 1 if _IP_LABEL.fullmatch(parts[-1]) else 0  # "x-1.2.3.4"
        if run >= 4:
            return True
    return False


def _defang_links(text: str) -> str:
    """Every `://`, web scheme and host-looking name of `text` broken, found on its fold."""
    folded = _fold(text)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in `text`, never overlapping
    edits += [(m.start(), m.end(), "[:]") for m in _SEPARATOR.finditer(folded)]
    edits += [(m.start(), m.end(), m.group(0).replace("t", "x").replace("T", "X")) for m in _WEB_SCHEME.finditer(folded)]
    edits += [(m.start() + 1, m.start() + 1, "\u200b") for m in _OTHER_SCHEME.finditer(folded)]
    for m in _DOTTED.finditer(folded):
        if _is_host(m.group(0)):
            edits += [(i, i + 1, "[.]") for i in range(m.start(), m.end()) if folded[i] == "."]
    if not edits:
        return text
    out, at = [], 0
    for start, end, new in sorted(edits):
        out += [text[at:start], new]
        at = end
    out.append(text[at:])
    return "".join(out)


def neutralize(text: str) -> str:
    """`text` with no live mention, no link and no control character; readable as before.
    Linear in `len(text)`."""
    text = text.translate(_INVISIBLE)
    text = _ANGLE.sub(lambda m: f"‹{m.group(1)}{m.group(2)}›", text)
    text = _AT.sub("@\u200b", text)
    text = _defang_links(text)
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

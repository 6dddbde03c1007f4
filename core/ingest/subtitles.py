"""Subtitles (WebVTT, SRT, TTML) as timed segments, in time linear in the file, and the bounds on
every segment an ingest derives from a video (subtitle cues and speech alike).

A site's subtitle file is chosen by whoever posted the link. The parser that came before matched
each line with one regular expression whose optional hour group (`(?:(\\d+):)?`) backtracked
over every run of digits: a 100 KB line of digits took ~90 s, on the event loop. Here a line is
a cue's timing only if it holds `-->`; each side is then one short token matched whole against an
anchored pattern of bounded repetitions, tags are cut with `str.find`, and every line is cut to
`MAX_LINE` characters before anything else looks at it. TTML is read with expat, document type
declarations refused (no entities to expand).

Whatever the file says, `bound` keeps a video's segments inside its length and at most
`per_minute` of them in any minute of it, each cut to `max_chars`: a 6-s video with 20,000 cues
held the only worker for minutes and made 40,000 units before; it now keeps a minute's worth.
"""

from __future__ import annotations

import html
import re
import xml.parsers.expat
from collections.abc import Iterable
from dataclasses import replace

from core.models import Kind, Segment

MAX_LINE = 2000  # characters of one line of a subtitle file looked at; the rest is cut
MAX_CUES = 200_000  # cues read from one file at most, before `bound` thins them by minute

_TIME = re.compile(r"(?:(\d{1,5}):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_TOKEN_MAX = 16  # longer than any time `_TIME` accepts


def _clock(token: str) -> float | None:
    if len(token) > _TOKEN_MAX:
        return None
    m = _TIME.fullmatch(token)
    if m is None:
        return None
    h, mi, s, frac = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def cue_times(line: str) -> tuple[float, float] | None:
    """(start, end) of a WebVTT or SRT timing line (`00:01.000 --> 00:02.500 align:start`)."""
    left, arrow, right = line.partition("-->")
    if not arrow:
        return None
    start_tok = left.strip()
    end_tok = right.split(None, 1)[0] if right.strip() else ""
    start, end = _clock(start_tok), _clock(end_tok)
    return (start, end) if start is not None and end is not None else None


def strip_tags(text: str) -> str:
    """`text` without `<…>` tags, in one pass (a regex like `<[^>]+>` rescans the rest of the
    line from every `<` that has no `>` after it)."""
    out: list[str] = []
    pos = 0
    while True:
        lt = text.find("<", pos)
        if lt < 0:
            out.append(text[pos:])
            break
        gt = text.find(">", lt + 1)
        if gt < 0:  # no tag can close after this: the rest is text
            out.append(text[pos:])
            break
        out.append(text[pos:lt])
        pos = gt + 1
    return "".join(out)


def _clean(line: str) -> str:
    return " ".join(html.unescape(strip_tags(line)).split())


def parse_subtitles(text: str, max_cues: int = MAX_CUES) -> list[Segment]:
    """WebVTT, SRT or TTML cues as segments (kind `subtitle`); tags stripped, and the rolling
    repeats of YouTube's automatic captions (each cue repeating the previous line) removed.
    Reads at most `max_cues` cues."""
    head = text[:512].lstrip("\ufeff \t\r\n")
    if head.startswith(("<?xml", "<tt")):
        return _dedupe(parse_ttml(text, max_cues))
    cues: list[Segment] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) and len(cues) < max_cues:
        times = cue_times(lines[i][:MAX_LINE])
        i += 1
        if times is None:
            continue
        while i < len(lines) and lines[i].strip():
            line = _clean(lines[i][:MAX_LINE])
            if line:
                cues.append(Segment(times[0], times[1], line, Kind.SUBTITLE))
            i += 1
    return _dedupe(cues)


def _dedupe(cues: Iterable[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for c in cues:
        if c.end > c.start and not (out and c.text == out[-1].text):
            out.append(c)
    return out


# -- TTML ----------------------------------------------------------------------------------------

_OFFSET = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)(h|ms|m|s|f|t)")
_TTML_CLOCK = re.compile(r"(\d{1,5}):(\d{2}):(\d{2})(?:\.(\d{1,9})|:(\d{1,4}))?")


def _ttml_time(value: str, tick_rate: float, frame_rate: float) -> float | None:
    v = value.strip()
    if not v or len(v) > 24:
        return None
    m = _TTML_CLOCK.fullmatch(v)
    if m:
        h, mi, s, frac, frames = m.groups()
        t: float = int(h) * 3600 + int(mi) * 60 + int(s)
        if frac:
            t += float("0." + frac)
        elif frames:
            t += int(frames) / frame_rate
        return t
    m = _OFFSET.fullmatch(v)
    if m:
        n, unit = float(m[1]), m[2]
        return n * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "f": 1 / frame_rate, "t": 1 / tick_rate}[unit]
    return None


class _Refused(Exception):
    pass


def parse_ttml(text: str, max_cues: int = MAX_CUES) -> list[Segment]:
    """The `<p begin end|dur>` paragraphs of a TTML document (the `<br/>` inside one are line
    breaks), times as clock times or offsets (`12.5s`, `500ms`, ticks at `ttp:tickRate`). A
    document type declaration is refused, so no entity is ever expanded; a malformed document
    gives the cues read before the error."""
    cues: list[Segment] = []
    rates = {"tick": 1.0, "frame": 30.0}
    current: dict[str, object] | None = None

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal current
        local = name.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]
        if local == "tt":
            for k, v in attrs.items():
                key = k.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]
                if key in ("tickRate", "frameRate"):
                    try:
                        rate = float(v[:12])
                    except ValueError:
                        continue
                    if 0 < rate < 1e7:
                        rates["tick" if key == "tickRate" else "frame"] = rate
        elif local == "p" and current is None:
            a = {k.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]: v for k, v in attrs.items()}
            begin = _ttml_time(a.get("begin", ""), rates["tick"], rates["frame"])
            end = _ttml_time(a.get("end", ""), rates["tick"], rates["frame"])
            if end is None and begin is not None:
                dur = _ttml_time(a.get("dur", ""), rates["tick"], rates["frame"])
                end = begin + dur if dur is not None else None
            current = {"begin": begin, "end": end, "parts": [], "size": 0}
        elif local == "br" and current is not None:
            _add(" ")

    def _add(data: str) -> None:
        assert current is not None
        parts = current["parts"]
        size = int(current["size"])  # type: ignore[call-overload]
        if size < MAX_LINE and isinstance(parts, list):
            parts.append(data[: MAX_LINE - size])
            current["size"] = size + len(data)

    def end(name: str) -> None:
        nonlocal current
        local = name.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]
        if local == "p" and current is not None:
            begin, finish, parts = current["begin"], current["end"], current["parts"]
            current = None
            if isinstance(begin, float) and isinstance(finish, float) and isinstance(parts, list):
                line = " ".join("".join(parts).split())
                if line:
                    cues.append(Segment(begin, finish, line, Kind.SUBTITLE))
            if len(cues) >= max_cues:
                raise _Refused

    def data(chunk: str) -> None:
        if current is not None:
            _add(chunk)

    def refuse(*_: object) -> None:
        raise _Refused

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    try:
        parser.Parse(text, True)
    except (_Refused, xml.parsers.expat.ExpatError, ValueError):
        pass
    return cues


# -- bounds on whatever an ingest derives from a video -------------------------------------------

def bound(segments: Iterable[Segment], duration: float, per_minute: int, max_chars: int) -> list[Segment]:
    """`segments` inside the video: times clipped to [0, `duration`] (a cue wholly past the end
    is dropped), at most `per_minute` starting in any one minute of the video (the first ones),
    each text cut to `max_chars` characters. Sorted by start."""
    per_minute = max(1, per_minute)
    kept: list[Segment] = []
    counts: dict[int, int] = {}
    for s in sorted(segments, key=lambda s: (s.start, s.end)):
        start, end = max(0.0, s.start), min(s.end, duration)
        if not (start == start and end == end) or end <= start:  # NaN, or nothing left inside
            continue
        minute = int(start // 60)
        if counts.get(minute, 0) >= per_minute:
            continue
        counts[minute] = counts.get(minute, 0) + 1
        text = s.text if len(s.text) <= max_chars else s.text[: max_chars - 1].rstrip() + "…"
        kept.append(replace(s, start=start, end=end, text=text))
    return kept

"""Chapters of one video, made from what the catalog holds of it — the timed transcript and its
vectors, the on-screen text spans and theirs — never from the ingest's memory, so they can be made
again at any time (and, later, for the part of a long video indexed so far).

A chapter starts where the topic changes. The signals, per candidate moment:
- the screen: a slide change is an on-screen text span that starts there. A new heading (the
  span's first line) counts in full; the same heading over new lines (a build-up slide, a slide
  continued) counts for a little, so that one topic spread over several slides stays one chapter;
- a pause: silence between two transcript segments (a speaker moving on pauses);
- a shift in what is said and shown: one minus the cosine between the mean stored vector of the
  text just before the moment and just after it.

Candidates are kept best first, each at least `min_chapter` from the others: about one chapter
per topic, and never more than one a minute on a long video (`limits`). A title is the heading
on screen when the chapter starts (OCR's first line, cleaned), else the key phrase of what is said
in it — the words that set it apart from the other chapters — never a sentence cut short.

Pure functions over stored data (`Stored`, read with `load`); CPU work only, run off the loop.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.models import Chapter, Kind, Segment
from core.store.scoped import ScopedStore
from core.text.words import STOP

MIN_CHAPTER_S = 4.0  # no chapter is shorter (a title card shown for 4 s is a chapter)
LONG_VIDEO_S = 20 * 60.0  # from here on, no more than one chapter a minute
NEW_HEADING = 1.0  # a slide change whose heading differs
SAME_HEADING = 0.0  # a slide change under the same heading (build-up, continued slide): what is said decides
TEXT_APPEARS = 0.6  # on-screen text where there was none
PAUSE_WEIGHT = 0.4  # a pause of PAUSE_FULL seconds or more adds this much
PAUSE_FULL = 2.0
MIN_PAUSE = 0.6  # shorter silences between segments are breaths, not candidates
SHIFT_WEIGHT = 1.0  # times (1 - cosine) of before and after
FLOOR = 0.75  # a candidate scoring less starts no chapter
NEAR = 2.5  # candidates this close are one moment (a slide change and the speech that starts after it)
TITLE_CHARS = 60


@dataclass(frozen=True)
class Stored:
    """One video as chapters see it: its length, its spoken segments and its on-screen text spans,
    each with the vector stored at ingest (None where none was stored)."""

    duration: float
    speech: list[tuple[Segment, np.ndarray | None]]
    screen: list[tuple[Segment, np.ndarray | None]]


async def load(store: ScopedStore, video_id: str, duration: float) -> Stored:
    """Read one video's timed text and vectors from the catalog (four queries)."""
    end = max(duration, 0.0) + 1e6  # everything stored, whatever the header said
    segments = await store.segments(video_id, -1.0, end)
    vectors: dict[tuple[float, float, str], np.ndarray] = {}
    for kind in (Kind.SPEECH, Kind.SUBTITLE, Kind.OCR):
        for seg, vec in await store.units(video_id, 0.0, end, str(kind)):
            vectors[(round(seg.start, 3), round(seg.end, 3), seg.text)] = vec

    def with_vector(s: Segment) -> tuple[Segment, np.ndarray | None]:
        return s, vectors.get((round(s.start, 3), round(s.end, 3), s.text))

    speech = [with_vector(s) for s in segments if s.kind != Kind.OCR and s.text.strip()]
    screen = [with_vector(s) for s in segments if s.kind == Kind.OCR and s.text.strip()]
    length = max([duration] + [s.end for s, _ in speech + screen])
    return Stored(length, speech, screen)


def limits(duration: float) -> tuple[float, int]:
    """(shortest chapter in seconds, most chapters) for a video of `duration` seconds. Up to
    LONG_VIDEO_S the topics decide (a lecture with a slide per topic gets a chapter per slide);
    from there on, chapters are at least a minute long, so never more than one a minute."""
    if duration >= LONG_VIDEO_S:
        return 60.0, max(1, int(duration // 60))
    return MIN_CHAPTER_S, max(1, int(duration // MIN_CHAPTER_S))


# ---- headings and key phrases -------------------------------------------------------------------
_BULLET = re.compile(r"^[\W\d_]{0,4}(?=\w)")  # "1. ", "• ", "- " before a heading
_LETTERS = re.compile(r"[^\W\d_]")


def heading(text: str) -> str:
    """The heading of an on-screen text: its first line with some letters (OCR reads top to
    bottom), without a leading bullet or number, trailing punctuation, or more than TITLE_CHARS."""
    for line in text.splitlines():
        line = " ".join(_BULLET.sub("", line.strip()).split()).strip(" .,;:-–—|•")
        if len(_LETTERS.findall(line)) >= 3:
            return shorten(line)
    return ""


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,;:-") + "…"


_WORD = re.compile(r"[^\W\d_][^\W_]*(?:['’-][^\W_]+)*")


def _runs(text: str) -> list[list[str]]:
    """The runs of content words of a text, split at stop words and punctuation."""
    runs: list[list[str]] = []
    for part in re.split(r"[.,;:!?()\[\]\"“”]+", text):
        run: list[str] = []
        for w in _WORD.findall(part):
            if w.lower() in STOP or len(w) < 3:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(w)
        if run:
            runs.append(run)
    return runs


def key_phrases(texts: Sequence[str]) -> list[str]:
    """For each text (what is said in one chapter), its key phrase: the run of one to three content
    words that best sets it apart from the others (each word's count in it times its inverse
    frequency across them), as it was said. "" for a text without content words."""
    docs = [[[w.lower() for w in run] for run in _runs(t)] for t in texts]
    counts = [Counter(w for run in d for w in run) for d in docs]
    df = Counter(w for c in counts for w in c)
    n = len(docs)
    out = []
    for text, c in zip(texts, counts, strict=True):
        best, best_score = "", 0.0
        for run in _runs(text):
            for size in (1, 2, 3):
                for i in range(len(run) - size + 1):
                    words = run[i:i + size]
                    weights = [c[w.lower()] * math.log((n + 1) / df[w.lower()]) + 0.1 for w in words]
                    score = sum(weights) / size * (1 + 0.25 * (size - 1)) * (1 if min(weights) > 0.5 else 0.5)
                    if score > best_score:
                        best, best_score = " ".join(words), score
        out.append(best[:1].upper() + best[1:])
    return out


# ---- boundaries -----------------------------------------------------------------------------------
@dataclass
class Cut:
    """A moment where a chapter could start, and how strongly each signal points at it."""

    time: float
    screen: float = 0.0
    pause: float = 0.0
    shift: float = 0.0

    @property
    def score(self) -> float:
        return self.screen + PAUSE_WEIGHT * min(self.pause, PAUSE_FULL) / PAUSE_FULL + SHIFT_WEIGHT * self.shift


def candidates(stored: Stored) -> list[Cut]:
    """Every moment a signal points at, those within NEAR seconds merged (a slide change keeps its
    own time: it is the frame where the new slide was first seen)."""
    cuts: list[Cut] = []
    spans = sorted((s for s, _ in stored.screen), key=lambda s: s.start)
    for prev, span in zip([None, *spans], spans, strict=False):
        if prev is None or prev.end < span.start - NEAR:
            strength = TEXT_APPEARS
        else:
            strength = NEW_HEADING if heading(prev.text).lower() != heading(span.text).lower() else SAME_HEADING
        cuts.append(Cut(span.start, screen=strength))
    said = sorted((s for s, _ in stored.speech), key=lambda s: s.start)
    for a, b in zip(said, said[1:], strict=False):
        if b.start - a.end >= MIN_PAUSE:
            cuts.append(Cut(b.start, pause=b.start - a.end))
    cuts.sort(key=lambda c: (c.time, -c.screen))
    merged: list[Cut] = []
    for c in cuts:
        if merged and c.time - merged[-1].time <= NEAR:
            m = merged[-1]
            if c.screen > m.screen:
                m.time = c.time
            m.screen, m.pause = max(m.screen, c.screen), max(m.pause, c.pause)
        else:
            merged.append(c)
    return [c for c in merged if 0.5 < c.time < stored.duration - 0.5]


def _mean(vectors: list[np.ndarray]) -> np.ndarray | None:
    if not vectors:
        return None
    m = np.mean(np.stack(vectors), axis=0)
    norm = float(np.linalg.norm(m))
    return m / norm if norm > 0 else None


def shifts(stored: Stored, cuts: list[Cut]) -> None:
    """Set each cut's `shift`: 1 - cosine of the mean vector of the text before it and after it,
    within a window as long as a typical stretch between cuts that the screen marks (a slide), or
    a twentieth of the video (15-60 s) when nothing is on screen."""
    items = [(s, v) for s, v in stored.speech + stored.screen if v is not None]
    if not items:
        return
    starts = sorted(c.time for c in cuts if c.screen)
    gaps = np.diff(starts) if len(starts) > 2 else np.array([])
    window = float(np.median(gaps)) if len(gaps) else min(60.0, max(15.0, stored.duration / 20))
    window = max(window, MIN_CHAPTER_S)
    for c in cuts:
        before = [v for s, v in items if c.time - window <= (s.start + s.end) / 2 < c.time
                  or (s.kind == Kind.OCR and s.start < c.time - 0.5 < s.end)]
        after = [v for s, v in items if c.time <= (s.start + s.end) / 2 < c.time + window
                 or (s.kind == Kind.OCR and s.start <= c.time + 0.5 < s.end)]
        a, b = _mean(before), _mean(after)
        c.shift = 0.0 if a is None or b is None else max(0.0, 1.0 - float(a @ b))


def boundaries(stored: Stored) -> list[float]:
    """Chapter starts after 0: the best candidates scoring FLOOR or more, each at least the
    shortest chapter from the others and from both ends, no more than `limits` allows."""
    shortest, most = limits(stored.duration)
    cuts = candidates(stored)
    shifts(stored, cuts)
    chosen: list[float] = []
    for c in sorted(cuts, key=lambda c: -c.score):
        if len(chosen) >= most - 1 or c.score < FLOOR:
            break
        if c.time < shortest or stored.duration - c.time < shortest:
            continue
        if all(abs(c.time - t) >= shortest for t in chosen):
            chosen.append(c.time)
    return sorted(chosen)


# ---- chapters ---------------------------------------------------------------------------------------
def inside(s: Segment, c: Chapter) -> bool:
    """Whether segment `s` belongs to chapter `c` (its middle lies in it)."""
    return c.start <= (s.start + s.end) / 2 < c.end



def chapters(stored: Stored) -> list[Chapter]:
    """The video's chapters, in order, covering it from 0 to its end; none for a video with
    nothing stored."""
    if not stored.speech and not stored.screen:
        return []
    starts = [0.0, *boundaries(stored)]
    ends = [*starts[1:], stored.duration]
    said = [" ".join(s.text for s, _ in stored.speech if a <= (s.start + s.end) / 2 < b) for a, b in zip(starts, ends, strict=True)]
    phrases = key_phrases(said)
    spans = sorted((s for s, _ in stored.screen), key=lambda s: s.start)
    out: list[Chapter] = []
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        title = ""
        # the slide that comes up with the chapter: its span starts near the chapter's start
        shown = [s for s in spans if a - NEAR <= s.start <= a + min(3.0, (b - a) / 2)
                 or (i == 0 and s.start < min(3.0, b))]
        if shown:
            title = heading(shown[0].text)
        if not title or (out and title.lower() == out[-1].title.lower()):
            title = phrases[i] or title
        if not title:
            over = [s for s in spans if s.start < b and s.end > a]
            title = heading(max(over, key=lambda s: min(b, s.end) - max(a, s.start)).text) if over else ""
        out.append(Chapter(round(a, 2), round(b, 2), title or f"Part {i + 1}"))
    return out

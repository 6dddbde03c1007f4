"""What one question reads from the catalog for `core.answer.retrieve`: each first-stage
candidate's units, and a named video's.

It is bounded whatever the question names: at most MAX_UNITS units in all (a named video's
NAMED_UNITS, read once in one query, and HIT_UNITS for the first-stage candidates, read together
in one statement of one bounded read each). A 6-s video with a 20,000-cue subtitle track
(40,000 units), named by a question, made the code before this load every unit and run a query
per unit on the catalog's one connection: still running after 15 minutes, while another
channel's question in the same process waited behind it (tests/reliability/test_limits.py).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from core.models import Hit, Kind, Segment
from core.store.scoped import ScopedStore

# A 10-minute lecture has ~320 units and a 30-s chunk 10-20, so no ordinary question reaches these
# bounds; the evaluation's never do.
UNITS_PER_HIT = 64  # units of one first-stage candidate, the first in time order
HIT_UNITS = 1024  # units read for the first-stage candidates in all (2 × top_k of 8, 64 each)
NAMED_UNITS = 600  # a named video with at most this many units gives all of them (~20 minutes of talk)
NAMED_SPAN = 4  # units scored for each of those (its own span holds itself and, for a pair, its halves)
NAMED_HITS = 16  # a longer named video: this many of its nearest chunks, and of its best word matches
MAX_UNITS = NAMED_UNITS + 1 + HIT_UNITS  # units one question loads from the catalog, at most
COVER_UNITS = 200  # on-screen spans of one video read to find its cover, the first in time order (a 67-slide lecture has 67)
UNIT_CHARS = 1000  # characters of a unit's text that are scored (evidence is quoted shorter still)
_KIND_ORDER = {Kind.SPEECH: 0, Kind.SUBTITLE: 1, Kind.OCR: 2}


@dataclass
class Unit:
    """A unit as retrieve scores it."""

    hit: int  # index of the text hit it comes from
    start: float
    end: float
    text: str
    score: float = 0.0
    why: tuple[str, ...] = ()
    vector: np.ndarray | None = None


def hit_key(h: Hit) -> tuple[str, str, float, float]:
    """What makes two hits the same moment (the dense and the lexical search both find it)."""
    return (h.video_id, str(h.kind), round(h.start, 2), round(h.end, 2))


Found = list[tuple[Segment, np.ndarray]]


class Known:
    """Every unit of one video, read once (the named video's): the units within a span are found
    here by bisection instead of by one catalog query per candidate."""

    def __init__(self, video_id: str, units: Found) -> None:
        self.video_id = video_id
        self.by_kind: dict[str, Found] = {}
        for seg, v in sorted(units, key=lambda sv: sv[0].start):
            self.by_kind.setdefault(str(seg.kind), []).append((seg, v))
        self.starts = {k: [seg.start for seg, _ in found] for k, found in self.by_kind.items()}

    def within(self, start: float, end: float, kind: str, limit: int) -> Found:
        """What `ScopedStore.units(video, start, end, kind, limit)` returns, from memory."""
        found, starts = self.by_kind.get(str(kind), []), self.starts.get(str(kind), [])
        out: Found = []
        for seg, v in found[bisect.bisect_left(starts, start - 0.01):]:
            if seg.start > end + 0.01 or len(out) == limit:
                break
            if seg.end <= end + 0.01:
                out.append((seg, v))
        return out


async def units_of(store: ScopedStore, hits: list[Hit], first: int, known: Known | None) -> list[Unit]:
    """Each hit's units with the vectors stored at ingest; a hit without any (indexed before units
    were stored) is its own unit, embedded now. The hits read from the catalog share HIT_UNITS
    units (UNITS_PER_HIT each at most); the named video's units (`known`) come from memory:
    UNITS_PER_HIT for a first-stage hit (`hits[:first]`), NAMED_SPAN for each of its own."""
    units: list[Unit] = []
    mine = [known is not None and h.video_id == known.video_id for h in hits]
    per = max(1, min(UNITS_PER_HIT, HIT_UNITS // max(1, mine.count(False))))
    # the others' units in one statement: a query each cost a round trip, ~16 of them a question
    wanted = [(h.video_id, h.start, h.end, h.kind, per) for h, m in zip(hits, mine, strict=True) if not m]
    from_db = iter(await store.units_within(wanted) if wanted else [])
    each: list[Found] = []
    for i, h in enumerate(hits):
        if known is not None and mine[i]:
            each.append(known.within(h.start, h.end, h.kind, per if i < first else NAMED_SPAN))
        else:
            each.append(next(from_db))
    for i, (h, found) in enumerate(zip(hits, each, strict=True)):
        if h.kind == Kind.OCR:
            found = [(seg, v) for seg, v in found if abs(seg.start - h.start) < 0.01][:1]
        if not found:
            units.append(Unit(i, h.start, h.end, h.text[:UNIT_CHARS]))
        units += [Unit(i, seg.start, seg.end, seg.text[:UNIT_CHARS], vector=v) for seg, v in found]
    return units


async def named_candidates(store: ScopedStore, video_id: str, seen: set[tuple[str, str, float, float]],
                       asked: str, qv: np.ndarray, lexical: bool) -> tuple[list[Hit], Known | None]:
    """Candidates from a named video not among them yet, each a hit of its own: every unit of it
    (read once, in one query, and returned as `Known` as well) when it has at most NAMED_UNITS;
    else its NAMED_HITS chunks nearest the question and, with `lexical`, its best word matches."""
    whole = await store.units(video_id, 0.0, 1e12, None, limit=NAMED_UNITS + 1)
    out: list[Hit] = []

    def add(h: Hit) -> None:
        if hit_key(h) not in seen:
            seen.add(hit_key(h))
            out.append(h)

    if len(whole) <= NAMED_UNITS:
        for seg, _ in sorted(whole, key=lambda sv: _KIND_ORDER.get(sv[0].kind, 3)):  # stable: by kind, then time
            add(Hit(video_id, seg.start, seg.end, seg.text, str(seg.kind), math.nan))
        return out, Known(video_id, whole)
    for h in await store.search_text(qv, NAMED_HITS, video_id=video_id):
        add(h)
    if lexical:
        for h in await store.lexical(asked, NAMED_HITS, video_id=video_id):
            add(h)
    return out, None

"""A video's cover: the slide that shows its title (and what is said over it), which repeats a
question's topic without answering it — unless the question asks about the video itself. An
explaining question (why, how, what happens) is never answered there, so retrieval discounts a
moment by the share of its time spent on a cover (core.answer.retrieve, COVER_WEIGHT).

A cover is found by its words, in any language: an on-screen text span that holds COVER_SHARE of
the video's title words (the title slide; a closing slide that shows the title again).
"""

from __future__ import annotations

import asyncio
import re

from core.answer.naming import name_tokens
from core.answer.reads import COVER_UNITS
from core.models import Kind
from core.store.scoped import ScopedStore

COVER_SHARE = 2 / 3

_EXPLAINS = re.compile(r"^\W*(?:why\b|how\b(?!\s+(?:many|much|long|often|far|old|big|high|tall|deep|fast|large|"
                       r"small|soon|hot|cold|heavy)\b)|what\s+(?:happen|caus|start|led|lead|made|make)|explain)",
                       re.IGNORECASE)


def explains(question: str) -> bool:
    """Whether a question asks for an explanation — why, how (not how many/much/long…), what
    happens, what caused or started — which a video's cover does not give, however much of the
    question's topic it repeats."""
    return bool(_EXPLAINS.match(question))


async def cover_spans(store: ScopedStore, vids: list[str], titles: dict[str, str]) -> dict[str, list[tuple[float, float]]]:
    """Each video's cover spans: its on-screen text spans that repeat COVER_SHARE of its title's
    words (the title slide, a closing slide that shows the title again)."""
    def cover(title: str, ocr: str) -> bool:
        want = set(name_tokens(title))
        return bool(want) and len(want & set(name_tokens(ocr))) >= COVER_SHARE * len(want)

    shown = await asyncio.gather(*(store.units(v, 0.0, 1e12, Kind.OCR, limit=COVER_UNITS) for v in vids))
    return {v: [(seg.start, seg.end) for seg, _ in segs if cover(titles.get(v, ""), seg.text)]
            for v, segs in zip(vids, shown, strict=True) if titles.get(v)}


def share_within(start: float, end: float, spans: list[tuple[float, float]]) -> float:
    """The share of [start, end] inside any of `spans` (a point counts whole or nothing)."""
    if end - start <= 1e-6:
        return 1.0 if any(a <= start <= b for a, b in spans) else 0.0
    inside = sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)
    return min(1.0, inside / (end - start))

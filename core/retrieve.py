"""Retrieval in one scope: text hits (speech, subtitles, on-screen text) and CLIP frame hits,
narrowed to the words that answer, and fused by time.

1. Search the scope's text partition (top-k chunks) and, when CLIP is on, its frame partition.
2. Split each speech chunk (~30 s) into units (one transcript segment, or two consecutive ones:
   whisper often cuts a sentence in half); an on-screen text span is one unit already.
3. Score every unit: its cosine similarity to the question (with its chunk's as context), plus
   lexical evidence (the IDF-weighted share of the question's words it contains), minus a
   penalty when it merely restates the video's title (a title slide names the topic of every
   question and answers none). Each hit keeps its best unit, so a citation spans the evidence.
4. Add agreement by time: a different signal (on-screen text vs. speech) overlapping the moment
   in the same video adds a share of its score, and a CLIP frame hit inside it adds a
   reciprocal-rank term — a moment that several signals point at rises.
5. Merge overlapping moments and keep the best few.
"""

from __future__ import annotations

import functools
import math
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import snowballstemmer

from .embed import ImageEmbedder, TextEmbedder
from .models import Hit, Kind
from .store import ScopedStore, VectorHit

UNIT_WEIGHT = 0.7  # a unit's own similarity, against its whole chunk's as context
LEX_WEIGHT = 0.5  # lexical evidence, 0..1, scaled (0.3 → 0.5: recall@1 0.853 → 0.863 on eval/)
TITLE_WEIGHT = 0.5  # penalty per unit of similarity to the video's title above TITLE_FLOOR
TITLE_FLOOR = 0.3
AGREE_WEIGHT = 0.25  # share of an overlapping, different signal's score added to a moment
FRAME_WEIGHT = 1.0  # a CLIP frame hit inside a moment adds FRAME_WEIGHT / (RRF_K + rank)
RRF_K = 20.0

Call = Callable[..., Awaitable[Any]]


_TITLE_CACHE: weakref.WeakKeyDictionary[Any, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()  # embedder → title → vector


@dataclass(frozen=True)
class Moment:
    hit: Hit
    sources: tuple[str, ...]  # the signals that point here, for the log and the tests


@dataclass
class _Unit:
    hit: int  # index of the text hit it comes from
    start: float
    end: float
    text: str
    score: float = 0.0
    why: tuple[str, ...] = ()
    vector: np.ndarray | None = None


def _overlaps(a0: float, a1: float, b0: float, b1: float, slack: float = 0.5) -> bool:
    return a0 <= b1 + slack and b0 <= a1 + slack


async def _units(store: ScopedStore, hits: list[VectorHit]) -> list[_Unit]:
    """Each hit's units with the vectors stored at ingest; a hit without any (indexed before units
    were stored) is its own unit, embedded now."""
    units: list[_Unit] = []
    for i, h in enumerate(hits):
        found = await store.units(h.video_id, h.start, h.end, h.kind)
        if h.kind == Kind.OCR:
            found = [(seg, v) for seg, v in found if abs(seg.start - h.start) < 0.01][:1]
        if not found:
            units.append(_Unit(i, h.start, h.end, h.text))
        units += [_Unit(i, seg.start, seg.end, seg.text, vector=v) for seg, v in found]
    return units


async def retrieve(store: ScopedStore, question: str, text: TextEmbedder, image: ImageEmbedder | None,
                   call: Call, top_k: int = 8, keep: int = 3,
                   titles: dict[str, str] | None = None) -> list[Moment]:
    """The best `keep` moments for `question` in `store`'s scope. `titles` (video id → title)
    lets words and text that merely name a video's topic count for less.

    Only the question is embedded here (and a title the first time it is seen): every unit's
    vector was stored at ingest, so an answer costs one small embedding, not dozens."""
    titles = titles or {}

    async def title_vectors(names: list[str]) -> list[np.ndarray]:
        cache = _TITLE_CACHE.setdefault(text, {})
        new = sorted({n for n in names if n not in cache})
        if new:
            cache.update(zip(new, await call(text.embed, new), strict=True))
        return [cache[n] for n in names]

    qv = (await call(text.embed, [question]))[0]
    hits = await store.search_text(qv, top_k)
    frame_hits: list[VectorHit] = []
    if image is not None:
        frame_hits = await store.search_frames((await call(image.embed_text, [question]))[0], top_k)
    if not hits:
        return []

    units = await _units(store, hits)
    vids = sorted({h.video_id for h in hits})
    missing = [u for u in units if u.vector is None]
    if missing:
        for u, v in zip(missing, await call(text.embed, [u.text for u in missing]), strict=True):
            u.vector = v
    unit_vecs = [u.vector for u in units]
    title_vecs = dict(zip(vids, await title_vectors([titles.get(v, "") for v in vids]), strict=True))
    topic = set().union(*(tokens(titles.get(v, "")) for v in vids))
    lex = lexical_scores(question, [u.text for u in units], ignore=topic)
    for u, uv, x in zip(units, unit_vecs, lex, strict=True):
        h = hits[u.hit]
        dense = float(uv @ qv)
        u.score = UNIT_WEIGHT * dense + (1 - UNIT_WEIGHT) * h.score + LEX_WEIGHT * x
        u.why = (f"{h.kind}#{u.hit}", f"dense:{dense:.2f}", f"lex:{x:.2f}")
        if titles.get(h.video_id):
            restate = float(uv @ title_vecs[h.video_id])
            u.score -= TITLE_WEIGHT * max(0.0, restate - TITLE_FLOOR)
            u.why += (f"title:{restate:.2f}",)
    best: dict[int, _Unit] = {}
    for u in units:
        if u.hit not in best or u.score > best[u.hit].score:
            best[u.hit] = u
    moments = [(Hit(hits[i].video_id, u.start, u.end, u.text, hits[i].kind, u.score), u.why)
               for i, u in sorted(best.items())]

    fused: list[Moment] = []
    for i, (hit, why) in enumerate(moments):
        agree = max((o.score for j, (o, _) in enumerate(moments)
                     if j != i and o.video_id == hit.video_id and o.kind != hit.kind
                     and _overlaps(hit.start, hit.end, o.start, o.end, 0.0)), default=0.0)
        score = hit.score + AGREE_WEIGHT * max(agree, 0.0)
        for rank, f in enumerate(frame_hits):
            if f.video_id == hit.video_id and _overlaps(hit.start, hit.end, f.start, f.end):
                score += FRAME_WEIGHT / (RRF_K + rank)
                why += (f"frame#{rank}",)
                break
        fused.append(Moment(Hit(hit.video_id, hit.start, hit.end, hit.text, hit.kind, score), why))

    fused.sort(key=lambda m: -m.hit.score)
    kept: list[Moment] = []
    for m in fused:
        if not any(o.hit.video_id == m.hit.video_id and _overlaps(m.hit.start, m.hit.end, o.hit.start, o.hit.end, 0.0)
                   for o in kept):
            kept.append(m)
        if len(kept) == keep:
            break
    return kept


STOP = frozenset("""a an and are as at be by can do does for from how i in is it its of on or that the their
this to was what when where which who why will with you your they them there these those into than then
about after before between did done has have had if not no so such too very we our us he she his her
also just more most other some any each many much own same only over under again further once here all both
few nor off out up down should would could may might must shall get gets got""".split())


_STEM = snowballstemmer.stemmer("english")


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _STEM.stemWord(word)


def tokens(text: str) -> set[str]:
    """Lower-case content words, stemmed (Snowball), so eruptions matches erupt."""
    return {_stem(w) for w in re.findall(r"[a-z0-9_]+", text.lower()) if w not in STOP and len(w) > 1}


def lexical_scores(question: str, docs: list[str], ignore: set[str] | frozenset[str] = frozenset()) -> list[float]:
    """For each doc, the IDF-weighted share of the question's words it contains (0..1). IDF is
    taken over `docs`, so words many candidates share count for little, and the words of
    `ignore` (the videos' titles: their topic) not at all."""
    q = tokens(question) - ignore
    if not q or not docs:
        return [0.0] * len(docs)
    sets = [tokens(d) for d in docs]
    n = len(docs)
    idf = {t: math.log(1 + n / (1 + sum(t in d for d in sets))) for t in q}
    total = sum(idf.values()) or 1.0
    return [sum(idf[t] for t in q if t in d) / total for d in sets]

"""Retrieval in one scope: text hits (speech, subtitles, on-screen text) and CLIP frame hits,
narrowed to the sentence that answers, and fused by time.

1. Search the scope's text partition (top-k chunks) and, when CLIP is on, its frame partition.
2. Narrow each speech chunk (~30 s) to its best-matching transcript segment, so a citation spans
   the evidence rather than half a minute around it.
3. Score each moment by reciprocal-rank fusion over the signals that point at it: its chunk rank,
   its sentence rank, and every other signal (on-screen text, speech, frames) whose span overlaps
   it in the same video — a moment that several signals agree on rises.
4. Merge overlapping moments and keep the best few.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .embed import ImageEmbedder, TextEmbedder
from .models import Hit, Kind
from .store import ScopedStore, VectorHit

RRF_K = 20.0


@dataclass(frozen=True)
class Moment:
    hit: Hit
    sources: tuple[str, ...]  # the signals that point here, for the log and the tests


def _overlaps(a0: float, a1: float, b0: float, b1: float, slack: float = 0.5) -> bool:
    return a0 <= b1 + slack and b0 <= a1 + slack


async def retrieve(store: ScopedStore, question: str, text: TextEmbedder, image: ImageEmbedder | None,
                   call, top_k: int = 8, keep: int = 3) -> list[Moment]:  # noqa: ANN001 - call: Models.call
    qv = (await call(text.embed, [question]))[0]
    text_hits = await store.search_text(qv, top_k)
    frame_hits: list[VectorHit] = []
    if image is not None:
        frame_hits = await store.search_frames((await call(image.embed_text, [question]))[0], top_k)
    if not text_hits:
        return []

    # 2. narrow speech chunks to their best segment
    candidates: list[tuple[int, VectorHit, list]] = []
    sentences: list[str] = []
    for rank, h in enumerate(text_hits):
        segs = [] if h.kind == Kind.OCR else await store.segments(h.video_id, h.start, h.end)
        segs = [s for s in segs if s.kind == h.kind and s.start >= h.start - 0.01 and s.end <= h.end + 0.01]
        candidates.append((rank, h, segs))
        sentences += [s.text for s in segs]
    sent_scores = (await call(text.embed, sentences)) @ qv if sentences else np.zeros(0)
    order = {i: r for r, i in enumerate(np.argsort(-sent_scores))}

    moments: list[tuple[Hit, float, list[str]]] = []
    k = 0
    for rank, h, segs in candidates:
        score = 1.0 / (RRF_K + rank)
        srcs = [f"{h.kind}#{rank}"]
        start, end, body = h.start, h.end, h.text
        if segs:
            idx = range(k, k + len(segs))
            best = max(idx, key=lambda i: sent_scores[i])
            seg = segs[best - k]
            start, end, body = seg.start, seg.end, seg.text
            score += 1.0 / (RRF_K + order[best])
            srcs.append(f"sentence#{order[best]}")
            k += len(segs)
        else:
            score *= 2  # an on-screen text span is already as narrow as its evidence
        moments.append((Hit(h.video_id, start, end, body, h.kind, score), score, srcs))

    # 3. time agreement between signals
    fused: list[Moment] = []
    for i, (hit, score, srcs) in enumerate(moments):
        bonus = 0.0
        for j, (other, oscore, _) in enumerate(moments):
            if j != i and other.video_id == hit.video_id and other.kind != hit.kind and \
                    _overlaps(hit.start, hit.end, other.start, other.end, 0.0):
                bonus = max(bonus, 0.5 * oscore)
        for rank, f in enumerate(frame_hits):
            if f.video_id == hit.video_id and _overlaps(hit.start, hit.end, f.start, f.end):
                bonus += 0.5 / (RRF_K + rank)
                srcs = srcs + [f"frame#{rank}"]
                break
        fused.append(Moment(replace(hit, score=score + bonus), tuple(srcs)))

    # 4. merge overlapping moments, best first
    fused.sort(key=lambda m: -m.hit.score)
    kept: list[Moment] = []
    for m in fused:
        if any(o.hit.video_id == m.hit.video_id and _overlaps(m.hit.start, m.hit.end, o.hit.start, o.hit.end, 0.0)
               for o in kept):
            continue
        kept.append(m)
        if len(kept) == keep:
            break
    return kept

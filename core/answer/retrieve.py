"""Retrieval in one scope: text hits (speech, subtitles, on-screen text) and CLIP frame hits,
narrowed to the words that answer, and fused by time.

1. Read which video the question names, if any (`core.answer.naming`): "in the part 2 video", "the one
   about compost", a title word, a video id. The naming phrase is set aside: the rest of the
   question is what is asked, and what the moment is found by.
2. First stage, three sources of candidates: the scope's text partition searched by vector
   (top-k chunks), its full-text index searched by words (top-k; `lexical`, when the store has
   one), and, when the question names a video (or, in another language, means it by its title or
   by what it says: `core.answer.topic`), every unit of that video — so a rare word spoken once among 1,000 videos,
   "part 2" among five look-alike parts, or the one Spanish slide that answers, is a candidate
   even when the dense search ranks it nowhere. Dense and lexical lists are fused by rank (RRF).
3. Split each speech chunk (~30 s) into units (one transcript segment, or two consecutive ones:
   whisper often cuts a sentence in half); an on-screen text span is one unit already.
4. Score every unit: its cosine similarity to what is asked (with its chunk's as context),
   lexical evidence (the IDF-weighted share of the asked words it contains; its own video's title
   words excluded — they name the video's topic, present on every slide, not the moment; each
   unit's words stemmed in its video's language, the question's in every language of the
   channel), and how strongly the question names its video (IDF over the channel's titles). A
   unit that restates its video's title loses a share of its score (its similarity to the title
   above a floor); so does a unit on the video's cover — a slide that repeats most of the
   title, and what is said over it — which repeats the question's topic without answering it.
   It keeps what its words beyond the title match of the question, unless the question asks for
   an explanation (why, how, what happens), which a cover never gives; a question about the
   video itself ("what is this video about?") loses nothing there. Where the title cannot be
   compared with a unit (a video in another language, embedded on the multilingual side), a
   unit on the cover is taken to restate it. Each hit keeps its best
   unit, so a citation spans the evidence, and the best segment within it as its focus (the
   frame shown).
5. Add agreement by time: a different signal (on-screen text vs. speech) overlapping the moment
   in the same video adds a share of its score, and a CLIP frame hit inside it adds a
   reciprocal-rank term — a moment that several signals point at rises.
6. Merge overlapping moments and keep the best few.

What one question reads is bounded whatever it names (`core.answer.reads`: MAX_UNITS units of
candidates at most), and the scoring runs off the event loop.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.answer.cover import about_the_video, cover_spans, discount, share_within
from core.answer.expects import ANSWER_WEIGHT, asks_date, holds_date
from core.answer.naming import Naming, Titles, name_tokens
from core.answer.reads import (
    HIT_UNITS,
    MAX_UNITS,
    NAMED_HITS,
    NAMED_SPAN,
    NAMED_UNITS,
    UNIT_CHARS,
    UNITS_PER_HIT,
    Known,
    Unit,
    hit_key,
    named_candidates,
    units_of,
)
from core.answer.topic import TOPIC_WEIGHT, across_languages, named_by_words
from core.engines.image import ImageEmbedder
from core.engines.text import ENGLISH, TextEmbedder
from core.models import Hit
from core.store.scoped import ScopedStore
from core.text.words import STOP, stem, stems, tokens

__all__ = ["HIT_UNITS", "MAX_UNITS", "NAMED_HITS", "NAMED_SPAN", "NAMED_UNITS", "STOP", "UNITS_PER_HIT", "UNIT_CHARS",
           "Lexical", "Moment", "lexical_scores", "retrieve", "stem", "tokens"]

UNIT_WEIGHT = 0.7  # a unit's own similarity, against its whole chunk's as context
LEX_WEIGHT = 0.5  # lexical evidence, 0..1, scaled (0.3 → 0.5: recall@1 0.853 → 0.863 on eval/)
NAME_WEIGHT = 0.3  # the named video's units gain this much, other named videos in proportion; a ruled-out sibling loses it
NAME_FULL = 2.5  # naming strength (IDF units over titles) that counts in full: ~one word unique to a title
# A video named at least this strongly, in a naming or title phrase, gives all its units. By any title
# word it gained two questions on eval/ (naming8's bleed valve, naming's garden2 into the top 3) but
# cost the ask +26 % p50 and +34 % p95 at 100 videos (`python -m bench.run --only retrieval`): not kept.
NAME_EXPAND = 1.0
TITLE_WEIGHT = 0.5  # penalty per unit of similarity to the video's title above TITLE_FLOOR
TITLE_FLOOR = 0.3
# A question is not answered by the cover (a slide that repeats most of the video's title, and what
# is said over it: core.answer.cover) unless it asks about the video itself. A unit loses
# COVER_WEIGHT times the share of its time spent on one, times `discount` (1 for an explaining
# question, else the share of the asked words it lacks).
COVER_WEIGHT = 0.3  # eval/naming tune split: recall@1 0.893 → 0.964, frame 0.821 → 0.893 (0.15: 0.929; 0.5: as 0.3)
AGREE_WEIGHT = 0.25  # share of an overlapping, different signal's score added to a moment
FRAME_WEIGHT = 1.0  # a CLIP frame hit inside a moment adds FRAME_WEIGHT / (RRF_K + rank)
FUSE_WEIGHT = 1.0  # a first-stage hit's fused rank adds FUSE_WEIGHT * RRF over its dense and lexical ranks
RRF_K = 20.0
Call = Callable[..., Awaitable[Any]]
Lexical = Callable[[str, int], Awaitable[list[Hit]]]  # words -> best-matching chunks of the scope


_TITLE_CACHE: weakref.WeakKeyDictionary[Any, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()  # embedder → title → vector
_TITLES: dict[tuple[tuple[str, str], ...], Titles] = {}  # the last few channels' titles, tokenised


@dataclass(frozen=True)
class Moment:
    hit: Hit
    sources: tuple[str, ...]  # the signals that point here, for the log and the tests
    # Where within the moment the evidence is best: of a moment that spans two transcript
    # segments (a sentence each, maybe on two slides), the span of the better one; its frame is
    # the one shown. None: the moment itself.
    focus: tuple[float, float] | None = None


def _overlaps(a0: float, a1: float, b0: float, b1: float, slack: float = 0.5) -> bool:
    return a0 <= b1 + slack and b0 <= a1 + slack


def _titles(titles: dict[str, str]) -> Titles:
    key = tuple(sorted(titles.items()))
    if key not in _TITLES:
        if len(_TITLES) > 32:
            _TITLES.clear()
        _TITLES[key] = Titles(titles)
    return _TITLES[key]


def naming_of(question: str, titles: dict[str, str]) -> Naming:
    """Which of `titles` (video id -> title) the question names, and what it asks."""
    return _titles(titles).naming(question)


def fuse(*ranked: list[Hit]) -> list[tuple[Hit, float]]:
    """Reciprocal-rank fusion of ranked hit lists: each distinct chunk once, with the sum of
    1 / (RRF_K + rank) over the lists that have it, best first."""
    fused: dict[tuple[str, str, float, float], list[Any]] = {}
    for hits in ranked:
        for rank, h in enumerate(hits):
            key = hit_key(h)
            if key in fused:
                fused[key][1] += 1.0 / (RRF_K + rank)
            else:
                fused[key] = [h, 1.0 / (RRF_K + rank)]
    return sorted(((h, r) for h, r in fused.values()), key=lambda hr: -hr[1])


async def retrieve(store: ScopedStore, question: str, text: TextEmbedder, image: ImageEmbedder | None,
                   call: Call, top_k: int = 8, keep: int = 3,
                   titles: dict[str, str] | None = None, lexical: Lexical | None = None,
                   languages: Collection[str] | None = None,
                   video_languages: dict[str, str] | None = None,
                   versions: dict[str, float] | None = None, hybrid: bool = True) -> list[Moment]:
    """The best `keep` moments for `question` in `store`'s scope. `titles` (video id → title,
    every video of the scope) tell which video a question names; `lexical` (default: the store's
    own full-text search, if it has one) adds candidates by words to the dense ones.
    `languages`: those of the scope's videos (None: unknown), which the question's embedding may
    leave out of its vector (see `BilingualEmbedder.embed_query`); `video_languages` (video id →
    language as Whisper names it) says which language each video's words are stemmed in (English
    where unknown). `versions` (video id → `Video.created`, the ready videos) lets what is derived
    from a video's rows once (its cover) be kept between questions. `hybrid` False leaves the
    first stage dense-only (bench/scale.py measures what the words add: a rare word's recall among
    1,000 videos, and the cost per ask).

    Only the question is embedded here (and a title the first time it is seen): every unit's
    vector was stored at ingest, so an answer costs one small embedding, not dozens."""
    titles = titles or {}
    video_languages = video_languages or {}
    if lexical is None and hybrid:
        lexical = getattr(store, "lexical", None)

    async def title_vectors(names: list[str], multilingual: bool = False) -> list[np.ndarray]:
        cache = _TITLE_CACHE.setdefault(text, {})
        side = "\0" if multilingual else ""  # a title embedded on the multilingual side, keyed apart
        new = sorted({n for n in names if side + n not in cache})
        if new:
            got = await (call(text.embed_passages, new, "xx") if multilingual else call(text.embed, new))
            cache.update(zip([side + n for n in new], got, strict=True))
        return [cache[side + n] for n in names]

    naming = naming_of(question, titles)
    asked = naming.content
    qv = (await call(lambda: text.embed_query([asked], languages)))[0]
    dense = await store.search_text(qv, top_k)
    words = await lexical(asked, top_k) if lexical is not None else []
    frame_hits: list[Hit] = []
    if image is not None:
        frame_hits = await store.search_frames((await call(image.embed_text, [question]))[0], top_k)
    fused = fuse(dense, words)
    hits = [h for h, _ in fused]
    rrf = [r for _, r in fused]
    best = naming.best()
    known: Known | None = None
    first = len(hits)
    # a video in another language that the question names by meaning, not by words (core.answer.topic)
    meant, by_meaning = await across_languages(store, qv, naming, titles, video_languages, versions or {}, text, hits,
                                               dense, lambda names: title_vectors(names, True),
                                               lambda texts: call(text.embed_passages, texts, "xx"))
    # every unit of the video named by words, or else of the one meant (core.answer.topic.across_languages)
    named = best[0] if named_by_words(naming) and best is not None and best[1] >= NAME_EXPAND else None
    if (expand := named or by_meaning) is not None:
        seen = {hit_key(h) for h in hits}
        extra, known = await named_candidates(store, expand, seen, asked, qv,
                                              lexical is not None and hasattr(store, "lexical"))
        hits += extra
        rrf += [0.0] * len(extra)
    if not hits:
        return []

    units = await units_of(store, hits, first, known)
    vids = sorted({h.video_id for h in hits})
    # a unit stored without a vector, or by another text model (TEXT_EMBEDDER or TEXT_MULTILINGUAL
    # changed since it was indexed), is embedded now rather than compared across spaces
    missing = [u for u in units if u.vector is None or u.vector.shape != qv.shape]
    if missing:
        for u, v in zip(missing, await call(text.embed, [u.text for u in missing]), strict=True):
            u.vector = v
    title_vecs = dict(zip(vids, await title_vectors([titles.get(v, "") for v in vids]), strict=True))
    covers = await cover_spans(store, vids, titles, versions) if COVER_WEIGHT and not about_the_video(question) else {}
    # scoring is CPU work (up to ~2,000 units, each moment against the others): off the event loop
    return await asyncio.to_thread(_rank, question, asked, naming, best, titles, title_vecs, covers, video_languages, qv,
                                   hits, rrf, dense, units, frame_hits, keep, meant)


def _rank(question: str, asked: str, naming: Naming, best: tuple[str, float] | None, titles: dict[str, str],
          title_vecs: dict[str, np.ndarray], covers: dict[str, list[tuple[float, float]]],
          video_languages: dict[str, str], qv: np.ndarray, hits: list[Hit], rrf: list[float],
          dense: list[Hit], units: list[Unit], frame_hits: list[Hit], keep: int,
          meant: dict[str, float] | None = None) -> list[Moment]:
    """Steps 4-6 of the module docstring: score the units, add agreement by time, keep the best."""
    vids = sorted({h.video_id for h in hits})
    lang = {v: video_languages.get(v, "") for v in vids}
    topic = {v: _topic(titles.get(v, ""), lang[v]) for v in vids}
    lex = lexical_scores(asked, [u.text for u in units], ignore_each=[topic[hits[u.hit].video_id] for u in units],
                         languages=[lang[hits[u.hit].video_id] for u in units])
    strongest = max(best[1] if best else 0.0, NAME_FULL)
    dense_of = [float(u.vector @ qv) for u in units]
    context = _context(hits, {hit_key(h) for h in dense}, units, dense_of)
    dated = asks_date(question)
    for u, d, x in zip(units, dense_of, lex, strict=True):
        h = hits[u.hit]
        # the video named gains NAME_WEIGHT, a sibling the question rules out loses as much
        named = -1.0 if h.video_id in naming.ruled_out else naming.scores.get(h.video_id, 0.0) / strongest
        u.score = (UNIT_WEIGHT * d + (1 - UNIT_WEIGHT) * context[u.hit] + LEX_WEIGHT * x
                   + NAME_WEIGHT * named + FUSE_WEIGHT * rrf[u.hit])
        u.why = (f"{h.kind}#{u.hit}", f"dense:{d:.2f}", f"lex:{x:.2f}", f"name:{named:.2f}", f"rrf:{rrf[u.hit]:.3f}")
        if dated and holds_date(u.text, topic[h.video_id]):  # asked when: a moment with a date (core.answer.expects)
            u.score += ANSWER_WEIGHT
            u.why += ("date",)
        if meant and meant.get(h.video_id):  # a video in another language its title names by meaning
            u.score += TOPIC_WEIGHT * meant[h.video_id]
            u.why += (f"meant:{meant[h.video_id]:.2f}",)
        on_cover = share_within(u.start, u.end, covers[h.video_id]) if covers.get(h.video_id) else 0.0
        if titles.get(h.video_id) and TITLE_WEIGHT:
            restate = float(u.vector @ title_vecs[h.video_id])
            if lang[h.video_id] not in ENGLISH:  # its title, on the English side, cannot be compared:
                restate = max(restate, on_cover)  # its cover restates it
            u.score -= TITLE_WEIGHT * max(0.0, restate - TITLE_FLOOR)
            u.why += (f"title:{restate:.2f}",)
        if on_cover:
            on_cover *= discount(question, x)
            u.score -= COVER_WEIGHT * on_cover
            u.why += (f"cover:{on_cover:.2f}",) if on_cover else ()
    top: dict[int, Unit] = {}
    for u in units:
        if u.hit not in top or u.score > top[u.hit].score:
            top[u.hit] = u
    of_hit: dict[int, list[Unit]] = {}
    for u in units:
        of_hit.setdefault(u.hit, []).append(u)
    focus = {i: _focus(t, of_hit[i]) for i, t in top.items()}
    moments = [(Hit(hits[i].video_id, u.start, u.end, u.text, hits[i].kind, u.score), u.why, focus[i])
               for i, u in sorted(top.items())]

    scored: list[Moment] = []
    of_video: dict[str, list[int]] = {}
    for i, (hit, _, _) in enumerate(moments):
        of_video.setdefault(hit.video_id, []).append(i)
    for i, (hit, why, at) in enumerate(moments):
        agree = max((o.score for j in of_video[hit.video_id] if j != i and (o := moments[j][0]).kind != hit.kind
                     and _overlaps(hit.start, hit.end, o.start, o.end, 0.0)), default=0.0)
        score = hit.score + AGREE_WEIGHT * max(agree, 0.0)
        for rank, f in enumerate(frame_hits):
            if f.video_id == hit.video_id and _overlaps(hit.start, hit.end, f.start, f.end):
                score += FRAME_WEIGHT / (RRF_K + rank)
                why += (f"frame#{rank}",)
                break
        scored.append(Moment(Hit(hit.video_id, hit.start, hit.end, hit.text, hit.kind, score), why, at))

    scored.sort(key=lambda m: -m.hit.score)
    kept: list[Moment] = []
    for m in scored:
        if not any(o.hit.video_id == m.hit.video_id and _overlaps(m.hit.start, m.hit.end, o.hit.start, o.hit.end, 0.0)
                   for o in kept):
            kept.append(m)
        if len(kept) == keep:
            break
    return kept


def _context(hits: list[Hit], dense_keys: set[tuple[str, str, float, float]], units: list[Unit],
             dense: list[float]) -> list[float]:
    """Each hit's similarity as a whole: the dense search's score, or — for a hit that came from
    words or from naming, whose chunk vector was not searched — its best unit's."""
    best: dict[int, float] = {}
    for u, d in zip(units, dense, strict=True):
        best[u.hit] = max(best.get(u.hit, d), d)
    return [float(h.score) if hit_key(h) in dense_keys else best.get(i, 0.0) for i, h in enumerate(hits)]


def _topic(title: str, language: str) -> set[str]:
    """A title's words as a video's passages are stemmed: its topic, present on every slide. Its
    numbers too ("1903" of "Le Tour de France 1903", "2010" of "World Cup 2010"): they name the
    video, not a moment in it."""
    words = {t for t in name_tokens(title) if t.isalpha() or t.isdigit()}
    return words if language in ENGLISH else words | {t for t in tokens(title, language) if t.isalpha()}


def _focus(top: Unit, siblings: list[Unit]) -> tuple[float, float] | None:
    """The span of the best unit inside `top` that is shorter than it (one segment of a pair),
    or None when `top` has none."""
    inner = [u for u in siblings if top.start - 0.01 <= u.start and u.end <= top.end + 0.01
             and u.end - u.start < top.end - top.start - 0.01]
    if not inner:
        return None
    best = max(inner, key=lambda u: u.score)
    return (best.start, best.end)


def lexical_scores(question: str, docs: list[str], ignore: set[str] | frozenset[str] = frozenset(),
                   ignore_each: list[set[str]] | None = None, languages: list[str] | None = None) -> list[float]:
    """For each doc, the IDF-weighted share of the question's words it contains (0..1). IDF is
    taken over `docs`, so words many candidates share count for little; the words of `ignore`
    count for no doc, and those of `ignore_each[i]` (doc i's own video's title: the topic it
    shares with every other moment of that video) not for doc i. `languages[i]` is doc i's
    language (English when not given): its words are stemmed in it, and the question's in every
    language of the docs, one word counting once however it is stemmed."""
    langs = languages or ["en"] * len(docs)
    groups = list(dict.fromkeys(g for g in stems(question, tuple(dict.fromkeys(["en", *langs])))
                                if not g & ignore))
    if not groups or not docs:
        return [0.0] * len(docs)
    sets = [tokens(d, x) for d, x in zip(docs, langs, strict=True)]
    if ignore_each is not None:
        sets = [d - skip for d, skip in zip(sets, ignore_each, strict=True)]
    n = len(docs)
    idf = {g: math.log(1 + n / (1 + sum(bool(g & d) for d in sets))) for g in groups}
    if ignore_each is None:
        total = sum(idf.values()) or 1.0
        return [sum(idf[g] for g in groups if g & d) / total for d in sets]
    # A word ignored for a doc counts on neither side of its share: a question that names the
    # video by a title word ("... of photosynthesis?") is not scored lower on that video's slides
    # for a word none of them may count, while other videos' docs still miss it.
    out = []
    for d, skip in zip(sets, ignore_each, strict=True):
        total = sum(v for g, v in idf.items() if not g & skip) or 1.0
        out.append(sum(idf[g] for g in groups if g & d) / total)
    return out

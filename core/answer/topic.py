"""Which video in another language a question is about when it names none by its words.

"Which emperor built the Colosseum?" names the video "Il Colosseo" as plainly as "in the Colosseo
video" would, but in another language: `core.answer.naming` reads a title by its words, and
"colosseum" is not "colosseo". Without a name, the moment is found by its passages alone, where an
English question meets an Italian passage only through the multilingual half of its vector, at
some cost to the score against English passages that share its words ("built", "hold").

The question's vector already holds that multilingual half wherever the channel has a video in
another language (a `bilingual` text embedder: `BilingualEmbedder.embed_query`), so each such
video's title is embedded on the multilingual side once (and kept), and its inner product with
the question — multilingual-e5's cosine moved onto MiniLM's scale, as a passage's is — says how
well the question's topic matches the title's across languages, at no cost per question beyond
one product per candidate video.
A video whose title matches above TOPIC_FLOOR gains up to TOPIC_WEIGHT on its units, in full from
TOPIC_FULL. English videos are left as they are: their titles are read by their words already.
A question that names a video by words (a naming phrase, a title phrase) is left to that name.

The moment that answers is then found within that video. The first stage searches the whole
channel, where an English question meets a Spanish slide only weakly, so it often brings the
video's cover and a neighbour but not "Patrimonio — UNESCO, 2010" for "When was flamenco made a
world heritage?". The video whose title the question meets best, at EXPAND_AT or above, gives
every unit of it as a candidate (`meant_video`), as a video named by words does: one catalog
read, never one per candidate video.
The floor and the full mark are on BilingualEmbedder's scale: with one embedder for every
language (TEXT_MULTILINGUAL=off beside a multilingual TEXT_EMBEDDER; its `bilingual` is False)
nothing is added.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np

from core.answer.naming import Naming
from core.engines.text import ENGLISH, TextEmbedder
from core.models import Hit
from core.store.scoped import ScopedStore

# eval/naming6 (tune): recall@1 0.833 → 0.900, "asked in English" 0.556 → 0.778; eval/naming5,
# eval/languages and the shared set answer every question as before.
TOPIC_WEIGHT = 0.3
# A title the question is about meets it at ~0.4-0.9; an unrelated one mostly below 0.3, though a
# short title can reach ~0.45 ("La Tomatina de Buñol" for "Where do I put the jack?"), hence a
# floor, and a share that only grows above it.
TOPIC_FLOOR = 0.35
TOPIC_FULL = 0.65
# The title meant best, at EXPAND_AT or above, gives every unit of its video as a candidate. English
# questions about videos in other languages, pooled (eval/pooled.py, 82): recall@1 0.829 → 0.854,
# recall@3 0.927 → 0.976, frame 0.805 → 0.841, keywords 0.805 → 0.890 (at 0.65: 0.829 / 0.951 /
# 0.817 / 0.854; at 0.5: 0.841 / 0.976 / 0.829 / 0.890); eval/naming6 (tune) answers as before. Of
# the questions naming no video by words whose best title meets them at 0.4 or more, 3 of 55 are
# about another (English) video: "Where do I put the jack?" meets "La Tomatina de Buñol" at 0.43;
# its units join the candidates with a share of 0.27 and the tyre video still answers.
EXPAND_AT = 0.4


def named_by_words(naming: Naming) -> bool:
    """Whether the question names a video by a naming phrase or a title phrase."""
    return bool(naming.phrases or naming.titled)


def other_language(video_languages: dict[str, str], vids: list[str], text: TextEmbedder | None = None) -> list[str]:
    """The videos of `vids` heard in a language other than English, when `text` (if given) is
    a bilingual embedder (`TextEmbedder.bilingual`), on whose scale the floor is set."""
    if text is not None and not text.bilingual:
        return []
    return [v for v in vids if video_languages.get(v, "") not in ENGLISH]


def topic_scores(qv: np.ndarray, title_vecs: dict[str, np.ndarray]) -> dict[str, float]:
    """For each video, how well the question's vector meets its title's multilingual vector."""
    return {v: float(vec @ qv) for v, vec in title_vecs.items()}


def topic_shares(scores: dict[str, float]) -> dict[str, float]:
    """For each video, the share (0..1) of TOPIC_WEIGHT its units gain: how far its `topic_scores`
    lies above TOPIC_FLOOR, in full from TOPIC_FULL."""
    span = TOPIC_FULL - TOPIC_FLOOR
    return {v: min(1.0, max(0.0, (s - TOPIC_FLOOR) / span)) for v, s in scores.items()}


def meant_video(scores: dict[str, float]) -> str | None:
    """The video whose title the question meets best, at EXPAND_AT or above (`topic_scores`):
    meant as plainly as a title phrase names one, so every unit of it is a candidate, as a named
    video's are, and the moment that answers is found within it even when the first stage, over
    the whole channel, brought only its neighbours."""
    best = max(scores.items(), key=lambda vs: vs[1], default=None)
    return best[0] if best is not None and best[1] >= EXPAND_AT else None


# ---- a video meant by its content ---------------------------------------------------------------
# A title says little of what a video holds: "Why were the brothers fired as professors?" meets
# "Die Brüder Grimm" at 0.09, an English lecture's passages nearer still, and the first stage
# brings only those. So each ready video in another language is also scored by its content: the
# mean of its CONTENT_TOP best units' inner products with the question (their stored vectors, on
# the multilingual side: the same scale as a title's), read once a video and kept in the store's
# memo. The question is about it when that content beats the best English video's by CONTENT_MARGIN
# or more: its units become candidates (as the title's video's do) and gain a share of TOPIC_WEIGHT,
# in full CONTENT_FULL above the margin.
# Like is compared with like: an English video's content is scored the same way, its best dense
# hits' texts embedded on the multilingual side (`english_across`). Against the best English
# chunk's own (MiniLM) score, the right video's content was never 0.08 above it for five held-out
# questions (+0.06 to -0.18), while "How far do I open the bleed valve?" met the French canal
# lecture 0.15 above its English answer. On one scale, over the 212 questions naming no video of
# eval/languages and eval/naming to eval/naming9: the content the question meets best is the right
# video's for 114 of those about a video in another language, 105 of them 0.08 or more above the
# best English video (the other 9 from -0.20 to +0.077); of those about an English video, none
# reaches +0.08 (the bleed valve +0.076, then -0.17).
# English questions about videos in other languages, pooled (eval/pooled.py, 82): recall@1 0.878
# → 0.902, recall@3 0.976 → 0.988, frame 0.866 → 0.890, keywords 0.890 → 0.915 (CONTENT_FULL 0.3:
# 0.890 / 0.988 / 0.878 / 0.915; 0.05: 0.902 / 0.988 / 0.890 / 0.927); eval/naming8 and naming9
# recall@1 0.867 → 0.900 each. Cost: at most ENGLISH_HITS short texts embedded by multilingual-e5
# a question, each kept in the store's memo.
CONTENT_TOP = 2
CONTENT_MARGIN = 0.08
ENGLISH_HITS = 6  # of the first stage's 8 dense hits
CONTENT_FULL = 0.12
CONTENT_TITLE = 0.1
PROFILE_UNITS = 120  # units of a video read, the first in time order: a lecture's slides and what is said over them
PROFILE_VIDEOS = 32  # videos profiled at most: the first stage's first, then by id (memory: ~185 KB a video)


# A video's units: (their vectors' size, the columns where any of them is not 0, those columns a row a unit)
Profile = tuple[int, np.ndarray, np.ndarray]


def profile(vecs: list[np.ndarray]) -> Profile:
    """A video's unit vectors without the columns that are 0 in all of them: a passage in another
    language has nothing on the English side of the bilingual space (BilingualEmbedder), half the
    vector. Empty when there are none, or vectors of two sizes (a model changed meanwhile)."""
    if not vecs or len({v.shape for v in vecs}) != 1:
        return 0, np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    m = np.stack(vecs).astype(np.float32)
    cols = np.flatnonzero(np.any(m != 0.0, axis=0))
    return m.shape[1], cols, np.ascontiguousarray(m[:, cols])


async def profiles(store: ScopedStore, vids: list[str], versions: dict[str, float]) -> dict[str, Profile]:
    """Each ready video's first PROFILE_UNITS unit vectors (`profile`): those not kept yet read in
    one statement, and kept in the store's memo by the video's version."""
    out: dict[str, Profile] = {}
    key = ("profile", PROFILE_UNITS)
    for v in vids:
        if (kept := store.memo.get((store.key, v, versions[v], key))) is not None:
            out[v] = kept
    todo = [v for v in vids if v not in out]
    read = await store.units_within([(v, 0.0, 1e12, None, PROFILE_UNITS) for v in todo]) if todo else []
    for v, found in zip(todo, read, strict=True):
        out[v] = profile([vec for _, vec in found])
        store.memo.put((store.key, v, versions[v], key), out[v])
    return out


def top_mean(scores: np.ndarray) -> float:
    """The mean of the best CONTENT_TOP scores: a video's content, on either side of the comparison."""
    return float(np.sort(scores)[::-1][:CONTENT_TOP].mean())


def content_scores(qv: np.ndarray, kept: dict[str, Profile]) -> dict[str, float]:
    """For each video, the mean of its best CONTENT_TOP units' inner products with the question
    (none for a video whose vectors are not of the question's size)."""
    return {v: top_mean(m @ qv[cols]) for v, (dim, cols, m) in kept.items() if m.size and dim == qv.shape[0]}


def by_content(content: dict[str, float], titles: dict[str, float], english: float) -> tuple[str, float] | None:
    """The video whose content the question meets best (its title's meet, `topic_scores`, adding
    CONTENT_TITLE of itself where it is above 0: two videos' content often meet a question alike),
    with its share (0..1) of TOPIC_WEIGHT, when its content beats `english` (the best English
    video's content on the same scale, `english_across`) by CONTENT_MARGIN or more."""
    best = max(content, key=lambda v: content[v] + CONTENT_TITLE * max(0.0, titles.get(v, 0.0)), default=None)
    if best is None or content[best] - english < CONTENT_MARGIN:
        return None
    return best, min(1.0, (content[best] - english - CONTENT_MARGIN) / CONTENT_FULL)


async def english_across(store: ScopedStore, qv: np.ndarray, dense: list[Hit], video_languages: dict[str, str],
                         versions: dict[str, float], across_side: Callable[[list[str]], Awaitable[np.ndarray]]) -> float:
    """The best English video's content as the other languages' content is scored (`content_scores`):
    its ENGLISH_HITS best dense hits' texts embedded on the multilingual side (`across_side`; each
    kept in the store's memo by its video's version), the mean of its best CONTENT_TOP; -1 if none."""
    hits = [h for h in dense if video_languages.get(h.video_id, "") in ENGLISH][:ENGLISH_HITS]
    if not hits:
        return -1.0
    keys = [(store.key, h.video_id, versions.get(h.video_id, 0.0), ("across", h.start, h.end, h.kind)) for h in hits]
    vecs = [store.memo.get(k) for k in keys]
    todo = [i for i, v in enumerate(vecs) if v is None or v.shape != qv.shape]
    if todo:
        for i, v in zip(todo, await across_side([hits[i].text for i in todo]), strict=True):
            vecs[i] = v
            store.memo.put(keys[i], v)
    per: dict[str, list[float]] = {}
    for h, v in zip(hits, vecs, strict=True):
        per.setdefault(h.video_id, []).append(float(v @ qv))
    return max(top_mean(np.array(s)) for s in per.values())


async def across_languages(store: ScopedStore, qv: np.ndarray, naming: Naming, titles: dict[str, str],
                           video_languages: dict[str, str], versions: dict[str, float], text: TextEmbedder,
                           hits: list[Hit], dense: list[Hit],
                           title_vectors: Callable[[list[str]], Awaitable[list[np.ndarray]]],
                           across_side: Callable[[list[str]], Awaitable[np.ndarray]]) -> tuple[dict[str, float], str | None]:
    """For a question that names no video by words: each video's share of TOPIC_WEIGHT (a
    candidate in another language by its title, `topic_shares`; the one its content points to,
    `by_content`), and the video meant, whose every unit becomes a candidate (by title,
    `meant_video`, else by content). `title_vectors` embeds titles on the multilingual side."""
    if not TOPIC_WEIGHT or named_by_words(naming):
        return {}, None
    across = [v for v in other_language(video_languages, sorted({h.video_id for h in hits}), text) if titles.get(v)]
    ready = other_language(video_languages, [v for v in versions if titles.get(v)], text)
    ready = sorted(ready, key=lambda v: (v not in across, v))[:PROFILE_VIDEOS]
    both = sorted(set(across) | set(ready))
    meets = topic_scores(qv, dict(zip(both, await title_vectors([titles[v] for v in both]), strict=True))) if both else {}
    shares = topic_shares({v: meets[v] for v in across})
    chosen = meant_video({v: meets[v] for v in across})
    english = await english_across(store, qv, dense, video_languages, versions, across_side) if ready else -1.0
    if ready and (pick := by_content(content_scores(qv, await profiles(store, ready, versions)), meets, english)):
        shares[pick[0]] = max(shares.get(pick[0], 0.0), pick[1])
        chosen = chosen or pick[0]
    return shares, chosen

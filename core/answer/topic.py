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

import numpy as np

from core.answer.naming import Naming
from core.engines.text import ENGLISH, TextEmbedder

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

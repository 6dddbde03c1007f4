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


def named_by_words(naming: Naming) -> bool:
    """Whether the question names a video by a naming phrase or a title phrase."""
    return bool(naming.phrases or naming.titled)


def other_language(video_languages: dict[str, str], vids: list[str], text: TextEmbedder | None = None) -> list[str]:
    """The videos of `vids` heard in a language other than English, when `text` (if given) is
    a bilingual embedder (`TextEmbedder.bilingual`), on whose scale the floor is set."""
    if text is not None and not text.bilingual:
        return []
    return [v for v in vids if video_languages.get(v, "") not in ENGLISH]


def topic_shares(qv: np.ndarray, title_vecs: dict[str, np.ndarray]) -> dict[str, float]:
    """For each video, the share (0..1) of TOPIC_WEIGHT its units gain: how far the question's
    vector meets its title's multilingual vector above TOPIC_FLOOR, in full from TOPIC_FULL."""
    span = TOPIC_FULL - TOPIC_FLOOR
    return {v: min(1.0, max(0.0, (float(vec @ qv) - TOPIC_FLOOR) / span)) for v, vec in title_vecs.items()}

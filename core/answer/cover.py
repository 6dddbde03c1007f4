"""A video's cover: the slide that shows its title (and what is said over it), which repeats a
question's topic without answering it — unless the question asks about the video itself ("what
is this video about?", "which episode covers X?"). What a cover says beyond the title may answer
a fact ("Guest: Prof. Okafor", "1230 km"), but its title words never do: a moment on a cover
keeps only the evidence of the question's other words it holds, and an explaining question (why,
how, what happens; in any language vidrag transcribes) is never answered there. Retrieval
discounts a moment by the share of its time spent on a cover (core.answer.retrieve,
COVER_WEIGHT), times `discount`.

A cover is found by its words, in any language: the on-screen text spans headed by a title word
that hold the most of the video's title words, at least COVER_SHARE of them (the title slide; a
closing slide that shows the title again).
"""

from __future__ import annotations

import functools
import re

from core.answer.naming import name_tokens
from core.answer.reads import COVER_UNITS
from core.store.scoped import ScopedStore
from core.text.words import STOPS, stem

COVER_SHARE = 1 / 2  # of the title's words, on the span that repeats the most of them
_FUNCTION = frozenset(w for stop in STOPS.values() for w in stop) | {stem(w) for stop in STOPS.values() for w in stop}

# Explaining questions in the languages vidrag transcribes. "why" and its kind ask for an
# explanation wherever they stand ("According to the 737 video, why…", "Sai dirmi perché…"), and
# so does English "how" ("Any idea how…"); the other languages' words for "how" (come, cómo, wie,
# comment) also mean "as" or "like", so they count at the start of a clause only. None counts
# before a quantity ("how many", "wie viele"…: a cover may well say how long or how many).
_WHY = (r"why|perch[eé]|por\s*qu[eé]|porque|warum|wieso|weshalb|weswegen|pourquoi|explain\w*|"
        r"spieg(?:a|are|ami|aci|ate)|expl[ií]ca\w*|expliqu\w*|erkl[aä]r\w*")
_HOW = r"how|come|c[oó]mo|wie|comment"
_NOT_HOW = (r"many|much|long|often|far|old|big|high|tall|deep|fast|large|small|soon|hot|cold|heavy|"  # en
            r"si\s+chiama|"  # it: "come si chiama" asks a name
            r"viele?|lange?|oft|alt|gro[sß]|hoch|weit|schnell|schwer|sp[aä]t|hei[sß]t|"  # de
            r"se\s+llama|se\s+dice|"  # es
            r"s'appelle|dit-on")  # fr
_HAPPENS = (r"what\s+(?:happen|caus|start|led|lead|made|make)|"  # en
            r"(?:che\s+)?cosa\s+(?:succede|accade|capita|caus|provoc)|"  # it
            r"qu[eé]\s+(?:pasa|ocurre|sucede|caus|provoc)|"  # es
            r"was\s+(?:passiert|geschieht|verursacht|bewirkt)|"  # de
            r"(?:que|qu'est-ce\s+qui)\s+(?:se\s+passe|cause|provoque)|"  # fr
            r"o\s+que\s+(?:acontece|causa)")  # pt
_EXPLAINS = re.compile(rf"\b(?:{_WHY})\b|\bhow\b(?!\s+(?:{_NOT_HOW})\b)|(?:^|[,;:]\s*|\b(?:explain|know|tell\s+me|"
                       rf"show\s+me|understand)\s+)\W*(?:(?:{_HOW})\b(?!\s+(?:{_NOT_HOW})\b)|(?:{_HAPPENS}))",
                       re.IGNORECASE)
# Questions about a video as a whole: what it is about, which video or episode covers something,
# its title or topic. Its cover is a fair answer to them.
_ABOUT_VIDEO = re.compile(
    r"\b(?:what(?:'s|\s+is|\s+was)\s+(?:this|that|the)\b[^?]*\babout\W*$|"
    r"(?:which|what)\s+(?:video|episode|lecture|talk|clip|recording)s?\b|"
    r"(?:title|topic|overview|subject)\s+of\b|"
    r"di\s+(?:che\s+)?cosa\s+parla|de\s+qu[eé]\s+(?:trata|habla)|worum\s+geht|de\s+quoi\s+(?:parle|traite))",
    re.IGNORECASE)


def explains(question: str) -> bool:
    """Whether a question asks for an explanation — why, how (not how many/much/long…), what
    happens, what caused or started; perché / come, por qué / cómo, warum / wie, pourquoi /
    comment — which a video's cover does not give, however much of the question's topic it
    repeats."""
    return bool(_EXPLAINS.search(question))


def about_the_video(question: str) -> bool:
    """Whether a question asks about a video as a whole (what it is about, which one covers X, its
    title): the one kind of question its cover answers by repeating the title."""
    return bool(_ABOUT_VIDEO.search(question))


def discount(question: str, beyond: float) -> float:
    """How much of its cover penalty a moment on a cover takes for `question` (0..1), where
    `beyond` (0..1) is the evidence it holds beyond the title: the share of the question's other
    words it contains. None for a question about the video itself; all of it for an explaining
    question; otherwise what its words beyond the title leave unanswered."""
    if about_the_video(question):
        return 0.0
    return 1.0 if explains(question) else max(0.0, 1.0 - beyond)


@functools.lru_cache(maxsize=8192)  # a channel's slides come back question after question
def _words(text: str) -> frozenset[str]:
    """Title-comparable words without the function words of any language vidrag transcribes
    ("Die Geschichte der Eisenbahn" and "Die Eisenbahn" share "eisenbahn", not "die")."""
    return frozenset(t for t in name_tokens(text) if t not in _FUNCTION)


def covers(title: str, shown: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    """Of a video's on-screen text spans (start, end, text), its cover spans: those whose heading
    (first line) holds a title word and that repeat the most of the title's words, at least
    COVER_SHARE of them — the title slide, and a closing slide that shows the title again. Not a
    slide whose lines happen to hold the title's words under a heading of its own ("Buffers —
    weak acid + its conjugate base resists changes in pH" in "Acids, bases and pH"), nor one
    that holds fewer of them than the cover ("Definitions — acid: proton donor, base: …")."""
    want = _words(title)
    held = [(len(want & _words(text)), start, end) for start, end, text in shown
            if want & _words(text.strip().split("\n", 1)[0])]
    most = max((n for n, _, _ in held), default=0)
    if not want or most < COVER_SHARE * len(want):
        return []
    return [(start, end) for n, start, end in held if n == most]


async def cover_spans(store: ScopedStore, vids: list[str], titles: dict[str, str],
                      versions: dict[str, float] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Each video's cover spans (`covers`), from its on-screen text (the first COVER_UNITS spans).
    A video of `versions` (id → `Video.created`: the ready ones) is read once and its spans kept in
    the store's memo until it is forgotten; the others' (an indexing video's grow) are read each
    time. What is read is read in one statement."""
    versions = versions or {}
    out: dict[str, list[tuple[float, float]]] = {}
    for v in vids:
        if v in versions and (kept := store.memo.get((store.key, v, versions[v], ("cover", titles.get(v, ""))))) is not None:
            out[v] = kept
    todo = [v for v in vids if v not in out]
    shown = await store.on_screen(todo, COVER_UNITS) if todo else []
    for v, segs in zip(todo, shown, strict=True):
        out[v] = covers(titles.get(v, ""), [(seg.start, seg.end, seg.text) for seg in segs])
        if v in versions:
            store.memo.put((store.key, v, versions[v], ("cover", titles.get(v, ""))), out[v])
    return out


def share_within(start: float, end: float, spans: list[tuple[float, float]]) -> float:
    """The share of [start, end] inside any of `spans` (a point counts whole or nothing)."""
    if end - start <= 1e-6:
        return 1.0 if any(a <= start <= b for a, b in spans) else 0.0
    inside = sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)
    return min(1.0, inside / (end - start))

"""Which of a channel's videos a question names, if any.

People name a video the way they remember it: "in the part 2 video…", "episode three:",
"in the one about compost", "video 3f9a2c…: …", or just a word of its title ("in the bread
video"). In a channel with a series, that name is the one thing that tells "part 2" from
"part 3" — their slides share vocabulary, layout and half their title.

A title word counts by how well it tells the channel's videos apart: its IDF over the channel's
titles (a word every title has counts for nothing, a word one title has counts most). Words in a
*naming phrase* (the leading "In the part 2 video," or "Episode 3:", a trailing "in the bread
video", "the one about X") count in full; other question words that happen to be title words
count for less, since "which matrix leaves every vector unchanged?" names no video even in a
channel with a video called "Vectors". Numbers count only inside a naming phrase. Numbering
is read the usual ways: "part two", "the second video", "Ep. 2", "(2/3)", "2 of 3".

The naming phrase is also what `content()` strips from the question, so the moment within the
named video is found by what is asked, not by the words that named it (those match its title
slide best).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.text.words import STOP, stem

IMPLICIT = 0.5  # weight of a title word used outside a naming phrase
_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUMBERS |= {w: str(i) for i, w in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split())}
_NUMBERS |= {f"{i}{s}": str(i) for i in range(1, 100) for s in ("st", "nd", "rd", "th")}
_MARKERS = {"ep": "episode", "eps": "episode", "episode": "episode", "episodes": "episode", "pt": "part",
            "part": "part", "parts": "part", "lesson": "lesson", "lecture": "lecture", "chapter": "chapter",
            "ch": "chapter", "vol": "volume", "volume": "volume", "session": "session", "week": "week",
            "module": "module", "unit": "unit", "day": "day"}
_FILLER = frozenset("video videos clip one talk recording upload uploaded".split())
_OF_TOTAL = re.compile(r"\b(\d+)\s*(?:/|of)\s*\d+\b")  # "(2/3)", "2 of 3": the part is the first number
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# A naming phrase: a short leading clause ("In the part 2 video,", "Episode 3:", "Video ab12:"),
# a trailing "in the … video", or "the video/one about …" anywhere (up to a comma or the end).
_LEAD = re.compile(r"^\s*([^,:;?]{1,60}?)\s*[,:;]\s+(?=\S)")
# A leading clause that asks ("Why did the Republic fall, in short?") is the question, not a name.
_ASKS = re.compile(r"\s*(?:why|what|how|when|where|who|whom|whose|which|is|are|was|were|do|does|did|can|"
                   r"could|should|would|will|has|have|had|tell|explain|give|list|name)\b", re.IGNORECASE)
_INSIDE = re.compile(r"\b(?:in|from|of)\s+the\s+([^,;?]{1,50}?)\s+(?:video|episode|lecture|talk|clip)\b",
                     re.IGNORECASE)
_ABOUT = re.compile(r"\b(?:in\s+|from\s+)?the\s+(?:video|one|episode|lecture|talk|clip)\s+(?:about|on)\s+"
                    r"([^,;?]{1,50})", re.IGNORECASE)


def name_tokens(text: str) -> list[str]:
    """Title-comparable tokens: numbering to digits and one word per marker ("Ep."→episode),
    other words stemmed, stop words and filler ("video", "one") dropped."""
    text = _OF_TOTAL.sub(r"\1", text.lower())
    out: list[str] = []
    for w in _WORD.findall(text):
        if w in _NUMBERS:
            out.append(_NUMBERS[w])
        elif w in _MARKERS:
            out.append(_MARKERS[w])
        elif w.isdigit():
            out.append(str(int(w)))
        elif w not in STOP and w not in _FILLER and len(w) > 1:
            out.append(stem(w))
    return out


@dataclass(frozen=True)
class Naming:
    """What a question says about which video it is about."""

    scores: dict[str, float]  # video id -> naming strength (IDF units); only videos named at all
    phrases: tuple[str, ...]  # the naming phrases found in the question
    content: str  # the question without them: what is asked

    def best(self) -> tuple[str, float] | None:
        return max(self.scores.items(), key=lambda kv: kv[1]) if self.scores else None


class Titles:
    """The channel's titles, with each title word's IDF over them."""

    def __init__(self, titles: dict[str, str]) -> None:
        self.titles = titles
        self.tokens = {vid: set(name_tokens(t)) for vid, t in titles.items()}
        n = len(titles)
        df: dict[str, int] = {}
        for toks in self.tokens.values():
            for t in toks:
                df[t] = df.get(t, 0) + 1
        # a word in every title tells none apart; with one video there is nothing to tell apart
        self.idf = {t: math.log(n / d) for t, d in df.items()} if n > 1 else {}

    def phrases(self, question: str) -> list[tuple[int, int]]:
        """Character spans of the question's naming phrases: those that use a title word or a
        video id (a leading clause that merely sets the scene, "In Python," counts only if
        "Python" tells videos apart)."""
        spans: list[tuple[int, int]] = []
        m = _LEAD.match(question)
        if m and len(m.group(1).split()) <= 8 and not _ASKS.match(m.group(1)) and self._names(m.group(1)):
            spans.append(m.span(1))
        for rx in (_INSIDE, _ABOUT):
            for m in rx.finditer(question):
                if self._names(m.group(1)) and not any(a <= m.start() < b for a, b in spans):
                    spans.append(m.span())
        return spans

    def _names(self, phrase: str) -> bool:
        toks = set(name_tokens(phrase))
        return bool(toks & set(self.idf) and any(self.idf.get(t, 0) > 0 for t in toks)) or \
            any(vid.lower() in phrase.lower() for vid in self.titles if len(vid) >= 6)

    def naming(self, question: str) -> Naming:
        spans = self.phrases(question)
        named = " ".join(question[a:b] for a, b in spans)
        rest = question
        for a, b in sorted(spans, reverse=True):
            rest = rest[:a] + " " + rest[b:]
        explicit = set(name_tokens(named))
        implicit = {t for t in name_tokens(rest) if not t.isdigit() and t not in _MARKERS.values()} - explicit
        scores: dict[str, float] = {}
        low = question.lower()
        for vid, toks in self.tokens.items():
            s = sum(self.idf.get(t, 0.0) for t in explicit & toks)
            s += IMPLICIT * sum(self.idf.get(t, 0.0) for t in implicit & toks)
            if len(vid) >= 6 and vid.lower() in low:  # a video id names it outright
                s += 2 * math.log(max(len(self.titles), 2))
            if s > 0:
                scores[vid] = s
        content = re.sub(r"^[\s,:;.-]+", "", " ".join(rest.split())) if spans else question
        phrases = tuple(question[a:b].strip() for a, b in spans)
        return Naming(scores, phrases, content if len(content.split()) >= 2 else question)


def title_from_source(source: str) -> str:
    """The title a video is filed under until its download names it: the link's or path's last
    part (without a query), else the source itself, at most 120 characters."""
    name = source.strip().rstrip("/").split("/")[-1].split("?")[0]
    return name[:120] or source[:120]

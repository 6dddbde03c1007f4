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
channel with a video called "Vectors". Numbering is read the usual ways: "part two", "the
second video", "Ep. 2", "(2/3)", "2 of 3".

People also name things with numbers: Apollo 11, iPhone 15, Python 3.12, WWDC 2024, World War
II, Henry the Eighth, season 2. A *title phrase* — a title word beside a number, version, year
or roman numeral, in digits or in words — names its video wherever it stands in the question, in
full, and a sibling whose title pairs the same word with another number ("Apollo 13" beside
"Apollo 11") is not named at all. A bare number outside such a phrase is the question's content
("what happened in 1969?", "2 cups"), except a year or version a title carries, which hints as a
title word does.

The naming phrase, and a title phrase, is also what `content` strips from the question, so the
moment within the named video is found by what is asked, not by the words that named it (those
match its title slide best).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.text.words import STOP, stem, tokens

IMPLICIT = 0.5  # weight of a title word used outside a naming phrase
_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
    "sixteen seventeen eighteen nineteen".split()
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_CARDINALS = {w: i for i, w in enumerate(_UNITS)} | _TENS
_ORDINALS = {w: i for i, w in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split())}
_MARKERS = {"ep": "episode", "eps": "episode", "episode": "episode", "episodes": "episode", "pt": "part",
            "part": "part", "parts": "part", "lesson": "lesson", "lecture": "lecture", "chapter": "chapter",
            "ch": "chapter", "vol": "volume", "volume": "volume", "session": "session", "week": "week",
            "module": "module", "unit": "unit", "day": "day", "season": "season", "seasons": "season"}
_MARKER_WORDS = frozenset(_MARKERS.values())
_FILLER = frozenset("video videos clip one talk recording upload uploaded".split())
_OF_TOTAL = re.compile(r"\b(\d+)\s*(?:/|of)\s*\d+\b")  # "(2/3)", "2 of 3": the part is the first number
# a version or decimal ("3.12"), an ordinal in digits ("2nd"), a number, a word, one mark
_TOKEN = re.compile(r"\d+(?:\.\d+)+|\d+(?:st|nd|rd|th)\b|\d+|[^\W\d_]+|[^\w\s]", re.UNICODE | re.IGNORECASE)
# Roman numerals as titles write them ("World War II", "Henry VIII", "Rocky IV"): I, V and X only
# (1-39), upper case, or lower case from two letters ("world war ii"); "I" alone only in upper case.
_ROMAN = re.compile(r"(x{0,3})(ix|iv|v?i{0,3})", re.IGNORECASE)
_ROMAN_VALUE = {"i": 1, "v": 5, "x": 10}
_JOINS = frozenset("-'’()[]")  # marks that leave two words side by side ("iPhone-15", "Henry VIII's")

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


@dataclass(frozen=True)
class _Tok:
    kind: str  # "word" (stemmed), "marker" (its canonical word), "num", "ord" (an ordinal), "stop", "break"
    value: str
    span: tuple[int, int] = (0, 0)  # where it stands in the text


def _roman(w: str) -> int | None:
    if not (w.isupper() or (len(w) >= 2 and w.islower())) or (w == "i" or not _ROMAN.fullmatch(w)):
        return None
    vals = [_ROMAN_VALUE[c] for c in w.lower()]
    return sum(-v if i + 1 < len(vals) and v < vals[i + 1] else v for i, v in enumerate(vals)) or None


def _spoken(run: list[int]) -> list[str]:
    """A run of spoken number words as the numbers it says: "twenty four" 24, "nineteen sixty nine"
    1969, "twenty twenty four" 2024, "three twelve" 3.12 (how versions are read out)."""
    chunks: list[int] = []
    for n in run:
        if chunks and chunks[-1] >= 20 and chunks[-1] % 10 == 0 and 0 < n < 10:
            chunks[-1] += n
        else:
            chunks.append(n)
    if len(chunks) == 2 and 10 <= chunks[0] <= 99 and 10 <= chunks[1] <= 99:
        return [str(chunks[0] * 100 + chunks[1])]
    if len(chunks) == 2 and 0 < chunks[0] < 10 and 0 < chunks[1] <= 99:
        return [f"{chunks[0]}.{chunks[1]}"]
    return [str(c) for c in chunks]


def _tokens(text: str) -> list[_Tok]:
    """The text as title-comparable tokens in order, with the marks that end a phrase kept as
    breaks: numbering to digits, roman and spelled-out numbers to digits, one word per marker
    ("Ep."→episode), other words stemmed; stop words and filler ("video", "one") kept as "stop"."""
    text = _OF_TOTAL.sub(lambda m: m.group(1).ljust(len(m.group(0))), text)  # same length: spans hold
    out: list[_Tok] = []
    run: list[int] = []
    run_span = [0, 0]

    def flush() -> None:
        out.extend(_Tok("num", n, (run_span[0], run_span[1])) for n in _spoken(run))
        run.clear()

    for m in _TOKEN.finditer(text):
        w, at = m.group(0), m.span()
        low = w.lower()
        if low in _CARDINALS and not (low == "one" and out and out[-1].value == "the"):  # "the one about…"
            if not run:
                run_span[0] = at[0]
            run.append(_CARDINALS[low])
            run_span[1] = at[1]
            continue
        if run and w in _JOINS:  # "twenty-four"
            continue
        if run:
            flush()
        if w[0].isdigit():
            if low[-2:] in ("st", "nd", "rd", "th"):
                out.append(_Tok("ord", str(int(low[:-2])), at))
            else:
                out.append(_Tok("num", w if "." in w else str(int(w)), at))
        elif not w[0].isalnum():
            dash = w in "-–—" and (text[m.start() - 1:m.start()].isspace() or text[m.end():m.end() + 1].isspace())
            after_marker = w == "." and out and out[-1].kind == "marker"  # "Ep. 2"
            if dash or not (w in _JOINS or after_marker):
                out.append(_Tok("break", w, at))
        elif low in _ORDINALS:
            out.append(_Tok("ord", str(_ORDINALS[low]), at))
        elif low in _MARKERS:
            out.append(_Tok("marker", _MARKERS[low], at))
        elif (r := _roman(w)) is not None:
            out.append(_Tok("num", str(r), at))
        elif low in STOP or low in _FILLER or len(low) < 2:
            out.append(_Tok("stop", low, at))
        else:
            out.append(_Tok("word", stem(low), at))
    if run:
        flush()
    return out


def name_tokens(text: str) -> list[str]:
    """Title-comparable tokens: numbering to digits and one word per marker ("Ep."→episode),
    other words stemmed, stop words and filler ("video", "one") dropped."""
    return [t.value for t in _tokens(text) if t.kind in ("word", "marker", "num", "ord")]


def phrase_tokens(text: str) -> set[str]:
    """The text's title phrases, as "word~number": a word beside a number, version, year or roman
    numeral ("Apollo 11", "Python 3.12", "WWDC 2024", "the 2024 keynote", "World War II", "season
    two"), an ordinal beside a marker ("the second season") or after "<word> the" ("Henry the
    Eighth"). In either order, so "the 2024 keynote" is the phrase of "Keynote 2024"; and a number
    pairs with each word of the name beside it (up to NAME_RUN words, up to a stop word or a
    mark), so "the 2010 World Cup" is "World Cup 2010" and "the 1903 Tour" is "Tour de France 1903"."""
    return set(_phrases(text))


NAME_RUN = 3  # words of a name beside its number ("Tour de France 1903")


def _phrases(text: str) -> dict[str, list[tuple[int, int]]]:
    """`phrase_tokens`, each with the character spans where it stands."""
    toks = _tokens(text)
    out: dict[str, list[tuple[int, int]]] = {}

    def add(word: _Tok, num: _Tok, first: _Tok) -> None:
        out.setdefault(f"{word.value}~{num.value}", []).append((min(first.span[0], num.span[0]),
                                                                max(word.span[1], num.span[1])))

    for i, t in enumerate(toks):
        if t.kind not in ("num", "ord"):
            continue
        kinds = ("marker",) if t.kind == "ord" else ("marker", "word")
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(toks) and toks[j].kind in kinds and abs(j - i) <= NAME_RUN:
                add(toks[j], t, toks[j])
                if toks[j].kind == "marker":  # "part 2", "season 1": the marker alone
                    break
                j += step
        if t.kind == "ord" and i >= 2 and toks[i - 1].value == "the" and toks[i - 2].kind in ("word", "marker"):
            add(toks[i - 2], t, toks[i - 2])
    return out


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` without `spans` (which may overlap), each replaced by a space."""
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    for a, b in reversed(merged):
        text = text[:a] + " " + text[b:]
    return text


def _contradicts(asked: set[str], title: set[str]) -> bool:
    """Whether a title pairs a word of the question's title phrases with another number and holds
    none of those phrases: the sibling that shares the word but not the number."""
    mine = {p.split("~")[0]: p for p in title if "~" in p}
    return bool(asked) and not asked & title and any(
        p.split("~")[0] in mine for p in asked)


def _marked(phrase: str) -> bool:
    """Whether a title phrase is a marker's ("part~2", "season~1") rather than a word's."""
    return phrase.split("~")[0] in _MARKER_WORDS


_SHORT_YEAR = re.compile(r"(?<!\w)['’](\d\d)\b")  # "'74", "’70": a year as people write it


def _with_short_years(phrases: set[str]) -> set[str]:
    """A title's phrases and, for each with a year of 1900-2099, the year's last two digits
    ("expo~1970" → also "expo~70"): "Expo 70" and "Eurovision '74" name the videos titled
    "Expo 1970" and "Eurovision 1974"."""
    short = set()
    for p in phrases:
        word, _, num = p.partition("~")
        if num.isdigit() and 1900 <= int(num) <= 2099:
            short.add(f"{word}~{num[2:]}")
    return phrases | short


def _short_years(text: str) -> set[str]:
    """The years an apostrophe shortens in `text` ("the '67 fair": 1967 or 2067), as bare
    years that hint at a title carrying one."""
    return {f"{c}{m.group(1)}" for m in _SHORT_YEAR.finditer(text) for c in ("19", "20")}


def _bare_name(t: str) -> bool:
    """Whether a question token outside a naming phrase may hint at a title: a word, a version
    ("3.12") or a year-sized number ("2019"); not a small number ("2 cups") nor a marker."""
    if t.isdigit():
        return int(t) >= 1000
    return t not in _MARKERS.values()


@dataclass(frozen=True)
class Naming:
    """What a question says about which video it is about."""

    scores: dict[str, float]  # video id -> naming strength (IDF units); only videos named at all
    phrases: tuple[str, ...]  # the naming phrases found in the question
    content: str  # the question without them: what is asked
    titled: tuple[str, ...] = ()  # title phrases ("apollo~11") the question holds, anywhere in it
    # videos the question rules out: siblings whose title pairs its title phrase's word with
    # another number ("Apollo 13" when "Apollo 11" is asked about)
    ruled_out: tuple[str, ...] = ()

    def best(self) -> tuple[str, float] | None:
        return max(self.scores.items(), key=lambda kv: kv[1]) if self.scores else None


class Titles:
    """The channel's titles, with the IDF over them of each title word and title phrase."""

    def __init__(self, titles: dict[str, str]) -> None:
        self.titles = titles
        # every phrase, for telling a sibling apart; only a word's phrases ("apollo~11") count as
        # names of their own: "part 2" is as much the cooking series' as the gardening one's
        self.pairs = {vid: _with_short_years(phrase_tokens(t)) for vid, t in titles.items()}
        self.tokens = {vid: set(name_tokens(t)) | {p for p in self.pairs[vid] if not _marked(p)}
                       for vid, t in titles.items()}
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
        toks = set(name_tokens(phrase)) | phrase_tokens(phrase)
        return any(self.idf.get(t, 0) > 0 for t in toks) or \
            any(vid.lower() in phrase.lower() for vid in self.titles if len(vid) >= 6)

    def naming(self, question: str) -> Naming:
        spans = self.phrases(question)
        named = " ".join(question[a:b] for a, b in spans)
        rest = question
        for a, b in sorted(spans, reverse=True):
            rest = rest[:a] + " " + rest[b:]
        located = _phrases(rest)
        around = set(located)
        # A numbered marker anywhere ("... in season 2?") names as it would in a naming phrase.
        explicit = set(name_tokens(named)) | phrase_tokens(named) | {w for p in around if _marked(p)
                                                                      for w in p.split("~")}
        implicit = ({t for t in name_tokens(rest) if _bare_name(t)} | _short_years(rest)) - explicit
        # A title phrase names its video wherever it stands ("Who flew the command module of
        # Apollo 11?"), in full: it is what tells "Apollo 11" from "Apollo 13", whose titles share
        # every other word. A phrase no title holds ("in 1969") names nothing.
        titled = {t for t in around if self.idf.get(t, 0) > 0} - explicit
        asked = {t for t in explicit | around if "~" in t}
        scores: dict[str, float] = {}
        ruled_out: list[str] = []
        # A sibling is ruled out only by a phrase another title holds: "Ubuntu twenty two" (read
        # "ubuntu~22") names neither "Ubuntu 22.04" nor "Ubuntu 24.04", and holds neither back.
        held_by_title = {p for p in asked if any(p in pairs for pairs in self.pairs.values())}
        low = question.lower()
        for vid, toks in self.tokens.items():
            if _contradicts(asked, self.pairs[vid]):  # "Apollo 13" asked, "Apollo 11" in this title
                if _contradicts(held_by_title, self.pairs[vid]):
                    ruled_out.append(vid)
                continue
            s = sum(self.idf.get(t, 0.0) for t in (explicit | titled) & toks)
            s += IMPLICIT * sum(self.idf.get(t, 0.0) for t in implicit & toks)
            if len(vid) >= 6 and vid.lower() in low:  # a video id names it outright
                s += 2 * math.log(max(len(self.titles), 2))
            if s > 0:
                scores[vid] = s
        # What is asked is found without the title phrases too: "iPhone 14" in "Does the iPhone 14
        # have crash detection?" matches the video's title slide best, not the moment that answers.
        asked_about = rest
        held = titled | {p for p in around if _marked(p) and any(p in pairs for pairs in self.pairs.values())}
        asked_about = _cut(asked_about, [sp for p in held for sp in located[p]])
        if held and tokens(asked_about):
            rest = asked_about
        content = re.sub(r"^[\s,:;.-]+", "", " ".join(rest.split())) if rest != question else question
        phrases = tuple(question[a:b].strip() for a, b in spans)
        return Naming(scores, phrases, content if len(content.split()) >= 2 else question, tuple(sorted(titled)),
                      tuple(ruled_out))


def title_from_source(source: str) -> str:
    """The title a video is filed under until its download names it: the link's or path's last
    part (without a query), else the source itself, at most 120 characters."""
    name = source.strip().rstrip("/").split("/")[-1].split("?")[0]
    return name[:120] or source[:120]

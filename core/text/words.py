"""Words for lexical matching: content words, lower-cased and stemmed in their language (Snowball).

Shared by retrieval (which moment a question's words point at), naming (which video a question's
words name) and the catalog's full-text index, which is given each segment's words already
stemmed in its video's language (`terms`), so that SQLite FTS5 and PostgreSQL's tsvector index
the same words and agree on what matches: "lievitazione" and "lievito" meet on an Italian
video's slides as "eruptions" and "erupt" do on an English one's.

A language is named as Whisper names it ("en", "it", "es"...; "" when unknown, read as English).
A question is stemmed in each language of the channel it is asked in (`stems`), since an English
question may be about an Italian video and name its words ("Etna", "Pompei", "mozzarella").
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata

import snowballstemmer

STOP = frozenset("""a an and are as at be by can do does for from how i in is it its of on or that the their
this to was what when where which who why will with you your they them there these those into than then
about after before between did done has have had if not no so such too very we our us he she his her
also just more most other some any each many much own same only over under again further once here all both
few nor off out up down should would could may might must shall get gets got""".split())

# The commonest function words of the other languages vidrag transcribes: left out of a question's
# words as STOP is (they match nearly every segment of a video in that language).
_OTHER_STOP = {
    "it": """il lo la i gli le un uno una di a da in con su per tra fra e o ma che chi cui non si ci ne
del dello della dei degli delle al allo alla ai agli alle dal dalla dai nel nello nella nei nelle sul sulla
è sono era ha hanno come cosa quando dove perché quanto quanti quale più""",
    "es": """el la los las un una unos unas de a en con por para y o pero que quien no se le les lo del al
es son era ha han como qué cuando donde dónde porque por qué cuánto cuántos cuál más muy su sus""",
    "de": """der die das den dem des ein eine einen einem einer und oder aber in im an am auf mit von zu zum
zur für ist sind war hat haben wie was wann wo warum wer nicht sich es er sie""",
    "fr": """le la les un une des de du d l à au aux en dans sur avec par pour et ou mais que qui ne pas se
est sont était a ont comme quand où pourquoi combien quel quelle plus son sa ses il elle ils elles nous vous ce cette ces""",
    "pt": """o a os as um uma de do da dos das em no na nos nas com por para e ou mas que não se é são era
tem como quando onde porque quanto qual mais""",
}
STOPS = {"en": STOP} | {k: frozenset(v.split()) for k, v in _OTHER_STOP.items()}

# Whisper's language codes → Snowball's algorithms (every language both know)
SNOWBALL = {"en": "english", "it": "italian", "es": "spanish", "de": "german", "fr": "french",
            "pt": "portuguese", "nl": "dutch", "sv": "swedish", "no": "norwegian", "nn": "norwegian",
            "da": "danish", "fi": "finnish", "ru": "russian", "hu": "hungarian", "ro": "romanian",
            "tr": "turkish", "ca": "catalan", "cs": "czech", "el": "greek", "pl": "polish", "lt": "lithuanian",
            "et": "estonian", "id": "indonesian", "ga": "irish", "eu": "basque", "hy": "armenian",
            "ar": "arabic", "fa": "persian", "hi": "hindi", "ne": "nepali", "ta": "tamil", "sr": "serbian",
            "yi": "yiddish"}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def language_of(language: str) -> str:
    """The stemmer's language for a video's: "" (unknown) and any language Snowball lacks → "en"."""
    return language if language in SNOWBALL else "en"


_STEMMERS = threading.local()  # a Snowball stemmer keeps the word it works on in itself: one per thread


def _stemmer(language: str) -> snowballstemmer.stemmer:
    mine: dict[str, snowballstemmer.stemmer] = _STEMMERS.__dict__.setdefault("by_language", {})
    name = SNOWBALL[language_of(language)]
    if name not in mine:
        mine[name] = snowballstemmer.stemmer(name)
    return mine[name]


@functools.lru_cache(maxsize=65536)
def stem(word: str, language: str = "en") -> str:
    return str(_stemmer(language).stemWord(word))


def fold(word: str) -> str:
    """A stem without its diacritics ("citt", "perche"), as FTS5's unicode61 folds them: the form
    both full-text backends are given, so neither depends on its own accent rules."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def tokens(text: str, language: str = "en") -> set[str]:
    """Lower-case content words, stemmed in `language`, so eruptions matches erupt. Letters of
    any alphabet count; a language Snowball lacks is stemmed as English."""
    stop = STOPS.get(language_of(language), STOP)
    return {stem(w, language) for w in _WORD.findall(text.lower()) if w not in stop and len(w) > 1}


def stems(text: str, languages: tuple[str, ...] = ("en",)) -> list[frozenset[str]]:
    """A question's content words, each as the set of its stems in `languages` (a channel's): one
    word counts once however many languages stem it, and matches a passage in any of them."""
    out: list[frozenset[str]] = []
    seen: set[str] = set()
    langs = tuple(dict.fromkeys(language_of(x) for x in languages)) or ("en",)
    for w in _WORD.findall(text.lower()):
        if w in seen or len(w) < 2 or any(w in STOPS.get(x, frozenset()) for x in langs):
            continue
        seen.add(w)
        out.append(frozenset(stem(w, x) for x in langs))
    return out


def terms(text: str, language: str = "") -> str:
    """A segment's words as the full-text index holds them: stemmed in the video's language,
    without diacritics, in order, separated by spaces (stop words kept: the query leaves them out)."""
    return " ".join(fold(stem(w, language)) for w in _WORD.findall(text.lower()))


def query_terms(text: str, languages: tuple[str, ...] = ("en",), limit: int = 32) -> list[str]:
    """The distinct full-text terms of a question stemmed in each of `languages` (see `terms`)."""
    out: list[str] = []
    for group in stems(text, languages):
        for s in sorted(group):
            t = fold(s)
            if t and t not in out:
                out.append(t)
    return out[:limit]


NAMES = {"en": "English", "it": "Italian", "es": "Spanish", "de": "German", "fr": "French", "pt": "Portuguese"}


def language_of_text(text: str) -> str:
    """The language a short text (a question) is written in, among those with stop words here:
    the one whose function words it uses most; English on a tie or when it uses none. Enough to
    tell an LLM which language to answer in; not a general language detector."""
    counts = _function_words(text)
    best = max(counts, key=lambda k: (counts[k], k == "en"))
    return best if counts[best] > counts["en"] else "en"


def languages_of_text(text: str) -> frozenset[str]:
    """The languages other than English whose function words a short text (a video's title) uses
    most, and more than English's: "Das Oktoberfest" → {de}; "La tour Eiffel" → {it, es, fr}, which
    share "la"; nothing for "How stars die" or a title of names alone. A witness beside speech
    detection (`core.engines.language.choose_language`), not a detector of its own."""
    counts = _function_words(text)
    most = max(counts.values())
    return frozenset(lang for lang, n in counts.items() if lang != "en" and n == most and n > counts["en"])


def _function_words(text: str) -> dict[str, int]:
    """How many of a text's words are each language's function words (`STOPS`)."""
    words = _WORD.findall(text.lower())
    return {lang: sum(w in stop for w in words) for lang, stop in STOPS.items()}

"""Words for lexical matching: content words, lower-cased and stemmed (Snowball, English).

Shared by retrieval (which moment a question's words point at) and naming (which video a
question's words name)."""

from __future__ import annotations

import functools
import re

import snowballstemmer

STOP = frozenset("""a an and are as at be by can do does for from how i in is it its of on or that the their
this to was what when where which who why will with you your they them there these those into than then
about after before between did done has have had if not no so such too very we our us he she his her
also just more most other some any each many much own same only over under again further once here all both
few nor off out up down should would could may might must shall get gets got""".split())

_STEM = snowballstemmer.stemmer("english")


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _STEM.stemWord(word)


def tokens(text: str) -> set[str]:
    """Lower-case content words, stemmed, so eruptions matches erupt. Letters of any alphabet
    count (an Italian question's "lievito" is a word too); only English is stemmed."""
    return {stem(w) for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOP and len(w) > 1}

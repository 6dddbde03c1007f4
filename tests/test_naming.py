"""Which video a question names (core.answer.naming): title phrases that carry a number, version,
year or roman numeral, in any position and in digits or words, against siblings that share the
word but not the number; and numbers that are the question's content, which name nothing."""

from __future__ import annotations

import re

import pytest

from core.answer.naming import Titles, name_tokens, phrase_tokens

# A channel with siblings that differ only by their number, numbered series, and unrelated videos.
CHANNEL = {
    "v_ap11": "Apollo 11: the Moon landing",
    "v_ap13": "Apollo 13: the mission that failed",
    "v_py39": "Python 3.9 release notes",
    "v_py310": "Python 3.10 release notes",
    "v_win10": "Windows 10 tips and tricks",
    "v_win11": "Windows 11 tips and tricks",
    "v_k2019": "The 2019 developer keynote",
    "v_k2020": "The 2020 developer keynote",
    "v_lou14": "Louis XIV and Versailles",
    "v_lou16": "Louis XVI and the revolution",
    "v_show1": "Kitchen stories, season 1",
    "v_show2": "Kitchen stories, season 2",
    "v_cook1": "Cooking basics, part 1: pasta",
    "v_cook3": "Cooking basics, part 3: rice",
    "v_gard3": "Home gardening (3/3): making compost",
    "v_moon": "How the Moon was formed",
    "v_bread": "Rye bread at home",
}
TITLES = Titles(CHANNEL)


@pytest.mark.parametrize(("question", "video"), [
    ("Who flew the command module of Apollo 11?", "v_ap11"),       # at the end
    ("Apollo 13: what broke on the way?", "v_ap13"),               # leading
    ("Which ship picked up the Apollo 13 crew after splashdown?", "v_ap13"),  # in the middle
    ("Why did Apollo thirteen turn back?", "v_ap13"),              # spelled out
    ("When did Apollo eleven land on the Moon?", "v_ap11"),        # against the Moon video too
    ("What changed in the parser of Python 3.10?", "v_py310"),     # a version
    ("What is new in Python three ten?", "v_py310"),               # a version read out
    ("Does Python 3.9 have the merge operator for dicts?", "v_py39"),
    ("How do I snap windows side by side in Windows 11?", "v_win11"),
    ("What was announced at the 2019 keynote?", "v_k2019"),         # a year before the word
    ("What did the keynote of twenty twenty show?", "v_k2020"),    # a year read out
    ("Why did Louis XVI call the Estates General?", "v_lou16"),    # a roman numeral
    ("What did Louis the Fourteenth build at Versailles?", "v_lou14"),  # "<name> the <ordinal>"
    ("Which dish opens season 2?", "v_show2"),                     # a numbered marker, anywhere
    ("Who cooked in the second season of kitchen stories?", "v_show2"),
    ("In gardening part 3, how often is the heap turned?", "v_gard3"),  # the series' word, not "part 3"
    ("In the part 3 video, how much water per cup?", "v_cook3"),
])
def test_a_title_phrase_names_its_video_wherever_it_stands(question: str, video: str) -> None:
    named = TITLES.naming(question)
    best = named.best()
    assert best is not None and best[0] == video, named.scores


@pytest.mark.parametrize(("question", "sibling"), [
    ("Who flew the command module of Apollo 11?", "v_ap13"),
    ("Why did Apollo 13 never land on the Moon?", "v_ap11"),   # "Moon" is in Apollo 11's title only
    ("What changed in the parser of Python 3.10?", "v_py39"),
    ("Why did Louis XVI call the Estates General?", "v_lou14"),
])
def test_the_sibling_with_another_number_is_not_named(question: str, sibling: str) -> None:
    assert sibling not in TITLES.naming(question).scores


@pytest.mark.parametrize("question", [
    "What happened in 1969?",                       # a year no title carries
    "How many people walked on the Moon in 1972?",
    "Why do 11 players make a football team?",      # a number beside a word no title pairs it with
    "What is the first thing to check?",
    "Should I add 2 cups of water?",
])
def test_a_number_that_is_content_names_no_video(question: str) -> None:
    named = TITLES.naming(question)
    assert named.titled == ()
    without = TITLES.naming(re.sub(r"\b(\d+|first|I)\b", "", question))
    assert named.scores == without.scores  # the number changed nothing ("Moon" may hint, as before)


@pytest.mark.parametrize(("question", "video"), [
    ("Which two teams played the final of the 2010 World Cup?", "v_wc10"),  # the number before the name
    ("Who won the World Cup 2014 final?", "v_wc14"),
    ("How many stages did the 1903 Tour have?", "v_tour03"),               # one word of a longer name
    ("What did the 2004 Tour de France add?", "v_tour04"),
])
def test_a_number_names_with_any_word_of_the_name_beside_it(question: str, video: str) -> None:
    titles = Titles({"v_wc10": "World Cup 2010: the final", "v_wc14": "World Cup 2014: the final",
                     "v_tour03": "Le Tour de France 1903", "v_tour04": "Le Tour de France 2004",
                     "v_bees": "Keeping bees in the city"})
    named = titles.naming(question)
    assert set(named.scores) == {video}, named.scores  # the sibling with the other number is not named


@pytest.mark.parametrize(("question", "video"), [
    ("Eurovision '74: who won?", "v_e74"),              # a year as people write it
    ("What was built for Expo 70?", "v_x70"),           # two digits beside the title's word
    ("Which pavilion opened the ’67 fair?", "v_x67"),   # a short year alone hints, as a year does
])
def test_a_year_shortened_to_two_digits_names_its_video(question: str, video: str) -> None:
    titles = Titles({"v_e74": "Eurovision 1974 in three minutes", "v_e88": "Eurovision 1988 in three minutes",
                     "v_x67": "Expo 1967 in Montreal", "v_x70": "Expo 1970 in Osaka",
                     "v_ap11": "Apollo 11: the Moon landing"})
    named = titles.naming(question)
    assert max(named.scores, key=named.scores.__getitem__) == video, named.scores
    assert all(not v.startswith(video[:3]) or v == video for v in named.scores), named.scores  # not its sibling


@pytest.mark.parametrize(("question", "ruled_out"), [
    ("Who flew the command module of Apollo 11?", {"v_ap13"}),
    ("What changed in the parser of Python 3.10?", {"v_py39"}),
    ("Why did Apollo 12 fail?", set()),             # no title holds "Apollo 12": neither is held back
    ("What is new in Python 3.11?", set()),
])
def test_a_sibling_is_ruled_out_only_by_a_phrase_another_title_holds(question: str, ruled_out: set[str]) -> None:
    assert set(TITLES.naming(question).ruled_out) == ruled_out


def test_a_question_that_names_both_siblings_names_both() -> None:
    scores = TITLES.naming("What did Apollo 13 learn from Apollo 11?").scores
    assert scores.get("v_ap11") and scores.get("v_ap13")
    assert scores["v_ap11"] == pytest.approx(scores["v_ap13"])


def test_a_year_a_title_carries_hints_at_it_without_the_word() -> None:
    scores = TITLES.naming("What did they announce in 2019?").scores
    assert max(scores, key=scores.__getitem__) == "v_k2019"


@pytest.mark.parametrize(("text", "phrases"), [
    ("Apollo 11 - the first Moon landing", {"apollo~11"}),   # a spaced dash ends the phrase
    ("What's new in Python 3.12", {"python~3.12"}),
    ("World War II in five minutes", {"war~2", "world~2", "minut~5"}),  # the name beside it, word by word
    ("Henry VIII's six wives", {"henri~8", "wive~6"}),
    ("WWDC 2024 keynote recap", {"wwdc~2024", "keynot~2024", "recap~2024"}),
    ("Le Tour de France 1903", {"tour~1903", "de~1903", "franc~1903"}),  # up to three words
    ("Linear Algebra Ep. 3 - Determinants", {"episode~3"}),
    ("iPhone-15 review", {"iphon~15", "review~15"}),  # a number pairs with both neighbours
    ("nineteen sixty-nine", set()),
    ("Should I use a fork?", {"use~1"}),  # "I" is a numeral only beside a word; harmless unless a title pairs them
])
def test_title_phrases(text: str, phrases: set[str]) -> None:
    assert phrase_tokens(text) == phrases


def test_numbers_read_every_usual_way() -> None:
    assert name_tokens("nineteen sixty-nine") == ["1969"]
    assert name_tokens("twenty twenty four") == ["2024"]
    assert name_tokens("Python three twelve") == ["python", "3.12"]
    assert name_tokens("Episode twenty-one") == ["episode", "21"]
    assert name_tokens("the 2nd part") == ["2", "part"]
    assert name_tokens("In the one about compost") == ["compost"]  # "the one about": no number


@pytest.mark.parametrize(("question", "asked"), [
    ("Does the iPhone 15 have a USB port?", "Does the have a USB port?"),
    ("Who flew the command module of Apollo 11?", "Who flew the command module of ?"),
    ("Which dish opens season 2?", "Which dish opens ?"),
    ("Who scored in the 2010 World Cup final?", "Who scored in the final?"),  # the whole name, once
    ("What happened in 1969?", "What happened in 1969?"),  # no title holds it: content
    ("What is Python 3.10?", "What is Python 3.10?"),       # nothing would be left to ask
])
def test_what_is_asked_is_the_question_without_its_title_phrase(question: str, asked: str) -> None:
    titles = Titles(CHANNEL | {"v_ip14": "iPhone 14 review", "v_ip15": "iPhone 15 review",
                               "v_wc10": "World Cup 2010: the final", "v_wc14": "World Cup 2014: the final"})
    assert titles.naming(question).content == asked

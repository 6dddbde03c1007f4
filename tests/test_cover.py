"""A video's cover (core.answer.cover): which spans are its cover, which questions it cannot
answer, in the languages vidrag transcribes, and how much of a moment lies on it."""

from __future__ import annotations

import pytest

from core.answer.cover import about_the_video, covers, discount, explains, share_within


@pytest.mark.parametrize(("question", "explaining"), [
    ("Why does Italy have so many volcanoes?", True),
    ("How does a kettle switch itself off?", True),
    ("What happens to the sauce if you rinse the pasta?", True),
    ("What caused the armistice?", True),
    ("What started World War I?", True),
    ("Explain the central limit theorem", True),
    ("According to the 737 video, why was the MAX grounded?", True),  # "why" after a naming clause
    ("Any idea how the crew survived?", True),                       # English "how" anywhere
    ("Perché l'Italia ha tanti vulcani?", True),
    ("Come funziona la lievitazione?", True),
    ("Che cosa succede alla mozzarella?", True),
    ("¿Por qué son volcánicas las Canarias?", True),
    ("¿Cómo se forman las nubes?", True),
    ("Warum brachen die Schienen?", True),
    ("Wie funktioniert eine Dampflok?", True),
    ("Was passiert an der Loreley?", True),
    ("Pourquoi repeint-on la tour ?", True),
    ("Comment fonctionne un moteur ?", True),
    ("How long does the dough rise?", False),      # a quantity: the cover may well say it
    ("How many wives did Henry VIII have?", False),
    ("Quanto tempo cuoce la pizza?", False),
    ("Come si chiama il vulcano più alto?", False),  # a name
    ("¿Cuánto mide el Teide?", False),
    ("Wie viele Kilometer ist der Rhein lang?", False),
    ("Wie lange dauert es?", False),
    ("Combien d'étapes avait le Tour ?", False),
    ("Where does the Rhine begin?", False),        # a fact, not an explanation
    ("Who was the guest on episode 12?", False),
    ("What is this video about?", False),
])
def test_explaining_questions_are_told_apart_in_every_language(question: str, explaining: bool) -> None:
    assert explains(question) is explaining


@pytest.mark.parametrize(("question", "itself"), [
    ("What is this video about?", True),
    ("What's the Apollo 11 video about?", True),
    ("Which video talks about sourdough?", True),
    ("Which episode covers interest rates?", True),
    ("What is the topic of the German lecture?", True),
    ("Di cosa parla il video?", True),
    ("Where does the Rhine begin?", False),
    ("Who was the guest on episode 12?", False),
    ("What is the Poisson distribution about rare events?", False),  # "about" not at the end
])
def test_questions_about_the_video_itself_are_told_apart(question: str, itself: bool) -> None:
    assert about_the_video(question) is itself


def test_a_cover_answers_a_fact_only_by_the_words_it_holds_beyond_the_title() -> None:
    assert discount("Where does the Rhine begin?", 0.0) == 1.0  # holds none of the asked words
    assert discount("Who was the guest on episode 12?", 1.0) == 0.0  # "Guest: Prof. Okafor" is on it
    assert discount("How long has the guest been studying prices?", 0.75) == pytest.approx(0.25)
    assert discount("Why does Italy have so many volcanoes?", 1.0) == 1.0  # never explained by a cover
    assert discount("What is this video about?", 0.0) == 0.0  # its cover is the answer


def test_the_cover_is_the_slide_that_repeats_the_most_of_the_title() -> None:
    shown = [(0.0, 6.5, "Acids, bases and pH\nChemistry 1B - Lecture 11"),
             (6.5, 11.6, "Definitions\nBronsted-Lowry acid: proton donor\nbase: proton acceptor"),
             (11.6, 20.8, "The pH scale\npH = -log10[H+]"),
             (36.9, 45.8, "Buffers\nweak acid + its conjugate base\nresists changes in pH"),
             (60.0, 66.0, "Acids, bases and pH\nThanks for watching")]
    # two of the title's three words on a content slide do not make it a cover, nor all three
    # under a heading of the slide's own; a closing slide that shows the whole title again is one
    assert covers("Acids, bases and pH", shown) == [(0.0, 6.5), (60.0, 66.0)]


def test_a_cover_is_found_without_the_function_words_of_any_language() -> None:
    shown = [(0.0, 6.8, "Die Eisenbahn\nTechnikgeschichte\nVorlesung 5"),
             (6.8, 14.1, "Die erste Lokomotive\n1804: Richard Trevithick")]
    # "die" and "der" would make the title four words, two of them on every German slide
    assert covers("Die Geschichte der Eisenbahn", shown) == [(0.0, 6.8)]
    assert covers("La pizza napoletana fatta in casa", [(0.0, 6.7, "La pizza napoletana\nLezione di cucina"),
                                                         (6.7, 15.9, "L'impasto\nfarina 00: 1 kg")]) == [(0.0, 6.7)]


def test_a_video_without_a_slide_that_repeats_its_title_has_no_cover() -> None:
    shown = [(0.0, 5.0, "Bicycle maintenance\nA 10-minute check-up"), (5.0, 12.0, "Tyre pressure")]
    assert covers("Keeping your bicycle on the road", shown) == []
    assert covers("", shown) == []


def test_the_share_of_a_moment_on_a_cover() -> None:
    cover = [(0.0, 6.0)]
    assert share_within(0.0, 5.0, cover) == 1.0      # said over the cover
    assert share_within(0.0, 12.0, cover) == 0.5     # a sentence on it and one on the next slide
    assert share_within(6.5, 12.0, cover) == 0.0
    assert share_within(3.0, 3.0, cover) == 1.0      # a point in time
    assert share_within(2.0, 8.0, [(0.0, 3.0), (7.0, 9.0)]) == pytest.approx(2 / 6)

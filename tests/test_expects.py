"""A question that asks when is answered by a moment that holds a date (core.answer.expects): a
year or a month's name reads alike in every language, where an English question meets a German
slide's words only faintly. The scoring step of retrieve (`_rank`) on hand-made moments: two slides
of one German video whose passages meet the question alike."""

from __future__ import annotations

import numpy as np
import pytest

from core.answer.expects import asks_date, holds_date
from core.answer.naming import Naming
from core.answer.reads import Unit
from core.answer.retrieve import _rank
from core.models import Hit


@pytest.mark.parametrize("question", [
    "When did work on Cologne Cathedral begin?", "when is the Siena horse race run", "  When was it built?",
    "In which year did the bridge open?", "What date was the treaty signed?", "Since when has it been open?"])
def test_questions_that_ask_when(question: str) -> None:
    assert asks_date(question)


@pytest.mark.parametrize("question", [
    "How long is the bridge?", "Why did the tower lean?", "Whenever I knead, the dough tears: why?",
    "What happened in 1969?", "Which ship recovered the crew?"])
def test_questions_that_do_not(question: str) -> None:
    assert not asks_date(question)


def test_a_date_is_a_year_or_a_month_in_any_of_the_languages_heard() -> None:
    assert holds_date("632 Jahre Bauzeit\n1248 bis 1880")
    assert holds_date("Si corre il due luglio e il sedici agosto.")
    assert holds_date("Ouvert en décembre")
    assert not holds_date("Seine zwei Türme sind 157 Meter hoch.")  # a number, not a year
    assert not holds_date("You may knead it in March")  # months that are common words are not read as dates
    # a year of the video's title names the video, not a moment in it
    assert not holds_date("Le Tour de France 1903", skip={"1903"})
    assert holds_date("Le Tour de France 1903, gagné en juillet", skip={"1903"})


def rank(question: str) -> list[str]:
    """The two slides' texts, best first, as retrieve's scoring step orders them: the one about the
    towers meets the question's vector a little better than the one with the dates."""
    slides = [("Die Türme\nSeine zwei Türme sind 157 Meter hoch.", 0.32),
              ("632 Jahre Bauzeit\nDer Bau begann 1248 und endete 1880.", 0.30)]
    qv = np.array([1.0, 0.0], np.float32)
    hits = [Hit("dom", 5.0 * i, 5.0 * i + 5.0, text, "ocr", score) for i, (text, score) in enumerate(slides)]
    units = [Unit(i, h.start, h.end, h.text, vector=np.array([h.score, 0.0], np.float32)) for i, h in enumerate(hits)]
    kept = _rank(question, question, Naming({}, (), question), None, {"dom": "Der Kölner Dom"},
                 {"dom": np.zeros(2, np.float32)}, {}, {"dom": "de"}, qv, hits, [0.0, 0.0], hits, units, [], 2)
    return [m.hit.text for m in kept]


def test_asked_when_the_slide_with_the_dates_answers() -> None:
    assert rank("When did work on the cathedral begin?")[0].startswith("632 Jahre")
    # asked something else, the slides keep the order their passages give them
    assert rank("How tall are the cathedral's towers?")[0].startswith("Die Türme")

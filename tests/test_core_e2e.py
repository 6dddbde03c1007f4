"""The whole core on a generated lecture: index it, ask about it, cite the right moment."""

from __future__ import annotations

import pytest

from core.errors import UserFacingError
from core.models import Kind, Stage, VideoStatus
from core.service import Service
from tests.conftest import console


def slide_of(lec, t: float) -> int:
    return next(i for i, (a, b) in enumerate(lec.times) if a - 0.5 <= t <= b + 0.5)


async def test_lecture_is_indexed_with_progress_per_stage(service: Service, lecture) -> None:
    path, lec = lecture
    seen: list[Stage] = []

    async def on_progress(p) -> None:
        seen.append(p.stage)

    sub = await service.submit(console("e2e"), str(path), on_progress=on_progress)
    video = await service.wait(sub.job.id)
    assert video.status == VideoStatus.READY
    assert video.title == "How volcanoes work"
    assert abs(video.duration - lec.times[-1][1]) < 0.5
    for stage in (Stage.FETCH, Stage.PROBE, Stage.FRAMES, Stage.TRANSCRIBE, Stage.OCR, Stage.EMBED, Stage.DONE):
        assert stage in seen
    frames = await service.store(console("e2e")).frames(video.id)
    # scene-aware frames: every slide has at least one frame taken while it was shown
    for a, b in lec.times:
        assert any(a - 0.1 <= t <= b for t, _, _ in frames)


@pytest.mark.parametrize("question, slide", [
    ("What happens to the pressure before an eruption?", 2),
    ("What kind of lava do shield volcanoes pour out?", 3),
    ("Why does molten rock rise?", 1),
])
async def test_answer_cites_the_slide_that_was_spoken(service: Service, lecture, question, slide) -> None:
    path, lec = lecture
    sc = console("e2e-ask")
    await service.wait((await service.submit(sc, str(path))).job.id)
    answer = await service.ask(sc, question)
    assert answer.citations, answer.text
    top = answer.citations[0]
    a, b = lec.times[slide]
    assert top.start <= b + 0.5 and top.end >= a - 0.5, (top, lec.times)
    assert answer.frame is not None and a - 0.5 <= answer.frame.time <= b + 0.5
    assert answer.frame.path.endswith(".jpg")
    assert f"[{top.label}]" in answer.text


async def test_on_screen_text_is_indexed_and_cited(service: Service, lecture) -> None:
    path, lec = lecture
    sc = console("e2e-ocr")
    video = await service.wait((await service.submit(sc, str(path))).job.id)
    segs = await service.store(sc).segments(video.id, 0, 1e9)
    ocr = [s for s in segs if s.kind == Kind.OCR]
    assert any("andesite" in s.text.lower() for s in ocr), ocr
    answer = await service.ask(sc, "Which rock makes stratovolcano magma sticky? andesite")
    assert "andesite" in answer.text.lower()


async def test_same_link_twice_is_indexed_once(service: Service, lecture) -> None:
    path, _ = lecture
    sc = console("twice")
    first = await service.submit(sc, str(path))
    await service.wait(first.job.id)
    again = await service.submit(sc, str(path))
    assert again.already and again.job.video_id == first.job.video_id
    assert len(await service.videos(sc)) == 1


async def test_question_before_any_video_gets_a_clear_reply(service: Service) -> None:
    with pytest.raises(UserFacingError, match="No videos are indexed"):
        await service.ask(console("empty"), "What is this about?")

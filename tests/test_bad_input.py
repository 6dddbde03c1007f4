"""Bad inputs get a clear, user-facing error, and the store is left exactly as it was."""

from __future__ import annotations

import pytest

from core.config import Settings
from core.errors import UserFacingError
from core.service import Service
from tests.conftest import Indexed, console


@pytest.fixture(scope="module")
async def one_video(tmp_path_factory: pytest.TempPathFactory, models, short_lectures):
    """A service whose channel `bad` holds one indexed (short) lecture; each bad input is posted
    there and must leave it as it was."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("bad") / "data", clip_pretrained="random")
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        await svc.wait((await svc.submit(console("bad"), str(short_lectures["volcano"]))).job.id)
        yield svc


async def snapshot(service: Service, channel: str) -> tuple:
    store = service.store(console(channel))
    videos = [(v.id, v.status) for v in await store.videos()]
    return videos, await store.vector_video_ids(), await store.catalog.rows("SELECT COUNT(*) AS n FROM segments")


@pytest.mark.parametrize("kind, message", [
    ("missing", "can't find the file"),
    ("text", "isn't a video"),
    ("corrupt", "isn't a video|corrupt"),
    ("silent", "no speech and no readable text"),
    ("audio", "no video stream"),
])
async def test_bad_input_is_refused_and_store_unchanged(one_video: Service, bad_media, kind, message) -> None:
    service, sc = one_video, console("bad")
    before = await snapshot(service, "bad")
    source = "/nonexistent/lecture.mp4" if kind == "missing" else str(bad_media[kind])
    sub = await service.submit(sc, source)
    with pytest.raises(UserFacingError, match=message):
        await service.wait(sub.job.id)
    assert await snapshot(service, "bad") == before
    answer = await service.ask(sc, "Why does molten rock rise?")  # what was indexed still answers
    assert answer.citations


async def test_failure_reaches_the_progress_listener(one_video: Service, bad_media) -> None:
    service = one_video
    seen = []

    async def on_progress(p) -> None:
        seen.append((p.stage.value, p.message))

    sub = await service.submit(console("bad2"), str(bad_media["text"]), on_progress=on_progress)
    with pytest.raises(UserFacingError):
        await service.wait(sub.job.id)
    assert seen[-1][0] == "failed" and "isn't a video" in seen[-1][1]
    assert await service.videos(console("bad2")) == []


async def test_too_long_video_is_refused(settings, models, lecture) -> None:
    from dataclasses import replace

    async with Service.open(replace(settings, max_video_minutes=0.2), models=models, chat=None) as svc:
        svc.start_workers(1)
        sub = await svc.submit(console("long"), str(lecture[0]))
        with pytest.raises(UserFacingError, match="limit is 0 minutes|minutes long"):
            await svc.wait(sub.job.id)


async def test_question_too_long_is_refused(indexed_lectures: Indexed) -> None:
    with pytest.raises(UserFacingError, match="too long"):
        await indexed_lectures.view().ask(indexed_lectures.volcano, "why " * 400)


async def test_local_paths_are_console_only(one_video: Service, lecture) -> None:
    from core.models import Scope

    service, sc = one_video, Scope("slack", "T1", "C1")
    sub = await service.submit(sc, str(lecture[0]))
    with pytest.raises(UserFacingError, match="video link"):
        await service.wait(sub.job.id)

"""Links through yt-dlp, subtitles used instead of transcribing, and attachments with the bot's
token — all from a FakeMediaServer on 127.0.0.1 (explicitly allowed; the guard refuses it otherwise)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.errors import UserFacingError
from core.models import Kind, Scope
from core.service import Service
from tests.fakes.media_server import FakeMediaServer, page_with_captions

CAPTIONS = b"""WEBVTT

00:00:00.500 --> 00:00:04.000
Welcome, today we talk about volcanoes.

00:00:05.500 --> 00:00:13.000
Below a volcano sits a magma chamber full of molten basalt.
"""


@pytest.fixture
async def site(lecture):
    server = FakeMediaServer({"lecture.mp4": lecture[0], "captions.vtt": CAPTIONS,
                              "page.html": page_with_captions("lecture.mp4", "captions.vtt", "Volcano page"),
                              "notes.txt": b"just some text\n" * 100})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def net_service(settings, models):
    async with Service.open(replace(settings, allow_hosts=("127.0.0.1",)), models=models, chat=None) as svc:
        svc.start_workers(1)
        yield svc


SLACK = Scope("slack", "T1", "C1")


async def test_direct_video_link_is_indexed(net_service: Service, site) -> None:
    video = await net_service.wait((await net_service.submit(SLACK, f"{site.base}/lecture.mp4")).job.id)
    assert video.url == f"{site.base}/lecture.mp4"
    answer = await net_service.ask(SLACK, "Why does molten rock rise?")
    assert answer.citations[0].url.startswith(f"{site.base}/lecture.mp4#t=")


async def test_page_subtitles_replace_transcription(net_service: Service, site) -> None:
    video = await net_service.wait((await net_service.submit(SLACK, f"{site.base}/page.html")).job.id)
    segs = await net_service.store(SLACK).segments(video.id, 0, 1e9)
    spoken = [s for s in segs if s.kind in (Kind.SPEECH, Kind.SUBTITLE)]
    assert spoken and all(s.kind == Kind.SUBTITLE for s in spoken)
    assert "molten basalt" in " ".join(s.text for s in spoken)
    answer = await net_service.ask(SLACK, "What fills the magma chamber?")
    assert "basalt" in answer.text


async def test_attachment_downloads_with_token_headers(net_service: Service, site) -> None:
    url = f"{site.base}/private/lecture.mp4"
    sub = await net_service.submit(SLACK, url, headers={"Authorization": "Bearer xoxb-test"})
    video = await net_service.wait(sub.job.id)
    assert video.status == "ready"
    name, headers = site.requests[-1]
    assert name == "private/lecture.mp4" and headers["Authorization"] == "Bearer xoxb-test"


async def test_attachment_without_token_is_refused_clearly(net_service: Service, site) -> None:
    sub = await net_service.submit(SLACK, f"{site.base}/private/lecture.mp4", headers={})
    with pytest.raises(UserFacingError, match="403"):
        await net_service.wait(sub.job.id)


async def test_token_is_not_forwarded_across_redirects(net_service: Service, site) -> None:
    site.redirects["private/moved.mp4"] = "/lecture.mp4"
    sub = await net_service.submit(SLACK, f"{site.base}/private/moved.mp4", headers={"Authorization": "Bearer xoxb-test"})
    await net_service.wait(sub.job.id)
    assert site.requests[-1][0] == "lecture.mp4" and "Authorization" not in site.requests[-1][1]


async def test_broken_and_non_video_links_get_clear_errors(net_service: Service, site) -> None:
    for url, message in [(f"{site.base}/missing.mp4", "couldn't download|don't recognise"),
                         (f"{site.base}/notes.txt", "don't recognise|isn't a video|couldn't download")]:
        with pytest.raises(UserFacingError, match=message):
            await net_service.wait((await net_service.submit(SLACK, url)).job.id)
    assert await net_service.videos(SLACK) == []


async def test_private_address_is_refused_without_allow_list(service: Service, site) -> None:
    sub = await service.submit(SLACK, f"{site.base}/lecture.mp4")
    with pytest.raises(UserFacingError, match="private network"):
        await service.wait(sub.job.id)
    assert site.requests == []


async def test_redirect_to_metadata_address_is_refused(net_service: Service, site) -> None:
    site.redirects["private/evil.mp4"] = "http://169.254.169.254/latest/meta-data/"
    sub = await net_service.submit(SLACK, f"{site.base}/private/evil.mp4", headers={})
    with pytest.raises(UserFacingError, match="private network"):
        await net_service.wait(sub.job.id)

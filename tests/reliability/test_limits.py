"""Limits refuse politely: a full channel or personal queue, too many videos or questions per
period, a question too long — each a `Refused` with a message that says what to do — and no more
ingests run at once than the setting allows, however many workers are started."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from core.errors import Refused, UserFacingError
from core.jobs.limits import RateLimiter
from core.models import Stage
from core.service import JobEvent, Service
from tests.reliability.conftest import console

POLITE = ("please", "try again")


def polite(e: Refused) -> None:
    assert any(p in e.message for p in POLITE) and "Traceback" not in e.message and len(e.message) < 200


async def test_channel_queue_limit(rel_settings, fake_models) -> None:
    async with Service.open(replace(rel_settings, max_jobs_per_channel=2), models=fake_models, chat=None) as svc:
        for i in range(2):
            await svc.submit(console("q"), f"/videos/{i}.mp4")
        with pytest.raises(Refused, match="already has 2 videos waiting") as e:
            await svc.submit(console("q"), "/videos/3.mp4")
        polite(e.value)
        again = await svc.submit(console("q"), "/videos/1.mp4")  # the same video again is no new job
        assert again.job.video_id and not again.already
        await svc.submit(console("other"), "/videos/3.mp4")  # another channel has its own queue


async def test_user_queue_limit(rel_settings, fake_models) -> None:
    async with Service.open(replace(rel_settings, max_jobs_per_user=1), models=fake_models, chat=None) as svc:
        await svc.submit(console("a"), "/videos/1.mp4", requested_by="u1")
        with pytest.raises(Refused, match="You already have 1") as e:
            await svc.submit(console("b"), "/videos/2.mp4", requested_by="u1")
        polite(e.value)
        await svc.submit(console("b"), "/videos/2.mp4", requested_by="u2")


async def test_ingest_rate_limit(rel_settings, fake_models) -> None:
    async with Service.open(replace(rel_settings, ingests_per_hour_per_user=2), models=fake_models, chat=None) as svc:
        for i in range(2):
            await svc.submit(console("r"), f"/videos/{i}.mp4", requested_by="u1")
        with pytest.raises(Refused, match="per hour") as e:
            await svc.submit(console("r"), "/videos/9.mp4", requested_by="u1")
        polite(e.value)
        assert len(await svc.jobs(console("r"))) == 2  # the refused one left no trace


async def test_question_rate_limits_per_user_and_channel(rel_settings, fake_models) -> None:
    s = replace(rel_settings, questions_per_minute_per_user=2, questions_per_minute_per_channel=3)
    async with Service.open(s, models=fake_models, chat=None) as svc:
        for _ in range(2):
            with pytest.raises(UserFacingError, match="No videos"):  # admitted, then answered
                await svc.ask(console("a"), "What is magma?", user="u1")
        with pytest.raises(Refused, match="asking faster") as e:
            await svc.ask(console("a"), "What is magma?", user="u1")
        polite(e.value)
        with pytest.raises(UserFacingError, match="No videos"):
            await svc.ask(console("a"), "What is magma?", user="u2")
        with pytest.raises(Refused, match="asking faster"):  # the channel's 3 per minute are used
            await svc.ask(console("a"), "What is magma?", user="u3")


async def test_question_length_limit(rel_settings, fake_models) -> None:
    async with Service.open(replace(rel_settings, max_question_chars=50), models=fake_models, chat=None) as svc:
        with pytest.raises(Refused, match="too long"):
            await svc.ask(console("a"), "why " * 20)


def test_rate_window_slides() -> None:
    now = [0.0]
    r = RateLimiter(lambda: now[0])
    assert r.take([("k", 2, 10.0)]) == 0 and r.take([("k", 2, 10.0)]) == 0
    assert r.take([("k", 2, 10.0)]) == pytest.approx(10.0)
    now[0] = 10.5
    assert r.take([("k", 2, 10.0)]) == 0


async def test_concurrent_ingests_bounded_by_setting(rel_settings, models, short_lectures) -> None:
    running: set[str] = set()
    most = 0

    async def hook(e: JobEvent) -> None:
        nonlocal most
        if e.progress.stage in (Stage.DONE, Stage.FAILED):
            running.discard(e.job.id)
        else:
            running.add(e.job.id)
        most = max(most, len(running))

    async with Service.open(replace(rel_settings, ingest_workers=1), models=models, chat=None) as svc:
        svc.on_job_event(hook)
        subs = [await svc.submit(console(f"c{i}"), str(p)) for i, p in enumerate(list(short_lectures.values())[:2])]
        svc.start_workers(3)  # more workers than the setting: still one ingest at a time
        for s in subs:
            await asyncio.wait_for(svc.wait(s.job.id), 180)
    assert most == 1

"""Playlists on Discord and Slack, through the platform fakes: a page of several lectures (two real
ones, a 404, a file that is no video, one at a private address) posted with a mention gets ONE
reply, edited as the entries are indexed, that ends with the counts and each failure's reason;
posted again, nothing is indexed twice (rows and jobs counted); MAX_PLAYLIST_VIDEOS and the
per-user queue limit name the entries they leave out."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.slack_app import SlackBot, web_client
from core.config import Settings
from core.models import Scope
from core.service import Service, video_id_for
from tests.fakes.discord_server import GUILD_ID, FakeDiscord
from tests.fakes.media_server import FakeMediaServer
from tests.fakes.serve import serve
from tests.fakes.slack_api import BOT_TOKEN, BOT_USER, TEAM, FakeSlackAPI
from tests.test_discord import connected
from tests.test_playlists import course_site, lectures_page
from tests.test_slack import SECRET, Slack, callback, new_ts

pytestmark = pytest.mark.timeout(300)  # two lectures indexed in the jailed child, twice a module


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", clip_pretrained="random", allow_hosts=("127.0.0.1",), ocr=False,
                    post_summary=False, slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET,
                    max_jobs_per_user=5)  # the default 3 would leave the page's fifth entry out (its own test below)


@pytest.fixture
async def site(short_lectures: dict[str, Path]) -> AsyncIterator[FakeMediaServer]:
    server = await course_site(short_lectures)
    server.files["four.html"] = lectures_page("Four", ["m1.mp4", "m2.mp4", "m3.mp4", "m4.mp4"])
    yield server
    await server.stop()


async def rows_and_jobs(svc: Service, scope: Scope, site: FakeMediaServer) -> tuple[list[str], list[int]]:
    """The channel's videos' states, and how many jobs each of the two lectures ever had."""
    videos = sorted(v.status.value for v in await svc.videos(scope))
    jobs = [len(await svc.catalog.jobs(scope, video_id_for(scope, f"{site.base}/{name}"), active_only=False))
            for name in ("tides.mp4", "bees.mp4")]
    return videos, jobs


# ---- Discord ------------------------------------------------------------------------------------
@pytest.fixture
async def discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    server.point_discord_py_at(monkeypatch)
    yield server
    await server.stop()


async def final_reply(fake: FakeDiscord, posted: dict) -> dict:
    """The bot's one reply to `posted`, once it shows the end of the list (✅ or ⚠️)."""
    return await fake.wait_for(lambda: next((m for m in fake.messages.values()
                                             if m.get("message_reference", {}).get("message_id") == posted["id"]
                                             and m["content"].startswith(("✅", "⚠️"))), None), within=240)


async def test_discord_a_page_of_lectures_is_one_message_and_posted_twice_indexes_nothing_twice(
        settings: Settings, models, discord: FakeDiscord, site: FakeMediaServer) -> None:
    url = f"{site.base}/course.html"
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        async with connected(svc, settings):
            first = await discord.post("general", f"our course {url}", mention_bot=True)
            reply = await final_reply(discord, first)
            text = reply["content"]
            assert text.startswith("⚠️ **Ocean course**: 2 of 5 indexed · 2 failed · 1 not queued"), text
            assert "❌ failed: **missing.mp4** — I couldn't download" in text, text
            assert "❌ failed: **notes.mp4** — " in text, text
            assert "⛔ not queued: **talk.mp4** — That link points inside a private network" in text, text
            mine = [m for m in discord.bot_messages("general")]
            assert mine == [reply]  # one message for the whole list…
            edits = [r.json.get("content", "") for r in discord.calls("PATCH", f"/messages/{reply['id']}")]
            assert any(e.startswith("⏳ **Ocean course**: 1 of 5 indexed") for e in edits), edits  # …edited as it went
            scope = Scope("discord", str(GUILD_ID), reply["channel_id"])
            assert await rows_and_jobs(svc, scope, site) == (["ready", "ready"], [1, 1])

            again = await final_reply(discord, await discord.post("general", f"once more {url}", mention_bot=True))
            text = again["content"]
            assert "2 of 5 indexed" in text and text.count("☑️ already indexed here: ") == 2, text
            assert await rows_and_jobs(svc, scope, site) == (["ready", "ready"], [1, 1])  # no second row or job


async def test_discord_the_list_limit_and_the_per_user_limit_name_what_they_leave_out(
        settings: Settings, fake_models, discord: FakeDiscord, site: FakeMediaServer) -> None:
    settings = dataclasses.replace(settings, max_playlist_videos=2, max_jobs_per_user=1)
    async with Service.open(settings, models=fake_models, chat=None) as svc:  # no worker: the job waits
        async with connected(svc, settings):
            posted = await discord.post("general", f"{site.base}/four.html", mention_bot=True)
            reply = await discord.wait_for(lambda: next((m for m in discord.bot_messages("general")
                                                         if "not queued" in m["content"]), None))
    text = reply["content"]
    assert reply["message_reference"]["message_id"] == posted["id"]
    assert text.startswith("⏳ **Four**: 0 of 2 indexed · 1 not queued"), text
    assert "⛔ not queued: **m2.mp4** — You already have 1 videos waiting" in text, text
    assert "⏭️ skipped (I queue at most 2 videos of a list): **m3.mp4**, **m4.mp4**" in text, text


# ---- Slack --------------------------------------------------------------------------------------
@pytest.fixture
async def slack_on(settings: Settings) -> AsyncIterator[Any]:
    """A function building a `Slack` (tests/test_slack.py) over a service of the test's own."""
    api = await FakeSlackAPI().start()
    stack: list[Any] = []

    async def make(svc: Service) -> Slack:
        bot = SlackBot(svc, settings, client=web_client(BOT_TOKEN, base_url=api.api_url))
        runner, base = await serve(bot.web_app())
        http = aiohttp.ClientSession()
        stack.append((bot, runner, http))
        return Slack(api, bot, svc, f"{base}/slack/events", http)

    yield make
    for bot, runner, http in stack:
        await bot.close()
        await runner.cleanup()
        await http.close()
    await api.stop()


async def mention(slack: Slack, channel: str, text: str) -> str:
    ts = new_ts()
    assert await slack.send(callback({"type": "app_mention", "channel": channel, "ts": ts,
                                      "text": f"<@{BOT_USER}> {text}"})) == 200
    return ts


def one_reply(slack: Slack, channel: str, ts: str) -> tuple[dict, list[str]]:
    posts = slack.api.called("chat.postMessage", channel=channel, thread_ts=ts)
    assert len(posts) == 1, [p.args["text"] for p in posts]
    edits = [c.args["text"] for c in slack.api.called("chat.update", channel=channel, ts=posts[0].response["ts"])]
    return posts[0].args, edits


async def test_slack_a_page_of_lectures_is_one_message_and_posted_twice_indexes_nothing_twice(
        settings: Settings, models, slack_on, site: FakeMediaServer) -> None:
    url = f"{site.base}/course.html"
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        slack = await slack_on(svc)
        ts = await mention(slack, "C0OCEAN", f"<{url}>")
        await slack.bot.drain()
        _, edits = one_reply(slack, "C0OCEAN", ts)
        final = edits[-1]
        assert final.startswith("⚠️ *Ocean course*: 2 of 5 indexed · 2 failed · 1 not queued"), final
        assert "❌ failed: *missing.mp4* — I couldn't download" in final and "❌ failed: *notes.mp4* — " in final
        assert "⛔ not queued: *talk.mp4* — That link points inside a private network" in final, final
        assert any(e.startswith("⏳ *Ocean course*: ") for e in edits[:-1]), edits
        scope = Scope("slack", TEAM, "C0OCEAN")
        assert await rows_and_jobs(svc, scope, site) == (["ready", "ready"], [1, 1])

        ts = await mention(slack, "C0OCEAN", f"again <{url}>")
        await slack.bot.drain()
        _, edits = one_reply(slack, "C0OCEAN", ts)
        assert "2 of 5 indexed" in edits[-1] and edits[-1].count("☑️ already indexed here: ") == 2, edits[-1]
        assert await rows_and_jobs(svc, scope, site) == (["ready", "ready"], [1, 1])


async def test_slack_the_list_limit_and_the_per_user_limit_name_what_they_leave_out(
        settings: Settings, fake_models, slack_on, site: FakeMediaServer) -> None:
    settings = dataclasses.replace(settings, max_playlist_videos=2, max_jobs_per_user=1)
    async with Service.open(settings, models=fake_models, chat=None) as svc:  # no worker: the job waits
        slack = await slack_on(svc)
        ts = await mention(slack, "C0FOUR", f"<{site.base}/four.html>")
        slack_calls = slack.api.called
        for _ in range(300):
            edits = [c.args["text"] for c in slack_calls("chat.update", channel="C0FOUR")]
            if any("not queued" in e for e in edits):
                break
            await asyncio.sleep(0.1)
        await slack.bot.close()
    _, edits = one_reply(slack, "C0FOUR", ts)
    text = edits[-1]
    assert text.startswith("⏳ *Four*: 0 of 2 indexed · 1 not queued"), text
    assert "⛔ not queued: *m2.mp4* — You already have 1 videos waiting" in text, text
    assert "⏭️ skipped (I queue at most 2 videos of a list): *m3.mp4*, *m4.mp4*" in text, text

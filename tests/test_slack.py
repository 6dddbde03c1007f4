"""The Slack adapter: the real Bolt app and the real core, against a fake Slack Web API.

Events reach the app as signed HTTP requests on its aiohttp endpoint (HTTP mode), or as envelopes
over a Socket Mode WebSocket; the bot's Web API calls go to `FakeSlackAPI` (tests/fakes), which
records them. One module-wide service indexes the volcano lecture once, from a link, in
LECTURE, and the bread lecture once, from a file share, in BREAD; each test asks in its own thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import io
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from PIL import Image

from adapters.slack_app import SlackBot, answer_messages, links_in, plain, run, split_text, to_mrkdwn, web_client
from core import synth
from core.answer.compose import OpenAIChat
from core.config import Settings, SettingsError
from core.models import Answer, Citation, Job, JobStatus, Progress, Scope, Stage, VideoStatus
from core.service import JobEvent, Service, video_id_for
from tests.fakes.serve import serve
from tests.fakes.slack_api import ADMIN, APP_TOKEN, BOT_TOKEN, BOT_USER, MEMBER, TEAM, FakeSlackAPI

# Tests here index a video through the platform fake, in the jailed child, inside their own time:
# on a loaded machine (CI, or two cores shared) one ingest has taken over 60 s
pytestmark = pytest.mark.timeout(180)

SECRET = "fake-signing-secret"
LECTURE, BREAD = "C0LECTURE", "C0BREAD"
LINK_NAME = "%3C%21channel%3E%20volcanoes.mp4"  # yt-dlp titles it "<!channel> volcanoes"

_ts = itertools.count(1)


def new_ts() -> str:
    return f"1700000000.{next(_ts):06d}"


def signed(body: str, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    """Slack's v0 request signature, computed here independently of slack_sdk."""
    stamp = str(int(at if at is not None else time.time()))
    sig = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={sig}"}


def callback(event: dict[str, Any]) -> dict[str, Any]:
    """An Events API `event_callback` body around `event`."""
    return {"token": "unused", "team_id": TEAM, "api_app_id": "A0FAKE", "type": "event_callback",
            "event": {"event_ts": event["ts"], "team": TEAM, "user": "U0ALICE", **event},
            "event_id": f"Ev{next(_ts):08d}", "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}


@dataclass
class Slack:
    api: FakeSlackAPI
    bot: SlackBot
    service: Service
    url: str
    http: aiohttp.ClientSession

    async def send(self, body: dict[str, Any], *, retry: int | None = None, secret: str = SECRET,
                   at: float | None = None) -> int:
        raw = json.dumps(body)
        headers = {"Content-Type": "application/json", **signed(raw, secret, at)}
        if retry is not None:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        async with self.http.post(self.url, data=raw, headers=headers) as r:
            return r.status

    async def mention(self, channel: str, question: str, *, ts: str | None = None,
                      thread_ts: str | None = None) -> str:
        ts = ts or new_ts()
        event = {"type": "app_mention", "channel": channel, "ts": ts, "text": f"<@{BOT_USER}> {question}"}
        if thread_ts:
            event["thread_ts"] = thread_ts
        assert await self.send(callback(event)) == 200
        return ts

    async def command(self, channel: str, text: str, user: str = MEMBER) -> int:
        raw = urlencode({"command": "/vidrag", "text": text, "team_id": TEAM, "channel_id": channel,
                         "user_id": user, "response_url": f"{self.api.url}/respond/{channel}",
                         "trigger_id": "1.2.3", "token": "unused", "api_app_id": "A0FAKE"})
        headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(raw)}
        async with self.http.post(self.url, data=raw, headers=headers) as r:
            return r.status

    def posts(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [c.args for c in self.api.called("chat.postMessage", channel=channel, thread_ts=thread_ts)]

    def said(self, channel: str, thread_ts: str) -> str:
        """Everything posted in a thread (texts and blocks), as one string."""
        return json.dumps(self.posts(channel, thread_ts))


@pytest.fixture(scope="module")
async def slack(tmp_path_factory, models, lecture):
    api = await FakeSlackAPI().start()
    api.serve_media(LINK_NAME, lecture[0])
    settings = Settings(data_dir=tmp_path_factory.mktemp("slack") / "data", clip_pretrained="random",
                        allow_hosts=("127.0.0.1",), slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET,
                        # one test user asks every question of the module: the rate limits have
                        # their own tests (tests/reliability/test_limits.py)
                        questions_per_minute_per_user=1000, questions_per_minute_per_channel=1000)
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        bot = SlackBot(svc, settings, client=web_client(BOT_TOKEN, base_url=api.api_url))
        runner, base = await serve(bot.web_app())
        async with aiohttp.ClientSession() as http:
            yield Slack(api, bot, svc, f"{base}/slack/events", http)
        await bot.close()
        await runner.cleanup()
    await api.stop()


@pytest.fixture(scope="module")
async def link_posted(slack: Slack) -> dict[str, Any]:
    """A link to the volcano lecture posted (no mention) in LECTURE, and indexed."""
    ts = new_ts()
    url = f"{slack.api.url}/media/{LINK_NAME}"
    t0 = time.monotonic()
    status = await slack.send(callback({"type": "message", "channel": LECTURE, "ts": ts,
                                        "text": f"Our lecture: <{url}>"}))
    acked = time.monotonic() - t0
    await slack.bot.drain()
    return {"ts": ts, "status": status, "acked_s": acked}


@pytest.fixture(scope="module")
async def file_shared(slack: Slack, lecture2) -> dict[str, Any]:
    """The bread lecture uploaded to BREAD as a file (fetched with the bot token), and indexed."""
    ts = new_ts()
    url = slack.api.serve_file("T0FAKE-F0BREAD/download/bread.mp4", lecture2[0])
    files = [{"id": "F0BREAD", "name": "bread.mp4", "mimetype": "video/mp4", "filetype": "mp4",
              "url_private_download": url, "url_private": url}]
    status = await slack.send(callback({"type": "message", "subtype": "file_share", "channel": BREAD,
                                        "ts": ts, "text": "", "files": files}))
    await slack.bot.drain()
    return {"ts": ts, "status": status, "url": url}


# ---- indexing -----------------------------------------------------------------------------------
async def test_link_is_acknowledged_at_once_and_indexed_with_one_progress_message(slack, link_posted) -> None:
    assert link_posted["status"] == 200 and link_posted["acked_s"] < 3
    posts = slack.api.called("chat.postMessage", channel=LECTURE, thread_ts=link_posted["ts"])
    assert len(posts) == 1 and "Queued" in posts[0].args["text"]
    reply_ts = posts[0].response["ts"]  # the one reply the bot then edits
    edits = [c.args["text"] for c in slack.api.called("chat.update", channel=LECTURE, ts=reply_ts)]
    assert any("Downloading" in e or "Transcribing" in e for e in edits), edits
    assert "Indexed *‹!channel› volcanoes*" in edits[-1]  # the title, neutralized
    videos = await slack.service.videos(Scope("slack", TEAM, LECTURE))
    assert [v.status.value for v in videos] == ["ready"]


async def test_shared_video_file_is_downloaded_with_the_bot_token(slack, file_shared) -> None:
    downloads = slack.api.called("download", status=None)
    assert [d.status for d in downloads] == [200]
    assert downloads[0].headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert slack.service.auth_headers["slack"] == {"Authorization": f"Bearer {BOT_TOKEN}"}
    edits = [c.args["text"] for c in slack.api.called("chat.update", channel=BREAD)]
    assert "Indexed *Baking bread*" in edits[-1], edits


async def test_file_that_is_not_a_video_gets_a_clear_failure(slack, bad_media) -> None:
    url = slack.api.serve_file("T0FAKE-F0NOTES/download/notes.mp4", bad_media["text"])
    ts = new_ts()
    files = [{"id": "F0NOTES", "name": "notes.mp4", "mimetype": "video/mp4", "url_private_download": url}]
    await slack.send(callback({"type": "message", "subtype": "file_share", "channel": "C0BAD", "ts": ts,
                               "text": "", "files": files}))
    await slack.bot.drain()
    last = slack.api.called("chat.update", channel="C0BAD")[-1].args["text"]
    assert last.startswith("❌ I couldn't index *notes.mp4*:") and "Sorry" not in last, last


async def test_ordinary_chatter_and_non_video_links_are_ignored(slack) -> None:
    before = len(slack.api.calls)
    for text in ("good morning", "docs are at <https://example.com/guide|the guide>"):
        assert await slack.send(callback({"type": "message", "channel": "C0CHAT", "ts": new_ts(), "text": text})) == 200
    await slack.bot.drain()
    assert [c.method for c in slack.api.calls[before:] if c.method != "auth.test"] == []


HOSTILE_TITLE = "[Verify](https://evil.shop/login) <!channel> @everyone https://evil.example/x " * 1_300  # ~100 KB


def harmful(text: str) -> bool:
    """A live link, a live mention, or more than a Slack message should hold."""
    return any(s in text for s in ("https://", "evil.shop", "evil.example", "<!channel>", "@everyone")) \
        or len(text) > 4000


def texts(value: Any) -> list[str]:
    """Every string in a recorded call's arguments (JSON-encoded arguments decoded first)."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return texts(json.loads(value))
        except ValueError:
            pass
    return [value] if isinstance(value, str) else []


async def test_a_hostile_title_and_file_name_are_bounded_and_neutral_everywhere_they_are_posted(
        slack, tmp_path) -> None:
    """Whoever uploads a video chooses its container title and its file name: neither may reach
    the channel as a link or a mention, nor make a message huge."""
    channel = "C0HOSTILE"
    lec = synth.Lecture(HOSTILE_TITLE, [synth.Slide("Volcanoes", ("magma rises",),
                                                    "Magma rises because it is lighter than the rock around it.",
                                                    hold=0.5)])
    clip = await asyncio.to_thread(synth.render, lec, tmp_path / "hostile.mp4", size="640x360")
    url = slack.api.serve_file("T0FAKE-F0HOSTILE/download/evil.shop.mp4", clip)
    files = [{"id": "F0HOSTILE", "name": "evil.shop.mp4", "mimetype": "video/mp4", "url_private_download": url}]
    await slack.send(callback({"type": "message", "subtype": "file_share", "channel": channel, "ts": new_ts(),
                               "text": "", "files": files}))
    await slack.bot.drain()
    await slack.send(callback({"type": "message", "subtype": "file_share", "channel": channel, "ts": new_ts(),
                               "text": "", "files": files}))  # the same file again: "already indexed"
    await slack.bot.drain()
    q = await slack.mention(channel, "Why does magma rise?")
    await slack.bot.drain()
    for sub in ("videos", "status"):
        assert await slack.command(channel, sub) == 200
        await slack.bot.drain()
    listed = slack.api.called("respond", id=channel)[-2].args["text"]
    [video] = await slack.service.videos(Scope("slack", TEAM, channel))
    assert await slack.command(channel, f"forget {video.id}", user=ADMIN) == 200
    await slack.bot.drain()
    job = Job("j-hostile", video.id, Scope("slack", TEAM, channel), f"https://evil.shop/{HOSTILE_TITLE[:2000]}.mp4",
              Stage.DONE)
    for p in (Progress(job.id, video.id, Stage.DONE, 1.0, HOSTILE_TITLE, 10.0),
              Progress(job.id, video.id, Stage.FAILED, 0.0, "", 0.0, HOSTILE_TITLE)):
        await slack.bot._on_job_event(JobEvent(job, p, listened=False))  # as after a restart

    calls = [*slack.api.called("chat.postMessage", channel=channel), *slack.api.called("chat.update", channel=channel),
             *slack.api.called("respond", id=channel), *slack.api.called("files.completeUploadExternal",
                                                                         channel_id=channel)]
    assert {c.method for c in calls} == {"chat.postMessage", "chat.update", "respond", "files.completeUploadExternal"}
    assert len(slack.posts(channel, q)) == 1
    posted = [t for c in calls for t in texts(c.args)]
    assert "Verify" in listed and "evil[.]shop" in listed, listed  # still readable
    assert not [t for t in posted if harmful(t)], [t[:300] for t in posted if harmful(t)]


# ---- answering ----------------------------------------------------------------------------------
async def test_mention_gets_one_threaded_answer_with_the_frame_uploaded_to_that_thread(slack, link_posted) -> None:
    t0 = time.monotonic()
    q = await slack.mention(LECTURE, "Why does molten rock rise?")
    assert time.monotonic() - t0 < 3
    await slack.bot.drain()
    posts = slack.posts(LECTURE, q)
    assert len(posts) == 1
    text = posts[0]["blocks"][0]["text"]["text"]
    stamp = re.search(rf"<{re.escape(slack.api.url)}/media/{LINK_NAME}#t=(\d+)\|0:(\d\d)>", text)
    assert stamp and stamp[1] == str(int(stamp[2])), text  # a timestamp linked to that second
    done = slack.api.called("files.completeUploadExternal", channel_id=LECTURE, thread_ts=q)
    assert len(done) == 1
    file_id = json.loads(done[0].args["files"])[0]["id"]
    upload = slack.api.called("upload", file_id=file_id)
    assert len(upload) == 1 and upload[0].body[:2] == b"\xff\xd8"  # a JPEG


async def test_mention_delivered_as_app_mention_and_as_message_is_answered_once(slack, link_posted) -> None:
    ts = new_ts()
    text = f"<@{BOT_USER}> What kind of lava do shield volcanoes pour out?"
    assert await slack.send(callback({"type": "app_mention", "channel": LECTURE, "ts": ts, "text": text})) == 200
    assert await slack.send(callback({"type": "message", "channel": LECTURE, "ts": ts, "text": text})) == 200
    await slack.bot.drain()
    assert len(slack.posts(LECTURE, ts)) == 1


async def test_retried_delivery_is_answered_once(slack, link_posted) -> None:
    ts = new_ts()
    body = callback({"type": "app_mention", "channel": LECTURE, "ts": ts, "text": f"<@{BOT_USER}> What is magma?"})
    assert await slack.send(body) == 200
    assert await slack.send(body, retry=1) == 200
    assert await slack.send(body, retry=2) == 200
    await slack.bot.drain()
    assert len(slack.posts(LECTURE, ts)) == 1


async def test_bad_signature_gets_401_and_no_work(slack) -> None:
    ts = new_ts()
    link = f"<{slack.api.url}/media/{LINK_NAME}>"
    forged = callback({"type": "message", "channel": "C0FORGED", "ts": ts, "text": link})
    assert await slack.send(forged, secret="not-the-secret") == 401
    assert await slack.send(forged, at=time.time() - 600) == 401  # a replayed, stale request
    await slack.bot.drain()
    assert slack.api.called("chat.postMessage", status=None, channel="C0FORGED") == []
    assert await slack.service.jobs(Scope("slack", TEAM, "C0FORGED")) == []
    assert await slack.service.videos(Scope("slack", TEAM, "C0FORGED")) == []


async def test_rate_limited_post_is_retried_after_retry_after(slack, link_posted) -> None:
    slack.api.rate_limit("chat.postMessage", times=1, retry_after=0)
    q = await slack.mention(LECTURE, "Why does the rock above the magma chamber give way?")
    await slack.bot.drain()
    tries = slack.api.called("chat.postMessage", status=None, channel=LECTURE, thread_ts=q)
    assert [t.status for t in tries] == [429, 200]


async def test_two_channels_stay_apart(slack, link_posted, file_shared) -> None:
    in_bread = await slack.mention(BREAD, "Why does molten rock rise in a volcano?")
    in_lecture = await slack.mention(LECTURE, "What does yeast feed on?")
    empty = await slack.mention("C0EMPTY", "Why does molten rock rise?")
    await slack.bot.drain()
    bread, lecture = slack.said(BREAD, in_bread), slack.said(LECTURE, in_lecture)
    assert "Baking bread" in bread and "volcanoes" not in bread and LINK_NAME not in bread
    assert "volcanoes" in lecture and "Baking bread" not in lecture and "yeast" not in lecture.lower()
    assert "No videos are indexed in this channel yet" in slack.said("C0EMPTY", empty)


async def test_text_from_a_video_cannot_ping_the_channel(slack, link_posted) -> None:
    q = await slack.mention(LECTURE, "How do shield volcanoes differ from stratovolcanoes?")
    await slack.bot.drain()
    said = slack.said(LECTURE, q)
    # the title, as retrieved from the video: defused by the core, then escaped for Slack
    assert "!channel" in said and "volcanoes" in said
    assert "<!channel>" not in said
    uploads = slack.api.called("files.completeUploadExternal", thread_ts=q)
    assert "<!channel>" not in uploads[0].args["files"]


async def test_follow_up_in_the_thread_carries_its_earlier_turns(slack, link_posted, llm, monkeypatch) -> None:
    monkeypatch.setattr(slack.service, "chat", OpenAIChat(llm.url, "pixtral-fake"))
    llm.enqueue("Molten rock rises because it is less dense than the rock around it [1]. <!here> & co",
                "Shield volcanoes pour out runny basalt lava [1].")
    first = await slack.mention(LECTURE, "Why does molten rock rise?")
    await slack.bot.drain()
    follow = await slack.mention(LECTURE, "And what lava do shield volcanoes have?", thread_ts=first)
    await slack.bot.drain()
    answers = slack.posts(LECTURE, first)
    assert len(answers) == 2 and slack.posts(LECTURE, follow) == []
    assert "less dense" in llm.last_text() and "Why does molten rock rise?" in llm.last_text()
    text = answers[0]["blocks"][0]["text"]["text"]
    assert "<!here>" not in text and "&amp; co" in text and "|0:0" in text, text


# ---- the slash command --------------------------------------------------------------------------
async def test_slash_videos_and_status_answer_ephemerally(slack, link_posted) -> None:
    for sub in ("videos", "status", "help"):
        assert await slack.command(LECTURE, sub) == 200
        await slack.bot.drain()
    replies = slack.api.called("respond", id=LECTURE)[-3:]
    assert all(r.args["response_type"] == "ephemeral" for r in replies)
    videos, status, help_ = (r.args["text"] for r in replies)
    assert "‹!channel› volcanoes" in videos and "ready" in videos
    assert "1 video ready" in status and "Nothing is being indexed" in status
    assert "/vidrag forget" in help_


async def test_slash_forget_removes_a_video_of_this_channel_only(slack, tmp_path) -> None:
    clip = await asyncio.to_thread(
        synth.render, synth.Lecture("Tiny", [synth.Slide("Hello", ("one line",), "Hello there.", hold=0.5)]),
        tmp_path / "tiny.mp4", size="640x360")
    url = slack.api.serve_media("tiny.mp4", clip)
    await slack.send(callback({"type": "message", "channel": "C0FORGET", "ts": new_ts(), "text": f"<{url}>"}))
    await slack.bot.drain()
    [video] = await slack.service.videos(Scope("slack", TEAM, "C0FORGET"))
    assert await slack.command(LECTURE, f"forget {video.id}", user=ADMIN) == 200  # another channel: not found
    assert await slack.command("C0FORGET", f"forget {video.id}", user=ADMIN) == 200
    await slack.bot.drain()
    assert "There is no video" in slack.api.called("respond", id=LECTURE)[-1].args["text"]
    assert "Removed *tiny*" in slack.api.called("respond", id="C0FORGET")[-1].args["text"]
    assert await slack.service.videos(Scope("slack", TEAM, "C0FORGET")) == []


async def test_slash_forget_is_refused_to_members_who_neither_posted_it_nor_are_admins(slack, link_posted) -> None:
    [video] = await slack.service.videos(Scope("slack", TEAM, LECTURE))
    assert video.requested_by == MEMBER  # who posted the link
    slack.api.users["U0BOB"] = {"is_admin": False, "is_owner": False}
    for user in ("U0BOB", "U0STRANGER"):  # an ordinary member; someone users.info does not know
        assert await slack.command(LECTURE, f"forget {video.id}", user=user) == 200
        await slack.bot.drain()
        reply = slack.api.called("respond", id=LECTURE)[-1].args
        assert reply["response_type"] == "ephemeral"
        assert reply["text"].startswith("Only the person who posted this video or a workspace admin or owner can "
                                        "remove it; nothing was removed."), reply
        assert ("Slack did not tell me" in reply["text"]) == (user == "U0STRANGER")
        assert slack.api.called("users.info", status=None, user=user)
    assert [v.id for v in await slack.service.videos(Scope("slack", TEAM, LECTURE))] == [video.id]


async def test_who_posted_a_video_may_forget_it_in_a_direct_message(slack) -> None:
    """A DM has no admins but the workspace's: there, as in a channel, the poster may forget a
    video and nobody else but an admin (issue 22: a DM had no check at all)."""
    dm = Scope("slack", TEAM, "D0ALICE")
    ids = {}
    for who in (MEMBER, "U0BOB"):
        ids[who] = video_id_for(dm, f"https://example.org/{who}.mp4")
        store = slack.service.store(dm)
        await store.add_video(ids[who], f"https://example.org/{who}.mp4", "", f"Talk of {who}", who)
        await store.update_video(ids[who], status=VideoStatus.READY)
    for video_id in (ids["U0BOB"], ids[MEMBER]):
        assert await slack.command("D0ALICE", f"forget {video_id}", user=MEMBER) == 200
        await slack.bot.drain()
    refused, removed = (c.args["text"] for c in slack.api.called("respond", id="D0ALICE")[-2:])
    assert refused.startswith("Only the person who posted this video") and "Removed *Talk of U0ALICE*" in removed
    assert [v.id for v in await slack.service.videos(dm)] == [ids["U0BOB"]]


async def test_mentions_past_the_rate_limit_open_no_thread(tmp_path, models) -> None:
    """40 mentions in a few seconds, 3 questions a minute allowed to a person: 3 threads, and
    each other question gets one short reply to the asker alone (chat.postEphemeral), no thread."""
    api = await FakeSlackAPI().start()
    settings = Settings(data_dir=tmp_path / "data", clip_pretrained="random", slack_bot_token=BOT_TOKEN,
                        slack_signing_secret=SECRET, questions_per_minute_per_user=3)
    try:
        async with Service.open(settings, models=models, chat=None) as svc:
            bot = SlackBot(svc, settings, client=web_client(BOT_TOKEN, base_url=api.api_url))
            runner, base = await serve(bot.web_app())
            try:
                async with aiohttp.ClientSession() as http:
                    limited = Slack(api, bot, svc, f"{base}/slack/events", http)
                    asked = [await limited.mention(LECTURE, f"Why do volcanoes erupt ({i})?") for i in range(40)]
                    await bot.drain()
            finally:
                await bot.close()
                await runner.cleanup()
    finally:
        await api.stop()
    threads = {c.args["thread_ts"] for c in api.called("chat.postMessage", channel=LECTURE)}
    assert len(threads) == 3 and threads <= set(asked)
    refusals = api.called("chat.postEphemeral", channel=LECTURE, user=MEMBER)
    assert len(refusals) == 37 and all("asking faster" in c.args["text"] for c in refusals)


async def test_slash_status_counts_the_attempt_under_way_so_a_first_try_shows_no_number(slack, monkeypatch) -> None:
    """`Job.attempts` already counts the attempt under way (the lease counted it). The service's
    jobs are stood in for, as a running job's attempt cannot be held still in the real queue."""
    scope = Scope("slack", TEAM, "C0ATTEMPTS")
    first = Job("j1", "v1", scope, "https://example.org/first.mp4", Stage.TRANSCRIBE, attempts=1,
                status=JobStatus.RUNNING)
    second = Job("j2", "v2", scope, "https://example.org/second.mp4", Stage.FETCH, attempts=2,
                 status=JobStatus.RUNNING)

    async def jobs(s: Scope) -> list[Job]:
        return [first, second] if s == scope else []

    monkeypatch.setattr(slack.service, "jobs", jobs)
    assert await slack.command("C0ATTEMPTS", "status") == 200
    await slack.bot.drain()
    lines = slack.api.called("respond", id="C0ATTEMPTS")[-1].args["text"].splitlines()
    [one] = [line for line in lines if "first" in line]
    [two] = [line for line in lines if "second" in line]
    assert "attempt" not in one and "transcribing" in one, lines
    assert "(attempt 2)" in two, lines


# ---- what a video is about -----------------------------------------------------------------------
def chapter_lines(blocks: list[dict[str, Any]]) -> list[str]:
    text = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    return text.split("*Chapters*\n", 1)[1].splitlines()


async def test_indexed_message_carries_the_chapters_as_blocks_linked_to_their_second(slack, link_posted, lecture) -> None:
    posts = slack.api.called("chat.postMessage", channel=LECTURE, thread_ts=link_posted["ts"])
    final = slack.api.called("chat.update", channel=LECTURE, ts=posts[0].response["ts"])[-1].args
    blocks = final["blocks"]
    assert "Indexed *‹!channel› volcanoes*" in final["text"] and blocks[0]["text"]["text"] == final["text"]
    lines = chapter_lines(blocks)
    assert [line.split("> ", 1)[1] for line in lines] == [s.title for s in lecture[1].slides]
    media = re.escape(f"{slack.api.url}/media/{LINK_NAME}")
    assert all(re.match(rf"<{media}#t=(\d+)\|0:\d\d> ", line) for line in lines), lines
    assert "<!channel>" not in json.dumps(blocks)  # the title, neutralized and escaped


async def test_a_summary_comes_by_mention_in_the_thread_and_by_slash_command_privately(slack, link_posted) -> None:
    q = await slack.mention(LECTURE, "What is this video about?")
    await slack.bot.drain()
    (posted,) = slack.posts(LECTURE, q)
    assert posted["text"].startswith("📋 *‹!channel› volcanoes*") and chapter_lines(posted["blocks"])
    assert re.search(r"\|0:0\d>", posted["blocks"][0]["text"]["text"])  # a sentence's moment, linked
    assert await slack.command(LECTURE, "summary") == 200
    await slack.bot.drain()
    reply = slack.api.called("respond", id=LECTURE)[-1].args
    assert reply["response_type"] == "ephemeral" and reply["blocks"] == posted["blocks"]
    assert await slack.command(LECTURE, "summary the bread video") == 200
    await slack.bot.drain()
    assert "names no video" in slack.api.called("respond", id=LECTURE)[-1].args["text"]


async def test_post_summary_off_leaves_the_chapters_out_of_a_job_heard_after_a_restart(slack, link_posted,
                                                                                       monkeypatch) -> None:
    [video] = await slack.service.videos(Scope("slack", TEAM, LECTURE))
    job = Job("j-sum", video.id, Scope("slack", TEAM, LECTURE), "https://example.org/v.mp4", Stage.DONE)
    done = JobEvent(job, Progress(job.id, video.id, Stage.DONE, 1.0, video.title, video.duration), listened=False)
    before = len(slack.api.called("chat.postMessage", channel=LECTURE))
    await slack.bot._on_job_event(done)
    monkeypatch.setattr(slack.bot, "settings", dataclasses.replace(slack.bot.settings, post_summary=False))
    await slack.bot._on_job_event(done)
    on, off = (c.args for c in slack.api.called("chat.postMessage", channel=LECTURE)[before:])
    assert chapter_lines(on["blocks"]) and "blocks" not in off


# ---- Socket Mode --------------------------------------------------------------------------------
async def test_socket_mode_routes_events_to_the_same_handlers_once(slack, link_posted) -> None:
    handler = slack.bot.socket_mode(APP_TOKEN)
    await handler.connect_async()
    try:
        ts = new_ts()
        body = callback({"type": "app_mention", "channel": LECTURE, "ts": ts,
                         "text": f"<@{BOT_USER}> Why does molten rock rise?"})
        for n, attempt in enumerate((0, 1)):  # the second is Slack redelivering it
            ack = await slack.api.push({"envelope_id": f"env-{ts}-{n}", "type": "events_api", "payload": body,
                                        "accepts_response_payload": False, "retry_attempt": attempt,
                                        "retry_reason": "timeout" if attempt else ""})
            assert ack == {"envelope_id": f"env-{ts}-{n}"}
        await slack.bot.drain()
    finally:
        await handler.close_async()
    assert slack.api.called("apps.connections.open")
    assert len(slack.posts(LECTURE, ts)) == 1


# ---- the `web` process ---------------------------------------------------------------------------
async def test_web_process_listens_on_port_and_rejects_unsigned_events(slack, unused_tcp_port, monkeypatch) -> None:
    monkeypatch.setenv("PORT", str(unused_tcp_port))  # as a platform running the Procfile's `web` sets it
    server = asyncio.create_task(run(slack.service, slack.service.settings, http=True))
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        for _ in range(100):
            try:
                async with slack.http.get(f"{base}/healthz") as r:
                    assert r.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        body = json.dumps(callback({"type": "app_mention", "channel": LECTURE, "ts": new_ts(), "text": "hi"}))
        async with slack.http.post(f"{base}/slack/events", data=body) as r:
            assert r.status == 401
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def test_malformed_timestamp_header_gets_401_before_the_sdk_reads_it(slack) -> None:
    """Not a number (or none at all): refused as unsigned, not answered with a 500 and a traceback."""
    ts = new_ts()
    body = json.dumps(callback({"type": "message", "channel": "C0STAMP", "ts": ts,
                                "text": f"<{slack.api.url}/media/{LINK_NAME}>"}))
    good = signed(body)
    stamps = ["not-a-number", "1e9", " ", "9" * 5000, None]  # 5000 digits: past int()'s digit limit
    for stamp in stamps:
        headers = {"Content-Type": "application/json", "X-Slack-Signature": good["X-Slack-Signature"]}
        if stamp is not None:
            headers["X-Slack-Request-Timestamp"] = stamp
        async with slack.http.post(slack.url, data=body, headers=headers) as r:
            assert r.status == 401, (stamp and stamp[:20], r.status, await r.text())
    await slack.bot.drain()
    assert slack.api.called("chat.postMessage", status=None, channel="C0STAMP") == []
    assert await slack.service.jobs(Scope("slack", TEAM, "C0STAMP")) == []


async def test_non_ascii_signature_and_undecodable_body_are_refused_not_answered_with_500(slack) -> None:
    body = json.dumps(callback({"type": "message", "channel": "C0STAMP", "ts": new_ts(), "text": "hello"}))
    fresh = signed(body)
    headers = {"Content-Type": "application/json", **fresh, "X-Slack-Signature": "v0=é" + "0" * 62}
    async with slack.http.post(slack.url, data=body, headers=headers) as r:
        assert r.status == 401
    raw = b"\xff\xfe" + body.encode()
    headers = {"Content-Type": "application/json", **signed(raw.decode("latin-1"))}
    async with slack.http.post(slack.url, data=raw, headers=headers) as r:
        assert r.status == 400


async def test_web_process_refuses_to_start_without_a_signing_secret(slack) -> None:
    settings = dataclasses.replace(slack.service.settings, slack_signing_secret="")
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET"):
        await run(slack.service, settings, http=True)


# ---- formatting (pure functions) ----------------------------------------------------------------
def test_timestamps_become_links_and_everything_else_is_escaped() -> None:
    c = Citation("v1", "<@U1> talk", 65.0, 70.0, "https://youtu.be/x?t=65s&a=<b>|c")
    text = to_mrkdwn(Answer("<!channel> see [1:05] & [9:99] <https://evil|click>", (c,)))
    assert text.startswith("&lt;!channel&gt; see <https://youtu.be/x?t=65s&amp;a=%3Cb%3E%7Cc|1:05> &amp; [9:99]")
    assert "<https://evil" not in text
    assert "*‹@U1› talk*" in answer_messages(Answer("x", (c,)))[0]["blocks"][-1]["elements"][0]["text"]


def test_long_answers_fit_slack_block_and_message_limits() -> None:
    long = "\n".join(f"• [0:{i % 60:02d}] " + "word " * 150 for i in range(200))  # ~150,000 characters
    messages = answer_messages(Answer(long))
    assert len(messages) > 1
    for m in messages:
        assert len(m["blocks"]) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in m["blocks"] if b["type"] == "section")
        assert sum(len(b["text"]["text"]) for b in m["blocks"] if b["type"] == "section") <= 40_000
    assert " ".join(split_text("a " * 5000, 3000)).split() == ["a"] * 5000


def test_message_links_and_text_are_read_from_slack_markup() -> None:
    text = f"<@{BOT_USER}> what about <https://youtu.be/abc?a=1&amp;b=2|youtu.be/abc> &amp; 1 &lt; 2?"
    assert links_in(text) == ["https://youtu.be/abc?a=1&b=2"]
    assert plain(text) == "what about https://youtu.be/abc?a=1&b=2 & 1 < 2?"


async def test_a_closed_bot_stops_hearing_the_service(slack) -> None:
    """The service outlives an adapter (a crashed one, in `python -m bot`): closing removes its hook."""
    before = list(slack.service.runner.hooks)
    bot = SlackBot(slack.service, slack.service.settings, client=web_client(BOT_TOKEN, base_url=slack.api.api_url))
    assert len(slack.service.runner.hooks) == len(before) + 1
    await bot.close()
    assert slack.service.runner.hooks == before


async def test_job_finished_after_a_restart_is_reported_in_its_channel(slack) -> None:
    """A job queued before a restart has no progress message in this process: the adapter hears
    it through Service.on_job_event and tells the channel how it ended."""
    from core.models import Job, Progress, Scope, Stage
    from core.service import JobEvent

    job = Job("j1", "v1", Scope("slack", "T0FAKE", "C0RESTART"), "https://example.org/talk.mp4", Stage.FAILED)
    failed = Progress("j1", "v1", Stage.FAILED, 0.0, "", 0.0, "That video is 200 minutes long; my limit is 90 minutes.")
    await slack.bot._on_job_event(JobEvent(job, failed, listened=False))
    await slack.bot._on_job_event(JobEvent(job, failed, listened=True))
    posts = slack.api.called("chat.postMessage", channel="C0RESTART")
    assert len(posts) == 1 and "200 minutes long" in posts[0].args["text"] and "talk.mp4" in posts[0].args["text"]


# ---- a screenshot finds its moment ---------------------------------------------------------------
async def test_a_shared_screenshot_is_answered_in_its_thread_with_the_stored_frame(
        slack, link_posted, lecture, tmp_path) -> None:
    """A picture shared with a mention is fetched with the bot token and answered in the thread
    with the slide's timestamp and the stored frame uploaded (never the posted picture)."""
    key = Scope("slack", TEAM, LECTURE).key
    rows = await slack.service.catalog.rows('SELECT "time", jpeg FROM frames WHERE scope=? ORDER BY "time"', (key,))
    start, end = lecture[1].times[2]
    stored = next(bytes(r["jpeg"]) for r in rows if start - 0.1 <= r["time"] < end)
    im = Image.open(io.BytesIO(stored))
    w, h = im.size
    shot = tmp_path / "shot.png"
    im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w // 2, h // 2)).save(shot, "PNG")
    url = slack.api.serve_file("T0FAKE-F0SHOT/download/shot.png", shot)
    files = [{"id": "F0SHOT", "name": "shot.png", "mimetype": "image/png", "filetype": "png",
              "url_private_download": url, "url_private": url}]
    ts = new_ts()
    assert await slack.send(callback({"type": "app_mention", "channel": LECTURE, "ts": ts, "files": files,
                                      "text": f"<@{BOT_USER}> where is this from?"})) == 200
    await slack.bot.drain()
    fetched = [d for d in slack.api.called("download", status=None) if d.path.endswith("shot.png")]
    assert [d.headers["Authorization"] for d in fetched] == [f"Bearer {BOT_TOKEN}"]
    said = slack.said(LECTURE, ts)
    assert "That picture is from" in said and f"#t={int(start)}|" in said, said
    done = slack.api.called("files.completeUploadExternal", channel_id=LECTURE, thread_ts=ts)
    file_id = json.loads(done[0].args["files"])[0]["id"]
    (upload,) = slack.api.called("upload", file_id=file_id)
    assert upload.body == stored


# ---- clips --------------------------------------------------------------------------------------
async def press_clip(slack: Slack, channel: str, root: str, value: str) -> int:
    """A member presses a "Clip" button in the thread of `root`: Slack's block_actions payload."""
    payload = {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": MEMBER}, "api_app_id": "A0FAKE",
               "token": "unused", "trigger_id": "1.2.3", "channel": {"id": channel, "name": "lecture"},
               "container": {"type": "message", "message_ts": new_ts(), "channel_id": channel, "thread_ts": root},
               "message": {"type": "message", "ts": new_ts(), "thread_ts": root, "text": "answer"},
               "response_url": f"{slack.api.url}/respond/{channel}",
               "actions": [{"action_id": "vidrag-clip", "block_id": "b1", "value": value, "type": "button",
                            "action_ts": new_ts()}]}
    raw = urlencode({"payload": json.dumps(payload)})
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(raw)}
    async with slack.http.post(slack.url, data=raw, headers=headers) as r:
        return r.status


def uploaded_clips(slack: Slack, thread_ts: str) -> list[tuple[dict[str, Any], bytes]]:
    """(files.completeUploadExternal's arguments, the MP4's bytes) of each clip uploaded to the thread."""
    out = []
    for done in slack.api.called("files.completeUploadExternal", channel_id=LECTURE, thread_ts=thread_ts):
        file_id = json.loads(done.args["files"])[0]["id"]
        body = slack.api.called("upload", file_id=file_id)[0].body
        if body[4:8] == b"ftyp":
            out.append((done.args, body))
    return out


async def test_clip_by_mention_and_by_button_uploads_the_moment_to_the_thread(slack, link_posted, tmp_path) -> None:
    from tests.test_clip import _probe

    q = await slack.mention(LECTURE, "Why does molten rock rise?")
    await slack.bot.drain()
    (answer,) = slack.posts(LECTURE, q)
    (button,) = answer["blocks"][-1]["elements"]
    assert answer["blocks"][-1]["type"] == "actions" and button["action_id"] == "vidrag-clip"

    await slack.mention(LECTURE, "clip", thread_ts=q)
    await slack.bot.drain()
    ((args, mp4),) = uploaded_clips(slack, q)
    assert args["initial_comment"].startswith("🎬 ") and len(mp4) <= slack.service.settings.max_clip_mb * 2**20
    info = await asyncio.to_thread(_probe, mp4, tmp_path)
    assert info["codecs"] == ["aac", "h264"]

    t0 = time.monotonic()
    assert await press_clip(slack, LECTURE, q, button["value"]) == 200
    assert time.monotonic() - t0 < 3  # acknowledged at once; the clip comes after
    await slack.bot.drain()
    assert len(uploaded_clips(slack, q)) == 2

    before = len(slack.api.called("files.completeUploadExternal"))
    assert await press_clip(slack, LECTURE, q, "vidrag-clip:x/../../y:1:2") == 200  # not a value of ours
    await slack.bot.drain()
    assert len(slack.api.called("files.completeUploadExternal")) == before


async def test_clip_in_a_thread_without_an_answer_says_so(slack, link_posted) -> None:
    root = await slack.mention(LECTURE, "clip")
    await slack.bot.drain()
    assert "There's no answer in this thread to clip" in slack.said(LECTURE, root)

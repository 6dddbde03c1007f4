"""The Discord adapter, end to end: the real discord.py client (gateway, HTTP, models, CommandTree)
talking to FakeDiscord on 127.0.0.1, over the real core (Milvus Lite, SQLite, whisper, MiniLM,
OCR, random-weight CLIP). Videos are the rendered lectures, served by FakeDiscord as a link
(`/media/…`, fetched by yt-dlp's generic extractor) or as an attachment (`/cdn/…`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from adapters import discord_bot
from adapters.discord_bot import VidragBot, render_answer, split_message
from core.config import Settings
from core.models import Answer, Citation, Scope, Stage, VideoStatus
from core.service import Service, video_id_for
from tests.conftest import ffmpeg
from tests.fakes.discord_server import GUILD_ID, OWNER_ID, FakeDiscord

# Tests here index a video through the platform fake, in the jailed child, inside their own time:
# on a loaded machine (CI, or two cores shared) one ingest has taken over 60 s
pytestmark = pytest.mark.timeout(180)

BOB = 410000000000000099  # a member who posted nothing and, in these tests, manages nothing


def pings_nobody(allowed_mentions: dict) -> bool:
    """AllowedMentions.none() on the wire: nothing parsed, no user or role listed, no reply ping."""
    return allowed_mentions.get("parse") == [] and not allowed_mentions.get("users") \
        and not allowed_mentions.get("roles") and not allowed_mentions.get("replied_user")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The fake Discord (links, attachments) lives on 127.0.0.1, which the URL guard must allow."""
    return Settings(data_dir=tmp_path / "data", clip_pretrained="random", allow_hosts=("127.0.0.1",),
                    questions_per_minute_per_user=1000, questions_per_minute_per_channel=1000)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch, lecture, lecture2) -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    server.point_discord_py_at(monkeypatch)
    server.files["volcanoes.mp4"] = lecture[0]
    server.files["bread.mp4"] = lecture2[0]
    yield server
    await server.stop()


@contextlib.asynccontextmanager
async def connected(service: Service, settings: Settings) -> AsyncIterator[VidragBot]:
    bot = VidragBot(service, settings, guild_ready_timeout=0.1)  # the fake has one guild: no need to wait 2 s
    task = asyncio.create_task(bot.start("fake-token"))
    await asyncio.wait_for(bot.wait_until_ready(), 30)
    try:
        yield bot
    finally:
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def bot(service: Service, settings: Settings, fake: FakeDiscord) -> AsyncIterator[VidragBot]:
    async with connected(service, settings) as b:
        yield b


@pytest.fixture
async def llm_bot(llm_service: Service, settings: Settings, fake: FakeDiscord) -> AsyncIterator[VidragBot]:
    async with connected(llm_service, settings) as b:
        yield b


@pytest.fixture(scope="session")
def everyone_video(media_dir: Path, lecture) -> Path:
    """The volcano lecture whose title (text the bot quotes back) pings @everyone and a role."""
    out = media_dir / "everyone.mp4"
    ffmpeg("-i", str(lecture[0]), "-c", "copy", "-metadata", "title=@everyone <@&123> volcano night", str(out))
    return out


# ---- helpers ------------------------------------------------------------------------------------
async def outcome(fake: FakeDiscord, posted: dict) -> dict:
    """The bot's progress reply to `posted`, once it shows the end of the job (✅ or ❌)."""
    def done() -> dict | None:
        return next((m for m in fake.messages.values()
                     if m.get("message_reference", {}).get("message_id") == posted["id"]
                     and m["content"].startswith(("✅", "❌"))), None)
    return await fake.wait_for(done, within=60)


async def index_link(fake: FakeDiscord, channel: str = "general", name: str = "volcanoes.mp4") -> dict:
    reply = await outcome(fake, await fake.post(channel, f"Tonight's talk: {fake.url}/media/{name}"))
    assert reply["content"].startswith("✅"), reply["content"]
    return reply


async def thread_reply(fake: FakeDiscord, thread_id: str, count: int = 1) -> list[dict]:
    return await fake.wait_for(lambda: (m := fake.bot_messages(thread_id)) and len(m) >= count and m)


def sent(fake: FakeDiscord, message: dict):
    """The REST request that created `message`."""
    return next(r for r in fake.calls("POST", f"/channels/{message['channel_id']}/messages")
                if r.json.get("content") == message["content"])


async def interaction_replies(fake: FakeDiscord, token: str, count: int = 1) -> list[dict]:
    return await fake.wait_for(
        lambda: (m := [x for x in fake.messages.values() if x.get("interaction_token") == token])
        and len(m) >= count and m)


def first_response_type(fake: FakeDiscord, token: str) -> int:
    return next(r for r in fake.requests if r.path.endswith(f"/{token}/callback")).json["type"]


# ---- indexing -----------------------------------------------------------------------------------
async def test_posted_link_is_indexed_on_one_edited_message(bot: VidragBot, fake: FakeDiscord) -> None:
    posted = await fake.post("general", f"Tonight's talk: {fake.url}/media/volcanoes.mp4")
    await fake.wait_for(lambda: fake.calls("PATCH", "/messages/"))  # the job has started
    status = await fake.slash("general", "status")
    reply = await outcome(fake, posted)
    assert reply["content"].startswith("✅ Indexed **volcanoes**"), reply["content"]
    assert [m for m in fake.bot_messages("general") if "interaction_token" not in m] == [reply]  # one message…
    assert len(fake.calls("PATCH", f"/messages/{reply['id']}")) >= 3  # …edited through the stages
    assert "\n⏳ **volcanoes" in (await interaction_replies(fake, status))[0]["content"]
    listed = await fake.slash("general", "videos")
    assert "✅ **volcanoes**" in (await interaction_replies(fake, listed))[0]["content"]
    assert first_response_type(fake, status) == first_response_type(fake, listed) == 5  # deferred


async def test_uploaded_video_is_indexed(bot: VidragBot, fake: FakeDiscord, lecture2) -> None:
    posted = await fake.post("general", "", attachments=[("bread.mp4", "video/mp4", lecture2[0])])
    reply = await outcome(fake, posted)
    assert reply["content"].startswith("✅ Indexed **Baking bread**"), reply["content"]


async def test_bad_link_gets_a_clear_reply(bot: VidragBot, fake: FakeDiscord) -> None:
    missing = await outcome(fake, await fake.post("general", f"{fake.url}/media/missing.mp4"))
    private = await outcome(fake, await fake.post("general", "look http://10.1.2.3/talk.mp4", mention_bot=True))
    assert "I couldn't download that video" in missing["content"]
    assert "private network" in private["content"]


async def test_non_video_attachment_gets_a_clear_reply(bot: VidragBot, fake: FakeDiscord, bad_media) -> None:
    fake_mp4 = await outcome(fake, await fake.post("general", "", attachments=[
        ("notes.mp4", "video/mp4", bad_media["text"])]))
    pdf = await fake.post("general", "my slides", mention_bot=True,
                          attachments=[("slides.pdf", "application/pdf", b"%PDF-1.4 not a video")])
    refusal = await fake.wait_for(lambda: next(
        (m for m in fake.bot_messages("general") if m.get("message_reference", {}).get("message_id") == pdf["id"]),
        None))
    assert fake_mp4["content"].startswith("❌ I couldn't index **notes.mp4**:"), fake_mp4["content"]
    assert "video" in fake_mp4["content"].split(":", 1)[1]
    assert refusal["content"] == "I can only index video files, and **slides[.]pdf** doesn't look like one."


async def test_link_in_chat_about_something_else_is_left_alone(bot: VidragBot, fake: FakeDiscord) -> None:
    await fake.post("general", "good read: https://example.com/news/volcano-article")
    await fake.post("general", "", mention_bot=True)  # a bare mention: the bot explains itself
    await fake.wait_for(lambda: fake.bot_messages("general"))
    # both messages' handlers have run to their end (as the Slack test's drain()): a reply to the
    # link, or a second one to the mention, would be in the list by now
    while handlers := [t for t in asyncio.all_tasks() if t.get_name() == "discord.py: on_message"]:
        await asyncio.gather(*handlers, return_exceptions=True)
    assert [m["content"] for m in fake.bot_messages("general")] == [discord_bot.HELP]


# ---- answering ----------------------------------------------------------------------------------
async def test_mention_gets_thread_reply_citing_timestamps_with_frame(bot: VidragBot, fake: FakeDiscord) -> None:
    await index_link(fake)
    question = await fake.post("general", "Why do volcanoes erupt?", mention_bot=True)
    (answer,) = await thread_reply(fake, question["id"])
    (thread,) = fake.calls("POST", f"/messages/{question['id']}/threads")
    assert thread.json["name"] == "Why do volcanoes erupt?"
    assert f"](<{fake.url}/media/volcanoes.mp4#t=" in answer["content"]  # [m:ss] linked to the moment
    request = sent(fake, answer)
    ((name, jpeg),) = request.files.values()
    assert name.startswith("frame-") and name.endswith(".jpg") and jpeg[:3] == b"\xff\xd8\xff"
    assert fake.calls("POST", f"/channels/{question['id']}/typing")  # it typed while it worked
    assert pings_nobody(request.json["allowed_mentions"])


async def test_follow_up_in_thread_carries_the_earlier_turn(llm_bot: VidragBot, fake: FakeDiscord, llm) -> None:
    await index_link(fake)
    llm.enqueue("Gas comes out of the magma and the pressure builds until the rock gives way [1].",
                "Runny basalt lava [1].")
    question = await fake.post("general", "Why do volcanoes erupt?", mention_bot=True)
    await thread_reply(fake, question["id"])
    await fake.post(question["id"], "And what lava do shield volcanoes have?", mention_bot=True)
    first, second = await thread_reply(fake, question["id"], count=2)
    assert "pressure builds" in first["content"] and "Runny basalt lava" in second["content"]
    turns = [(m["role"], m["content"]) for m in llm.history[-1]["messages"][1:-1]]
    assert turns[0] == ("user", "Why do volcanoes erupt?")
    assert turns[1][0] == "assistant" and "pressure builds" in turns[1][1]
    assert len(fake.calls("POST", "/threads")) == 1  # the follow-up stayed in the thread


async def test_two_channels_stay_apart(bot: VidragBot, fake: FakeDiscord) -> None:
    await index_link(fake, "general")
    q = await fake.post("random", "Why do volcanoes erupt?", mention_bot=True)
    (other,) = await thread_reply(fake, q["id"])
    assert other["content"].startswith("No videos are indexed in this channel yet")
    listed = await fake.slash("random", "videos")
    assert (await interaction_replies(fake, listed))[0]["content"].startswith("No videos in this channel yet")
    general = bot.get_channel(int(fake.channel_id("general")))
    (video,) = await bot.service.videos(discord_bot.scope_for(general))
    forget = await fake.slash("random", "forget", {"video": video.id})
    assert "There is no video" in (await interaction_replies(fake, forget))[0]["content"]
    dm = await fake.post(str(fake.snowflake()), "Why do volcanoes erupt?", dm=True)
    (in_dm,) = await fake.wait_for(lambda: fake.bot_messages(dm["channel_id"]))
    assert in_dm["content"].startswith("No videos are indexed in this channel yet")
    assert len(await bot.service.videos(discord_bot.scope_for(general))) == 1


async def test_everyone_in_retrieved_text_does_not_ping(bot: VidragBot, fake: FakeDiscord, everyone_video) -> None:
    progress = await outcome(fake, await fake.post("general", "", attachments=[
        ("party.mp4", "video/mp4", everyone_video)]))
    question = await fake.post("general", "Why do volcanoes erupt?", mention_bot=True)
    (answer,) = await thread_reply(fake, question["id"])
    # the retrieved title is quoted, defused by the core (no live @everyone or role mention)
    assert "everyone" in answer["content"] and "volcano night" in answer["content"]
    assert "@everyone" not in answer["content"] and "<@&123>" not in answer["content"]
    assert pings_nobody(sent(fake, answer).json["allowed_mentions"])
    edits = fake.calls("PATCH", f"/messages/{progress['id']}")
    assert "everyone" in edits[-1].json["content"] and "@everyone" not in edits[-1].json["content"]
    assert "<@&123>" not in edits[-1].json["content"] and pings_nobody(edits[-1].json["allowed_mentions"])


# ---- slash commands -----------------------------------------------------------------------------
async def test_slash_ask_answers_in_a_thread_on_the_question(bot: VidragBot, fake: FakeDiscord) -> None:
    await index_link(fake)
    token = await fake.slash("general", "ask", {"question": "What kind of lava do shield volcanoes pour out?"})
    (echo,) = await interaction_replies(fake, token)
    assert first_response_type(fake, token) == 5  # deferred within Discord's 3 s
    assert echo["content"] == "**Question:** What kind of lava do shield volcanoes pour out?"
    (answer,) = await thread_reply(fake, echo["id"])
    assert "[" in answer["content"] and "#t=" in answer["content"]
    assert sent(fake, answer).files


async def test_slash_forget_autocompletes_and_needs_manage_messages_or_having_posted_it(bot: VidragBot, fake: FakeDiscord) -> None:
    await index_link(fake)
    token = await fake.slash("general", "forget", {"video": "volc"}, kind=4, focused="video")
    choices = (await fake.wait_for(lambda: next(
        (r for r in fake.requests if r.path.endswith(f"/{token}/callback")), None))).json
    assert choices["type"] == 8
    ((choice),) = choices["data"]["choices"]
    assert choice["name"].startswith("volcanoes (")
    denied = await fake.slash("general", "forget", {"video": choice["value"]}, permissions=0, user=(BOB, "bob"))
    (no,) = await fake.wait_for(lambda: [r for r in fake.requests if r.path.endswith(f"/{denied}/callback")])
    assert no.json["data"]["flags"] == 64 and "manage messages" in no.json["data"]["content"]
    allowed = await fake.slash("general", "forget", {"video": choice["value"]})
    assert (await interaction_replies(fake, allowed))[0]["content"].startswith("🗑️ Removed **volcanoes** from this channel")
    assert await bot.service.videos(discord_bot.scope_for(bot.get_channel(int(fake.channel_id("general"))))) == []
    assert [c["name"] for c in fake.commands] == ["videos", "ask", "forget", "summary", "status"]  # synced in setup_hook


# ---- what a video is about -----------------------------------------------------------------------
async def test_indexed_message_carries_the_chapters_and_summary_comes_by_mention_and_slash(
        bot: VidragBot, fake: FakeDiscord, lecture) -> None:
    reply = await index_link(fake)
    final = fake.calls("PATCH", f"/messages/{reply['id']}")[-1].json
    (embed,) = final["embeds"]
    chapters = embed["description"].split("**Chapters**\n")[1].splitlines()
    assert [line.split(") ", 1)[1] for line in chapters] == [s.title for s in lecture[1].slides]
    assert all(line.startswith("[0:") and f"](<{fake.url}/media/volcanoes.mp4#t=" in line for line in chapters)
    assert embed["title"] == "volcanoes" and "[0:0" in embed["description"].split("**Chapters**")[0]  # cited
    assert pings_nobody(final["allowed_mentions"])

    question = await fake.post("general", "What is this video about?", mention_bot=True)
    answer = await fake.wait_for(lambda: next((m for m in fake.bot_messages("general") if m.get(
        "message_reference", {}).get("message_id") == question["id"]), None))
    assert answer["content"].startswith("📋 **volcanoes** (0:")
    assert sent(fake, answer).json["embeds"][0]["description"] == embed["description"]
    assert not fake.calls("POST", f"/messages/{question['id']}/threads")  # a summary is no question
    token = await fake.slash("general", "summary")
    (followup,) = await interaction_replies(fake, token)
    request = next(r for r in fake.requests if r.method == "POST" and r.path == f"/webhooks/{fake.bot['id']}/{token}")
    assert followup["content"].startswith("📋 **volcanoes**")
    assert request.json["embeds"][0]["description"] == embed["description"]


async def test_post_summary_off_leaves_the_chapters_out_of_the_indexed_message(bot: VidragBot, fake: FakeDiscord) -> None:
    """Heard after a restart (no progress message follows the job): with POST_SUMMARY on the
    message carries the embed, with it off the text alone."""
    from core.models import Job, Progress, Scope
    from core.service import JobEvent

    reply = await index_link(fake)
    scope = Scope("discord", str(GUILD_ID), fake.channel_id("general"))
    (video,) = await bot.service.videos(scope)
    job = Job("j1", video.id, scope, f"{fake.url}/media/volcanoes.mp4", Stage.DONE)
    done = JobEvent(job, Progress("j1", video.id, Stage.DONE, 1.0, video.title, video.duration), listened=False)
    posts = fake.calls("POST", f"/channels/{fake.channel_id('general')}/messages")
    await bot.on_job_event(done)
    bot.settings = dataclasses.replace(bot.settings, post_summary=False)
    await bot.on_job_event(done)
    on, off = fake.calls("POST", f"/channels/{fake.channel_id('general')}/messages")[len(posts):]
    assert "Chapters" in on.json["embeds"][0]["description"] and not off.json.get("embeds")
    assert fake.calls("PATCH", f"/messages/{reply['id']}")[-1].json["embeds"]  # on by default


# ---- start-up -----------------------------------------------------------------------------------
async def test_without_message_content_intent_it_reconnects_and_reads_mentions(
        service: Service, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDiscord(message_content_enabled=False)
    await fake.start()
    fake.point_discord_py_at(monkeypatch)
    running = asyncio.create_task(discord_bot.run(service, dataclasses.replace(settings, discord_token="t")))
    try:
        await fake.wait_for(lambda: fake.identify, within=30)  # the first one, asking for the intent, was refused
        assert not fake.intents & FakeDiscord.MESSAGE_CONTENT
        plain = await fake.post("general", "http://10.1.2.3/talk.mp4")  # arrives blank: ignored
        mentioned = await outcome(fake, await fake.post("general", "http://10.1.2.3/b.mp4", mention_bot=True))
        assert "private network" in mentioned["content"]
        assert not [m for m in fake.messages.values() if m.get("message_reference", {}).get("message_id") == plain["id"]]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await fake.stop()


async def test_a_closed_bot_stops_hearing_the_service(service: Service, settings: Settings,
                                                       fake: FakeDiscord) -> None:
    """The service outlives an adapter (a crashed one, in `python -m bot`): closing removes its hook."""
    before = list(service.runner.hooks)
    async with connected(service, settings):
        assert len(service.runner.hooks) == len(before) + 1
    assert service.runner.hooks == before


# ---- message shaping (no Discord needed) --------------------------------------------------------
def test_timestamps_become_links_where_the_video_has_one() -> None:
    answer = Answer("Pressure builds [0:12]; see also [1:05] and [9:59].", (
        Citation("v1", "Volcanoes", 12, 20, "https://youtu.be/x?t=12s"),
        Citation("v2", "Upload", 65, 70, "")))
    text = render_answer(answer)
    assert text.startswith("Pressure builds [0:12](<https://youtu.be/x?t=12s>); see also [1:05] and [9:59].")
    assert text.endswith("-# Sources: Volcanoes [0:12](<https://youtu.be/x?t=12s>) · Upload 1:05")


def test_long_answer_is_split_without_breaking_a_link() -> None:
    link = "[3:41](<https://www.youtube.com/watch?v=abcdefghijk&t=221s>)"
    text = " ".join(f"word{i} {link}" for i in range(120))
    chunks = split_message(text)
    assert len(chunks) > 1 and all(len(c) <= 2000 for c in chunks)
    assert all(c.count("[3:41](<") == c.count(">)") for c in chunks)
    assert " ".join(chunks) == text
    one_line = "x" * 1990 + link  # no space to cut at: cut before the link, not through it
    assert split_message(one_line) == ["x" * 1990, link]


async def test_job_finished_after_a_restart_is_reported_in_its_channel(bot: VidragBot, fake: FakeDiscord) -> None:
    """A job queued before a restart has no progress message in this process: the adapter hears
    it through Service.on_job_event and tells the channel how it ended."""
    from core.models import Job, Progress, Scope
    from core.service import JobEvent

    scope = Scope("discord", str(GUILD_ID), fake.channel_id("general"))
    job = Job("j1", "v1", scope, "https://example.org/talk.mp4", Stage.DONE)
    before = len(fake.bot_messages("general"))
    await bot.on_job_event(JobEvent(job, Progress("j1", "v1", Stage.DONE, 1.0, "A talk", 61.0), listened=False))
    await bot.on_job_event(JobEvent(job, Progress("j1", "v1", Stage.DONE, 1.0, "A talk", 61.0), listened=True))
    posted = fake.bot_messages("general")[before:]
    assert len(posted) == 1 and "Indexed **A talk**" in posted[0]["content"]


# ---- hostile text (issue 11, items 8 and 10) -----------------------------------------------------
HOSTILE_TITLE = "[Verify](https://evil.shop/login) <@&123> @everyone " * 1_900  # ~100 KB of title


@pytest.fixture(scope="session")
def hostile_video(media_dir: Path, lecture) -> Path:
    """The volcano lecture whose container title is ~100 KB of masked links, role pings and
    @everyone: whoever posts a link chooses this text."""
    out = media_dir / "hostile.mp4"
    ffmpeg("-i", str(lecture[0]), "-c", "copy", "-metadata", f"title={HOSTILE_TITLE}", str(out))
    return out


def harmless(text: str) -> bool:
    return not any(s in text for s in ("https://", "evil.shop", "<@&", "@everyone")) and len(text) <= 2000


async def test_a_hostile_title_is_bounded_and_neutral_everywhere_it_is_posted(
        bot: VidragBot, fake: FakeDiscord, hostile_video) -> None:
    progress = await outcome(fake, await fake.post("general", "", attachments=[
        ("talk.mp4", "video/mp4", hostile_video)]))
    assert progress["content"].startswith("✅ Indexed"), progress["content"]
    question = await fake.post("general", "Why do volcanoes erupt?", mention_bot=True)
    answers = await thread_reply(fake, question["id"])
    listed, status = await fake.slash("general", "videos"), await fake.slash("general", "status")
    replies = [*await interaction_replies(fake, listed), *await interaction_replies(fake, status)]
    general = bot.get_channel(int(fake.channel_id("general")))
    (video,) = await bot.service.videos(discord_bot.scope_for(general))
    gone = await interaction_replies(fake, await fake.slash("general", "forget", {"video": video.id}))
    await asyncio.sleep(0.5)  # a second answer message, if the bot were to send one, would be here
    assert len(fake.bot_messages(question["id"])) == 1  # one message for one question (154 before)
    posted = [progress["content"], *(e.json["content"] for e in fake.calls("PATCH", f"/messages/{progress['id']}")),
              answers[0]["content"], *(r["content"] for r in [*replies, *gone])]
    assert all(harmless(t) for t in posted), [t[:300] for t in posted if not harmless(t)]
    assert "Verify" in listed_text(replies) and "evil[.]shop" in listed_text(replies)  # still readable


def listed_text(replies: list[dict]) -> str:
    return " ".join(r["content"] for r in replies)


async def test_a_message_with_many_links_indexes_a_few_and_says_so(bot: VidragBot, fake: FakeDiscord) -> None:
    links = " ".join(f"http://10.9.9.{i}/talk{i}.mp4" for i in range(20))  # refused at once: no download
    posted = await fake.post("general", links, mention_bot=True)
    replies = await fake.wait_for(lambda: (r := [m for m in fake.messages.values() if m.get(
        "message_reference", {}).get("message_id") == posted["id"]]) and len(r) >= 6 and r)
    await asyncio.sleep(0.5)  # more replies, if the bot were to send them, would be here
    replies = [m for m in fake.messages.values() if m.get("message_reference", {}).get("message_id") == posted["id"]]
    assert len(replies) == 6, [r["content"] for r in replies]  # five jobs and one note (20 replies before)
    assert sum("at most 5 videos" in r["content"] and "skipped 15 links" in r["content"] for r in replies) == 1


# ---- issue 22: who may forget, what is echoed, when a thread opens -----------------------------------
async def file_video(service: Service, scope: Scope, source: str, title: str, requested_by: str) -> str:
    """A ready video in the catalog (no vectors: enough to be listed and forgotten)."""
    video_id = video_id_for(scope, source)
    store = service.store(scope)
    await store.add_video(video_id, source, source, title, requested_by)
    await store.update_video(video_id, status=VideoStatus.READY, duration=10.0)
    return video_id


async def test_forget_is_for_who_posted_the_video_or_can_manage_messages_in_a_dm_too(
        bot: VidragBot, fake: FakeDiscord) -> None:
    general = discord_bot.scope_for(bot.get_channel(int(fake.channel_id("general"))))
    talk = await file_video(bot.service, general, "https://example.org/a.mp4", "Rocks", str(OWNER_ID))
    denied = await fake.slash("general", "forget", {"video": talk}, permissions=0, user=(BOB, "bob"))
    (no,) = await fake.wait_for(lambda: [r for r in fake.requests if r.path.endswith(f"/{denied}/callback")])
    assert no.json["data"]["flags"] == 64  # privately
    assert no.json["data"]["content"] == ("Only the person who posted this video or a member who can manage "
                                          "messages here can remove it; nothing was removed.")
    assert [v.id for v in await bot.service.videos(general)] == [talk]
    mine = await fake.slash("general", "forget", {"video": talk}, permissions=0)  # alice posted it
    assert (await interaction_replies(fake, mine))[0]["content"].startswith("🗑️ Removed **Rocks**")

    # a DM: nobody there manages messages; what alice posted is hers, what the operator filed is not
    dm = str(fake.snowflake())
    where = Scope("discord", "dm", dm)
    hers = await file_video(bot.service, where, "https://example.org/h.mp4", "Hers", str(OWNER_ID))
    filed = await file_video(bot.service, where, "https://example.org/f.mp4", "Filed", "")
    await fake.post(dm, f"forget {filed}", dm=True)
    (refused,) = await fake.wait_for(lambda: fake.bot_messages(dm))
    assert refused["content"].startswith("Only the person who posted this video or a member who can manage")
    await fake.post(dm, f"forget {hers}", dm=True)
    _, removed = await fake.wait_for(lambda: (m := fake.bot_messages(dm)) and len(m) >= 2 and m)
    assert removed["content"].startswith("🗑️ Removed **Hers**")
    assert [v.id for v in await bot.service.videos(where)] == [filed]


async def test_forget_by_mention_is_for_a_member_who_manages_messages_in_a_thread_too(
        bot: VidragBot, fake: FakeDiscord) -> None:
    """In a thread, Manage Messages is the parent channel's: bob did not post the video, and may
    remove it (everyone manages messages on the fake's server)."""
    from tests.fakes.discord_server import _user

    general = discord_bot.scope_for(bot.get_channel(int(fake.channel_id("general"))))
    question = await fake.post("general", "Why do volcanoes erupt?", mention_bot=True)  # no videos: one sentence
    await thread_reply(fake, question["id"])
    talk = await file_video(bot.service, general, "https://example.org/a.mp4", "Rocks", str(OWNER_ID))
    await fake.post(question["id"], f"forget {talk}", mention_bot=True, author=_user(BOB, "bob"))
    _, said = await thread_reply(fake, question["id"], count=2)
    assert said["content"].startswith("🗑️ Removed **Rocks**"), said["content"]
    assert await bot.service.videos(general) == []


async def test_slash_ask_echoes_the_question_neutralized(bot: VidragBot, fake: FakeDiscord) -> None:
    """`/ask` posts the question back as the thread's first message: it went out raw, a masked
    link and all (issue 22, item 7)."""
    question = "[Verify your account](https://evil.example/login) now, @everyone"
    token = await fake.slash("general", "ask", {"question": question})
    (echo,) = await interaction_replies(fake, token)
    assert echo["content"].startswith("**Question:** ") and "Verify your account" in echo["content"]
    assert not any(s in echo["content"] for s in ("https://", "evil.example", "@everyone")), echo["content"]
    (thread,) = await fake.wait_for(lambda: fake.calls("POST", f"/messages/{echo['id']}/threads"))
    await thread_reply(fake, echo["id"])  # answered ("no videos"), in the thread
    assert "Verify your account" in thread.json["name"]
    assert not any(s in thread.json["name"] for s in ("https://", "evil.example", "@everyone")), thread.json
    followup = next(r for r in fake.requests if r.method == "POST" and r.path.endswith(f"/{token}")
                    and r.json.get("content") == echo["content"])
    assert pings_nobody(followup.json["allowed_mentions"])


async def test_mentions_past_the_rate_limit_open_no_thread(settings: Settings, models, fake: FakeDiscord) -> None:
    """40 mentions in a few seconds, 3 questions a minute allowed to a person: 3 threads, and each
    of the other 37 questions gets one short reply in place (the thread was opened before the
    rate limit was asked: 40 threads, 37 saying only "You're asking faster…")."""
    limited = dataclasses.replace(settings, questions_per_minute_per_user=3)
    async with Service.open(limited, models=models, chat=None) as svc, connected(svc, limited):
        posted = [await fake.post("general", f"Why do volcanoes erupt ({i})?", mention_bot=True) for i in range(40)]
        asked = {p["id"] for p in posted}

        def replies() -> list[dict]:
            return [m for m in fake.messages.values() if m.get("message_reference", {}).get("message_id") in asked]

        await fake.wait_for(lambda: len(replies()) >= 37)
        await fake.wait_for(lambda: len([m for m in fake.messages.values() if m["author"]["id"] != str(OWNER_ID)
                                         and m["channel_id"] in asked]) >= 3)  # the three answers, in threads
        while handlers := [t for t in asyncio.all_tasks() if t.get_name() == "discord.py: on_message"]:
            await asyncio.gather(*handlers, return_exceptions=True)
    assert len(fake.calls("POST", "/threads")) == 3
    refusals = replies()
    assert len(refusals) == 37 and all(m["channel_id"] == fake.channel_id("general") for m in refusals)
    assert all(m["content"].startswith("You're asking faster than I can answer") for m in refusals)


# ---- a screenshot finds its moment ---------------------------------------------------------------
async def test_a_posted_screenshot_is_answered_with_its_moment_and_the_stored_frame(
        bot: VidragBot, fake: FakeDiscord, lecture) -> None:
    """A picture attached to a mention is a screenshot question: the thread's answer gives the
    slide's timestamp and attaches the stored frame, never the posted picture; a picture that is in
    none of the channel's videos is said to be in none."""
    await index_link(fake)
    rows = await bot.service.catalog.rows('SELECT "time", jpeg FROM frames ORDER BY "time"')
    start, end = lecture[1].times[1]
    stored = next(bytes(r["jpeg"]) for r in rows if start - 0.1 <= r["time"] < end)
    im = Image.open(io.BytesIO(stored))
    w, h = im.size
    shot = io.BytesIO()
    im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w // 2, h // 2)).save(shot, "JPEG", quality=40)
    question = await fake.post("general", "where is this from?", mention_bot=True,
                               attachments=[("screenshot.jpg", "image/jpeg", shot.getvalue())])
    (answer,) = await thread_reply(fake, question["id"])
    assert answer["content"].startswith("That picture is from"), answer["content"]
    assert f"](<{fake.url}/media/volcanoes.mp4#t={int(start)}" in answer["content"]  # the slide's second, linked
    ((name, jpeg),) = sent(fake, answer).files.values()
    assert name.startswith("frame-") and jpeg == stored  # the stored frame, not the posted picture

    noise = io.BytesIO()
    Image.effect_noise((320, 240), 60).convert("RGB").save(noise, "PNG")
    other = await fake.post("general", "", mention_bot=True, attachments=[("photo.png", "image/png", noise.getvalue())])
    (nothing,) = await thread_reply(fake, other["id"])
    assert nothing["content"] == "I couldn't find that picture in this channel's videos."
    assert not sent(fake, nothing).files


# ---- clips --------------------------------------------------------------------------------------
def clip_upload(fake: FakeDiscord, message: dict) -> bytes:
    """The MP4 the bot uploaded with `message`."""
    return next(data for _, data in sent_any(fake, message).files.values())


def sent_any(fake: FakeDiscord, message: dict):
    """The REST request (a channel message or an interaction's follow-up) that created `message`."""
    return next(r for r in fake.requests if r.method == "POST" and r.json and r.json.get("content") == message["content"]
                and r.files)


async def test_clip_in_the_thread_and_the_clip_button_post_the_cited_moment(bot: VidragBot, fake: FakeDiscord,
                                                                           tmp_path: Path) -> None:
    from tests.test_clip import _probe

    await index_link(fake)
    question = await fake.post("general", "Why do volcanoes erupt?", mention_bot=True)
    (answer,) = await thread_reply(fake, question["id"])
    (button,) = answer["components"][0]["components"]
    assert button["label"] == "🎬 Clip" and button["custom_id"].startswith("vidrag-clip:")

    await fake.post(question["id"], "clip", mention_bot=True)  # the command, in the answer's thread
    _, posted = await thread_reply(fake, question["id"], count=2)
    assert posted["content"].startswith("🎬 ") and "of **volcanoes**" in posted["content"]
    info = await asyncio.to_thread(_probe, clip_upload(fake, posted), tmp_path)
    assert info["codecs"] == ["aac", "h264"] and len(clip_upload(fake, posted)) <= 10 * 2**20
    _, start, end = button["custom_id"].split(":")[1:]
    assert abs(info["duration"] - (min(float(end) + 2, 32.9) - max(float(start) - 2, 0))) <= 0.6

    token = await fake.press(answer)  # the button: the same moment, as the interaction's follow-up
    (reply,) = await interaction_replies(fake, token)
    assert reply["content"] == posted["content"]
    assert (await asyncio.to_thread(_probe, clip_upload(fake, reply), tmp_path))["codecs"] == ["aac", "h264"]


async def test_clip_without_an_answer_or_after_forget_gets_one_sentence(bot: VidragBot, fake: FakeDiscord,
                                                                       service: Service) -> None:
    await fake.post("general", "clip", mention_bot=True)
    (said,) = await fake.wait_for(lambda: fake.bot_messages("general"))
    assert said["content"] == "There's no answer in this thread to clip; ask me a question first, then say `clip` in its thread."
    await index_link(fake)
    question = await fake.post("general", "Why do volcanoes erupt?", mention_bot=True)
    (answer,) = await thread_reply(fake, question["id"])
    await service.forget(Scope("discord", str(GUILD_ID), fake.channel_id("general")),
                         answer["components"][0]["components"][0]["custom_id"].split(":")[1])
    token = await fake.press(answer)
    (reply,) = await interaction_replies(fake, token)
    assert reply["content"].startswith("The video that answer cites was removed") and not sent_any_files(fake, token)
    forged = await fake.press(answer, "vidrag-clip:../../etc:1:2")  # a forged value is no button of ours
    await asyncio.sleep(0.5)
    assert not [m for m in fake.messages.values() if m.get("interaction_token") == forged]


def sent_any_files(fake: FakeDiscord, token: str) -> bool:
    return any(r.files for r in fake.requests if token in r.path)

"""One rule reads every chat message (`core.chat.incoming.decide`), whichever platform it came from.

The first half specifies the rule on neutral messages. The second feeds the *same* messages to
both adapters through their real event paths — the real discord.py client against FakeDiscord,
the real Bolt app against the fake Slack Web API, one real service behind both — and checks that
the two bots say the same thing, modulo markup. The channels hold one video filed straight into
the store (no ingest), so the module runs in seconds: links to it are "already indexed", and the
videos that are submitted fail at once (a private address, a file that is not a video).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from adapters.discord_bot import VidragBot
from adapters.slack_app import SlackBot, web_client
from core.chat import present
from core.chat.incoming import Action, Attachment, Incoming, decide, find_links
from core.config import Settings
from core.models import Scope, Segment, VideoStatus
from core.service import Service, video_id_for
from tests.fakes.discord_server import GUILD_ID, FakeDiscord
from tests.fakes.serve import serve
from tests.fakes.slack_api import ADMIN, BOT_TOKEN, BOT_USER, TEAM, FakeSlackAPI
from tests.test_slack import SECRET, Slack, callback, new_ts

SCOPE = Scope("test", "w", "c")
VIDEO_LINK = "https://videos.example.org/volcanoes.mp4"  # filed as ready in each main channel
ARTICLE = "https://example.com/news/volcano-article"


def is_video(url: str) -> bool:
    """Stands in for yt-dlp's extractors: links ending in .mp4, and one video site."""
    return url.endswith(".mp4") or url.startswith("https://youtu.be/")


async def decided(text: str = "", *, mentioned: bool = False, direct: bool = False,
                  files: tuple[Attachment, ...] = ()) -> Any:
    return await decide(Incoming(SCOPE, text, "u1", mentioned, direct, tuple(find_links(text)), files), is_video)


# ---- the rule ------------------------------------------------------------------------------------
async def test_a_mention_with_text_is_a_question() -> None:
    d = await decided("What do shield volcanoes pour out?", mentioned=True)
    assert (d.action, d.question, d.sources) == (Action.ASK, "What do shield volcanoes pour out?", ())


async def test_a_direct_message_is_addressed_without_a_mention() -> None:
    assert (await decided("why does magma rise", direct=True)).action == Action.ASK


async def test_a_mention_with_a_link_indexes_it_whatever_the_link() -> None:
    d = await decided(f"{ARTICLE}", mentioned=True)
    assert d.action == Action.INDEX and [s.url for s in d.sources] == [ARTICLE] and not d.question


async def test_a_mention_with_a_link_and_a_question_does_both() -> None:
    d = await decided(f"{VIDEO_LINK} what is magma?", mentioned=True)
    assert (d.action, d.question, [s.url for s in d.sources]) == (Action.BOTH, "what is magma?", [VIDEO_LINK])


async def test_text_beside_a_link_that_asks_nothing_is_a_caption() -> None:
    for text in (f"index {VIDEO_LINK}", f"here's yesterday's talk: {VIDEO_LINK}."):
        d = await decided(text, mentioned=True)
        assert (d.action, d.question) == (Action.INDEX, ""), text


async def test_an_uploaded_video_is_indexed_with_the_headers_its_url_needs() -> None:
    upload = Attachment("https://files.example/F1/talk.mp4", "talk.mp4", "video/mp4", {"Authorization": "Bearer x"})
    d = await decided(files=(upload,))
    assert d.action == Action.INDEX
    assert [(s.url, s.name, s.headers) for s in d.sources] == [(upload.url, "talk.mp4", {"Authorization": "Bearer x"})]


async def test_a_file_that_is_not_a_video_is_named_to_whoever_addressed_the_bot_only() -> None:
    pdf = Attachment("https://files.example/F2/slides.pdf", "slides.pdf", "application/pdf")
    d = await decided("my slides", mentioned=True, files=(pdf,))
    assert d.action == Action.REFUSE and d.notes(present.PLAIN) == [present.not_videos(present.PLAIN, ["slides.pdf"])]
    assert (await decided("my slides", files=(pdf,))).action == Action.NOTHING


async def test_a_bare_mention_and_help_get_the_help_text() -> None:
    for text in ("", "  ", "help", "Help"):
        d = await decided(text, mentioned=True)
        assert d.action == Action.HELP and d.notes(present.PLAIN) == [present.HELP], text


async def test_command_words_alone_are_commands_and_inside_a_sentence_are_not() -> None:
    cases = {"videos": (Action.VIDEOS, ""), "list": (Action.VIDEOS, ""), "status": (Action.STATUS, ""),
             "forget 3f9a2c01ab": (Action.FORGET, "3f9a2c01ab"), "forget": (Action.FORGET, ""),
             "status of the eruption?": (Action.ASK, ""), "list the volcano types": (Action.ASK, "")}
    for text, (action, argument) in cases.items():
        d = await decided(text, mentioned=True)
        assert (d.action, d.argument) == (action, argument), text
    assert (await decided("status")).action == Action.NOTHING  # not addressed


async def test_a_message_not_for_the_bot_is_read_for_videos_only() -> None:
    assert (await decided("good morning")).action == Action.NOTHING
    assert (await decided(f"good read: {ARTICLE}")).action == Action.NOTHING
    d = await decided(f"Tonight's talk: {VIDEO_LINK} — what a show?")
    assert (d.action, d.question, [s.url for s in d.sources]) == (Action.INDEX, "", [VIDEO_LINK])


async def test_many_links_index_five_and_say_how_many_were_skipped() -> None:
    links = " ".join(f"https://videos.example.org/{i}.mp4" for i in range(30))
    addressed, unaddressed = await decided(links, mentioned=True), await decided(links)
    assert len(addressed.sources) == len(unaddressed.sources) == present.MAX_SOURCES
    assert addressed.dropped == unaddressed.dropped == 25  # 5 past the limit + 20 never checked
    assert addressed.notes(present.PLAIN) == [present.too_many(present.PLAIN, 25)]


async def test_the_link_check_runs_off_the_event_loop_in_one_thread_call() -> None:
    threads: list[int] = []

    def check(url: str) -> bool:
        threads.append(threading.get_ident())
        return False

    links = (ARTICLE, f"{ARTICLE}/2", f"{ARTICLE}/3")
    assert (await decide(Incoming(SCOPE, " ".join(links), links=links), check)).action == Action.NOTHING
    assert len(threads) == 3 and len(set(threads)) == 1 and threads[0] != threading.get_ident()


# ---- both adapters, the same messages ----------------------------------------------------------
MAIN, SIDE = "C0MAIN", "C0SIDE"  # Slack channels; on Discord, "general" and "side"


class Bot(VidragBot):
    """The real bot, telling the test when it has handled a message (its reply may come later)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)

    async def on_message(self, message: discord.Message) -> None:
        try:
            await super().on_message(message)
        finally:
            self.handled[message.id].set()


@dataclass
class Both:
    service: Service
    fake: FakeDiscord
    bot: Bot
    slack: Slack
    media: Path


async def file_video(service: Service, scope: Scope) -> None:
    """A ready video in `scope`, written straight to the store: two spoken sentences, no frames."""
    store = service.store(scope)
    video_id = video_id_for(scope, VIDEO_LINK)
    said = [Segment(0.0, 9.0, "Magma rises because it is lighter than the solid rock around it."),
            Segment(9.0, 18.0, "Shield volcanoes pour out runny basalt lava that flows a long way.")]
    text = await service.models.call_query(lambda: service.models.text)
    vectors = await service.models.call_query(text.embed, [s.text for s in said])
    await store.add_video(video_id, VIDEO_LINK, VIDEO_LINK, "Volcanoes")
    await store.put_text(video_id, said, vectors, said, said, vectors)
    await store.update_video(video_id, status=VideoStatus.READY, duration=18.0)


@pytest.fixture(scope="module")
async def both(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Both]:
    tmp = tmp_path_factory.mktemp("incoming")
    settings = Settings(data_dir=tmp / "data", allow_hosts=("127.0.0.1",), slack_bot_token=BOT_TOKEN,
                        slack_signing_secret=SECRET, questions_per_minute_per_user=1000,
                        questions_per_minute_per_channel=1000, ingests_per_hour_per_user=1000)
    fake = FakeDiscord(channels=("general", "side"))
    api = await FakeSlackAPI().start()
    with pytest.MonkeyPatch.context() as mp:
        await fake.start()
        fake.point_discord_py_at(mp)
        async with Service.open(settings, chat=None) as svc:
            svc.start_workers(1)
            own = list(svc.runner.hooks)  # the service's own (the summary of an indexed video)
            await file_video(svc, Scope("discord", str(GUILD_ID), fake.channel_id("general")))
            await file_video(svc, Scope("slack", TEAM, MAIN))
            sbot = SlackBot(svc, settings, client=web_client(BOT_TOKEN, base_url=api.api_url))
            runner, base = await serve(sbot.web_app())
            bot = Bot(svc, settings, guild_ready_timeout=0.1)
            task = asyncio.create_task(bot.start("fake-token"))
            await asyncio.wait_for(bot.wait_until_ready(), 30)
            try:
                async with aiohttp.ClientSession() as http:
                    yield Both(svc, fake, bot, Slack(api, sbot, svc, f"{base}/slack/events", http),
                               tmp)
            finally:
                await bot.close()
                await asyncio.gather(task, return_exceptions=True)
                await sbot.close()
                await runner.cleanup()
                assert svc.runner.hooks == own  # neither adapter left its job hook behind
        await fake.stop()
    await api.stop()


# What a user sends, in the neutral form both platforms are driven from.
@dataclass(frozen=True)
class Said:
    text: str = ""
    mention: bool = False
    upload: tuple[str, bytes] | None = None  # (file name, content)
    side: bool = False  # in the side channel, which has no video


MESSAGES = {
    "plain question": Said("What do shield volcanoes pour out?", mention=True),
    "link only": Said(VIDEO_LINK, mention=True),
    "link and question": Said(f"{VIDEO_LINK} Why does magma rise?", mention=True),
    "link posted without a mention": Said(f"Tonight's talk: {VIDEO_LINK}"),
    "upload that is not a video": Said(upload=("talk.mp4", b"this is not a video\n" * 40), side=True),
    "file that is not a video, with a mention": Said("my slides", mention=True,
                                                      upload=("slides.pdf", b"%PDF-1.4 not a video")),
    "help": Said("help", mention=True),
    "mention only": Said("", mention=True),
    "videos": Said("videos", mention=True),
    "status": Said("status", mention=True),
    "not for the bot": Said("good morning, anyone seen the volcano talk?"),
    "article without a mention": Said(f"good read: {ARTICLE}"),
    "hostile link name": Said("http://10.1.2.3/%5BVerify%5D(https:%2F%2Fevil.shop%2Flogin)%20%3C!channel%3E"
                              "%20%40everyone%20%3C%40%26123%3E.mp4", side=True),
}


def from_discord(text: str) -> str:
    text = text.split("\n-# Sources:")[0]
    text = re.sub(r"\[([^\]\n]*)\]\(<[^>\s]*>\)", r"\1", text)  # [0:09](<link>)
    return re.sub(r"\\(.)", r"\1", text.replace("**", ""))  # escape_markdown undone


def from_slack(text: str) -> str:
    text = re.sub(r"<[^|>\s]*\|([^>]*)>", r"\1", text)  # <link|0:09>
    text = re.sub(r"\*([^*\n]+)\*", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def unvaried(text: str) -> str:
    """What may differ between two channels of one bot: a video's id, a file's URL-derived name."""
    return re.sub(r"`[0-9a-f]{10}(?:[0-9a-f]{10})?`", "`<id>`", text)


async def on_discord(both: Both, said: Said) -> list[str]:
    fake, channel = both.fake, "side" if said.side else "general"
    atts = [(said.upload[0], "video/mp4" if said.upload[0].endswith(".mp4") else "application/pdf",
             said.upload[1])] if said.upload else []
    posted = await fake.post(channel, said.text, mention_bot=said.mention, attachments=atts)
    await asyncio.wait_for(both.bot.handled[int(posted["id"])].wait(), 30)

    def conversation() -> list[str]:
        replies = [m for m in fake.messages.values()
                   if m.get("message_reference", {}).get("message_id") == posted["id"]]
        return [m["content"] for m in sorted([*replies, *fake.bot_messages(posted["id"])], key=lambda m: int(m["id"]))]

    with contextlib.suppress(TimeoutError):  # the progress messages end with ✅ or ❌
        await fake.wait_for(lambda: not any(t.startswith("⏳") for t in conversation()) or None, within=30)
    return conversation()


async def on_slack(both: Both, said: Said) -> list[str]:
    slack, channel, ts = both.slack, SIDE if said.side else MAIN, new_ts()
    text = re.sub(r"https?://\S+", lambda m: f"<{m[0]}>", said.text)  # Slack writes links as <url>
    event: dict[str, Any] = {"type": "app_mention" if said.mention else "message", "channel": channel, "ts": ts,
                             "text": f"<@{BOT_USER}> {text}" if said.mention else text}
    if said.upload:
        name, data = said.upload
        (both.media / name).write_bytes(data)
        url = slack.api.serve_file(f"{TEAM}-F{ts}/download/{name}", both.media / name)
        mimetype = "video/mp4" if name.endswith(".mp4") else "application/pdf"
        event |= {"subtype": "file_share", "files": [{"id": f"F{ts}", "name": name, "mimetype": mimetype,
                                                      "url_private_download": url}]}
    assert await slack.send(callback(event)) == 200
    await slack.bot.drain()
    out = []
    for post in slack.api.called("chat.postMessage", channel=channel, thread_ts=ts):
        edits = slack.api.called("chat.update", channel=channel, ts=post.response["ts"])
        out.append(edits[-1].args["text"] if edits else post.args["text"])
    return out


@pytest.mark.parametrize("name", list(MESSAGES))
async def test_both_platforms_say_the_same_to_the_same_message(both: Both, name: str) -> None:
    said = MESSAGES[name]
    slack = [unvaried(from_slack(t)) for t in await on_slack(both, said)]
    disc = [unvaried(from_discord(t)) for t in await on_discord(both, said)]
    assert disc == slack, f"{name}:\nDiscord: {disc}\nSlack:   {slack}"
    assert all(not any(s in t for s in ("https://evil", "evil.shop/", "<!channel>", "@everyone", "<@&"))
               for t in slack + disc)
    expected = {"plain question": ["Here is what I found"], "link only": ["✅ Already indexed here: Volcanoes."],
                "link and question": ["✅ Already indexed here: Volcanoes.", "Here is what I found"],
                "link posted without a mention": ["✅ Already indexed here: Volcanoes."],
                "upload that is not a video": ["❌ I couldn't index talk.mp4:"],
                "file that is not a video, with a mention": ["I can only index video files, and slides[.]pdf"],
                "help": [present.HELP], "mention only": [present.HELP],
                "videos": ["✅ Volcanoes (0:18) — ready · `<id>`"],
                "status": ["1 video ready in this channel.\n" + present.NOTHING_INDEXING],
                "not for the bot": [], "article without a mention": [],
                "hostile link name": ["❌ I couldn't index [Verify](hxxps[:]//evil[.]shop/login) ‹!channel› @\u200beveryone"]}[name]
    assert len(slack) == len(expected) and all(t.startswith(e) for t, e in zip(slack, expected, strict=True)), slack


async def test_forget_by_mention_removes_the_video_on_both_for_who_may(both: Both) -> None:
    """Last in the module: it removes the channels' video. A Slack member who did not post it may
    not (it was filed by the operator), a Discord member who can manage messages may; each says
    so in its own words."""
    scopes = {"slack": Scope("slack", TEAM, MAIN), "discord": Scope("discord", str(GUILD_ID),
                                                                     both.fake.channel_id("general"))}
    said = Said(f"forget {video_id_for(scopes['slack'], VIDEO_LINK)}", mention=True)
    refused = [from_slack(t) for t in await on_slack(both, said)]
    assert len(refused) == 1 and refused[0].startswith(
        "Only the person who posted this video or a workspace admin or owner can remove it"), refused
    slack_ts, discord_id = new_ts(), video_id_for(scopes["discord"], VIDEO_LINK)
    event = {"type": "app_mention", "channel": MAIN, "ts": slack_ts, "user": ADMIN,
             "text": f"<@{BOT_USER}> forget {video_id_for(scopes['slack'], VIDEO_LINK)}"}
    assert await both.slack.send(callback(event)) == 200
    await both.slack.bot.drain()
    [slack] = [from_slack(c.args["text"]) for c in both.slack.api.called("chat.postMessage", channel=MAIN,
                                                                          thread_ts=slack_ts)]
    [disc] = [from_discord(t) for t in await on_discord(both, Said(f"forget {discord_id}", mention=True))]
    assert disc == slack and slack.startswith("🗑️ Removed Volcanoes from this channel"), (disc, slack)
    assert [await both.service.videos(s) for s in scopes.values()] == [[], []]


def test_a_console_line_naming_a_file_is_an_attachment(tmp_path: Path) -> None:
    from adapters import console

    clip = tmp_path / "talk.mp4"
    clip.write_bytes(b"")
    line = console.incoming(SCOPE, str(clip))
    assert line.direct and line.attachments == (Attachment(str(clip.resolve()), "talk.mp4", "video/mp4"),)
    assert console.incoming(SCOPE, f"what is {VIDEO_LINK}?").links == (VIDEO_LINK,)


# ---- a picture asked about -----------------------------------------------------------------------
SHOT = Attachment("https://cdn.example.com/a/shot.png", "shot.png", "image/png", {"Authorization": "Bearer x"})


async def test_a_picture_on_a_mention_is_a_screenshot_question_with_or_without_words() -> None:
    for text in ("", "where is this from?", "summary"):
        d = await decided(text, mentioned=True, files=(SHOT,))
        assert d.action == Action.PICTURE and d.picture is not None and not d.refused, (text, d)
        assert (d.picture.url, d.picture.headers) == (SHOT.url, {"Authorization": "Bearer x"})
    named = Attachment("https://cdn.example.com/a/IMG_1.JPG", "IMG_1.JPG")  # no type given: its name
    assert (await decided("", direct=True, files=(named,))).action == Action.PICTURE


async def test_a_video_posted_with_a_picture_stays_an_upload_and_an_unaddressed_picture_is_left_alone() -> None:
    video = Attachment("https://cdn.example.com/a/talk.mp4", "talk.mp4", "video/mp4")
    both = await decided("", mentioned=True, files=(SHOT, video))
    assert both.action == Action.INDEX and [s.name for s in both.sources] == ["talk.mp4"] and both.picture is None
    assert (await decided("nice slide", files=(SHOT,))).action == Action.NOTHING


async def test_a_gif_or_svg_on_a_mention_is_refused_as_before() -> None:
    for name, ctype in (("anim.gif", "image/gif"), ("logo.svg", "image/svg+xml")):
        d = await decided("", mentioned=True, files=(Attachment(f"https://cdn.example.com/{name}", name, ctype),))
        assert d.action == Action.REFUSE and d.refused == (name,)

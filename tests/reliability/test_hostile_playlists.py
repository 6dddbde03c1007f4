"""Hostile playlists: a posted list is yt-dlp reading a member's page, so it is read in the jailed
child ("expand", core/ingest/playlist.py) and the bot believes only what passes its checks. Each
case is served from 127.0.0.1 and ends in a bounded result or a clear refusal, with the bot's
event loop free (stall under `STALL_S`), its RSS barely moved, and the child's tree bounded.

Each case prints `HOSTILE <case> stall=… rss+=… tree=…` (run with `-s`)."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace

import pytest

from adapters.discord_bot import STYLE as DISCORD
from adapters.slack_app import STYLE as SLACK
from core.chat import present
from core.config import Settings
from core.ingest import jail
from core.ingest.playlist import MEMORY, NAMED, NESTED, TooLarge
from core.ingest.ytdlp import single_video_link
from core.jobs.playlists import PlaylistRun, State
from core.models import Scope
from core.service import Service
from tests.reliability import hostile
from tests.reliability.probes import LoopLag
from tests.reliability.test_hostile_text import linkable
from tests.test_playlists import NESTED_URL, feed

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.alone("measures the event loop's stalls and the bot's RSS per case")]

SCOPE = Scope("console", "local", "hostile-playlists")
STALL_S = 0.5
RSS_GROWTH_MB = 100


def rss_items(n: int, base: str) -> bytes:
    """An RSS feed of `n` entries, each as short as an entry gets (~50 bytes)."""
    head = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Many</title>'
    item = f'<item><enclosure url="{base}/e.mp4"/></item>'.encode()
    return head + item * n + b"</channel></rss>"


async def expand_measured(settings: Settings, fake_models, url: str, case: str):
    """`Service.expand(url)` with the loop-lag and RSS probes beside it: (playlist or the refusal,
    stall, RSS growth, the child's peak memory, seconds)."""
    async with Service.open(settings, models=fake_models, chat=None) as svc:
        await asyncio.to_thread(single_video_link, url)  # yt-dlp's extractors, loaded once per process
        with hostile.RssGrowth() as rss:  # the expansion alone: the service's own start is no case's
            async with LoopLag() as lag:
                seen = len(jail.RECENT)
                t = time.monotonic()
                try:
                    got: object = await svc.expand(url)
                except TooLarge as e:
                    got = e
                seconds = time.monotonic() - t
        jobs = await svc.catalog.counts(SCOPE)
    tree = max((o.peak_mb for o in list(jail.RECENT)[seen:]), default=None)
    print(f"\nHOSTILE {case} stall={lag.worst:.3f}s rss+={rss.growth:.0f}MB tree={tree}MB {seconds:.1f}s")
    assert lag.worst < STALL_S, lag.worst
    assert rss.growth < RSS_GROWTH_MB, rss.growth
    assert tree is None or tree <= MEMORY / 2**20 + 1, tree
    assert jobs["jobs"] == 0 and jobs["videos"] == 0, jobs  # expanding queues nothing
    return got


@pytest.fixture
async def far_server(tmp_path, unused_tcp_port):
    """A plain static web server in a process of its own (`python -m http.server`, 127.0.0.1),
    serving `tmp_path/site`: a feed of tens of MB sent from this process (the fake media server's
    aiohttp) costs the test process memory and loop time of its own, which the probes would count
    as the bot's."""
    root = tmp_path / "site"
    root.mkdir()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "http.server", str(unused_tcp_port),
                                                "--bind", "127.0.0.1", "--directory", str(root),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    yield root, f"http://127.0.0.1:{unused_tcp_port}"
    proc.kill()
    await proc.wait()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", allow_hosts=("127.0.0.1",), ocr=False)


async def test_a_playlist_of_a_million_entries_is_cut_in_the_jail_and_refused_whole(settings, fake_models,
                                                                                   far_server) -> None:
    root, base = far_server
    await asyncio.to_thread((root / "million.rss").write_bytes, rss_items(10**6, base))  # ~45 MB
    got = await expand_measured(settings, fake_models, f"{base}/million.rss", "million-entries")
    assert isinstance(got, TooLarge), got
    assert "larger than I read" in got.message


async def test_a_long_list_under_the_byte_cut_reaches_the_bot_as_the_cap_and_ten_names(settings, fake_models,
                                                                                     far_server) -> None:
    root, base = far_server
    await asyncio.to_thread((root / "long.rss").write_bytes, rss_items(120_000, base))  # ~5.4 MB: read whole
    got = await expand_measured(settings, fake_models, f"{base}/long.rss", "120k-entries")
    assert not isinstance(got, TooLarge) and got is not None, got
    assert len(got.entries) == settings.max_playlist_videos and len(got.skipped) == NAMED  # type: ignore[union-attr]
    assert got.more == 120_000 - settings.max_playlist_videos - NAMED  # type: ignore[union-attr]


async def test_entries_at_private_addresses_or_files_are_named_and_never_queued(settings, fake_models,
                                                                                server) -> None:
    server.files["inside.rss"] = feed("Inside", [
        ("passwd", "file:///etc/passwd"), ("metadata", "http://169.254.169.254/latest/meta-data/"),
        ("router", "http://192.168.1.1/admin.mp4"), ("loopback6", "http://[::1]:8080/x.mp4"),
        ("decimal", "http://2130706433/x.mp4"), ("gopher", "gopher://127.0.0.1:70/x"),
        ("fine", f"{server.base}/fine.mp4")])
    async with Service.open(settings, models=fake_models, chat=None) as svc:  # no worker: jobs wait
        playlist = await svc.expand(f"{server.base}/inside.rss")
        assert playlist is not None
        run = await svc.submit_playlist(SCOPE, playlist)
        counts = await svc.catalog.counts(SCOPE)
    why = {i.entry.title: (i.state, i.message) for i in run.items}
    assert why["fine"] == (State.QUEUED, "")
    assert why["passwd"] == (State.REFUSED, "I only fetch http and https links.")
    assert why["gopher"] == (State.REFUSED, "I only fetch http and https links.")
    for name in ("metadata", "router", "loopback6", "decimal"):
        assert why[name][0] == State.REFUSED and "private network" in why[name][1], (name, why[name])
    assert counts["jobs"] == 1 and counts["videos"] == 1, counts  # the one public entry alone


async def test_a_nested_playlist_is_named_and_not_expanded_again(rel_settings, models, server,
                                                                 short_lectures) -> None:
    """A site's playlist inside a list (yt-dlp says so without fetching it) is named and not
    queued; a page that turns out to be a list when its entry's job reads it is one link as
    before: its first video is indexed and the rest of it is never read."""
    server.files.update({"tides.mp4": short_lectures["tides"], "bees.mp4": short_lectures["bees"],
                         "rust.mp4": short_lectures["rust"]})
    server.files["inner.rss"] = feed("Inner", [("Bees", f"{server.base}/bees.mp4"), ("Rust", f"{server.base}/rust.mp4")])
    server.files["outer.rss"] = feed("Outer", [("Tides", f"{server.base}/tides.mp4"), ("Inner list", f"{server.base}/inner.rss"),
                                               ("On YouTube", NESTED_URL)])
    settings = replace(rel_settings, allow_hosts=("127.0.0.1",))
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        playlist = await svc.expand(f"{server.base}/outer.rss")
        assert playlist is not None
        run = await svc.submit_playlist(SCOPE, playlist)
        await run.wait(svc)
        counts = await svc.catalog.counts(SCOPE)
    states = {i.entry.title: (i.state, i.message) for i in run.items}
    assert states["On YouTube"] == (State.REFUSED, NESTED)
    assert states["Tides"][0] == State.DONE and states["Inner list"][0] == State.DONE, states
    assert counts["videos"] == 2 and counts["jobs"] == 2, counts
    assert "rust.mp4" not in {name for name, _ in server.requests}  # the inner list's second entry: never read
    assert "⛔ not queued: **On YouTube** — a playlist inside this playlist" in present.playlist_progress(DISCORD, run)


async def test_entry_titles_carrying_markup_and_links_are_neutral_in_the_message(settings, fake_models,
                                                                                  server) -> None:
    evil = ["@everyone look", "[Verify](https://evil.example/login)", "&lt;@U123&gt; &lt;!channel&gt;",
            "**bold** `code` ~~gone~~", "http://evil.example/x.mp4", "\u202eevil.exe\u202c", "x" * 5000]
    server.files["evil.rss"] = feed("@here [win](https://evil.example)",
                                    [(t, f"{server.base}/{i}.mp4") for i, t in enumerate(evil)])
    async with Service.open(settings, models=fake_models, chat=None) as svc:
        playlist = await svc.expand(f"{server.base}/evil.rss")
    assert playlist is not None and len(playlist.entries) == len(evil)
    run = PlaylistRun(playlist)
    for item in run.items:
        item.state, item.message = State.FAILED, "<!channel> see https://evil.example/why"
    for style, at_ping in ((DISCORD, "@everyone"), (SLACK, "<!channel>")):
        text = present.playlist_progress(style, run, 1900)
        assert not linkable(text), text
        assert "@everyone" not in text and "@here" not in text and "<!channel>" not in text and "<@U123>" not in text
        assert len(text) <= 1900 and "\u202e" not in text, text
        assert at_ping not in text

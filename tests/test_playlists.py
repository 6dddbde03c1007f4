"""Playlists: a link that yt-dlp expands to several entries (here a local page of several
`<video>`s and an RSS feed, served by FakeMediaServer on 127.0.0.1) queues each entry as its own
job, read in the jailed child (the "expand" task), up to MAX_PLAYLIST_VIDEOS, each entry through
the address guard and the limits, followed on one message; the CLI prints a line per entry and the
total. The Discord and Slack fakes carry the same page in tests/test_playlists_chat.py."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.chat import present
from core.config import Settings
from core.ingest import playlist as playlists
from core.ingest.guard import UrlGuard
from core.ingest.playlist import NESTED, Entry, Playlist, expand, read
from core.ingest.ytdlp import single_video_link
from core.jobs.playlists import Item, PlaylistRun, State
from tests.fakes.media_server import FakeMediaServer

GUARD = UrlGuard(frozenset({"127.0.0.1"}))
NESTED_URL = "https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG"


def lectures_page(title: str, sources: list[str]) -> bytes:
    """A page of several lectures, each a `<video>` (what yt-dlp's generic extractor expands)."""
    videos = "".join(f'<h2>Part {i}</h2><video controls><source src="{s}" type="video/mp4"></video>'
                     for i, s in enumerate(sources, 1))
    return f"<html><head><title>{title}</title></head><body>{videos}</body></html>".encode()


def feed(title: str, items: list[tuple[str, str]]) -> bytes:
    """An RSS feed: each item a title and an enclosure's address."""
    body = "".join(f'<item><title>{t}</title><enclosure url="{u}" type="video/mp4"/></item>' for t, u in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{body}</channel></rss>'.encode()


async def course_site(short_lectures: dict[str, Path]) -> FakeMediaServer:
    """A started media server whose course.html lists two lectures, a 404, a text file named .mp4
    and a video at a private address."""
    server = FakeMediaServer({"tides.mp4": short_lectures["tides"], "bees.mp4": short_lectures["bees"],
                              "notes.mp4": b"these are my notes, not a video\n" * 40})
    await server.start()
    server.files["course.html"] = lectures_page("Ocean course", [
        "tides.mp4", "missing.mp4", "notes.mp4", "http://10.0.0.5/talk.mp4", "bees.mp4"])
    return server


@pytest.fixture
async def site(short_lectures: dict[str, Path]) -> AsyncIterator[FakeMediaServer]:
    server = await course_site(short_lectures)
    yield server
    await server.stop()


# ---- what the parent believes of the child ------------------------------------------------------
def test_the_parent_reads_at_most_the_cap_and_names_ten_more() -> None:
    event = {"kind": "playlist", "title": "Big", "total": 10**6,
             "entries": [[f"http://127.0.0.1/{i}.mp4", f"t{i}", False] for i in range(10**5)]}
    p = read(event, "http://127.0.0.1/big", 25, GUARD)
    assert p is not None and len(p.entries) == 25 and len(p.skipped) == playlists.NAMED
    assert p.more == 10**6 - 25 - playlists.NAMED
    assert [e.title for e in p.skipped][:2] == ["t25", "t26"]


def test_entries_are_checked_by_the_address_guard_and_nested_playlists_are_not_expanded() -> None:
    event = {"kind": "playlist", "title": "x", "total": -1, "entries": [
        ["file:///etc/passwd", "secrets", False], ["http://10.0.0.5/a.mp4", "inside", False],
        ["http://169.254.169.254/latest/meta-data/", "metadata", False], [NESTED_URL, "nested", True],
        ["http://127.0.0.1/" + "a" * 3000, "long", False], ["http://127.0.0.1/ok.mp4", "ok", False]]}
    p = read(event, "http://127.0.0.1/list", 25, GUARD)
    assert p is not None
    problems = {e.title: e.problem for e in p.entries}
    assert problems["secrets"] == "I only fetch http and https links."
    assert "private network" in problems["inside"] and "private network" in problems["metadata"]
    assert problems["nested"] == NESTED and problems["long"] == playlists.BAD_ENTRY and problems["ok"] == ""
    assert p.more == 0


@pytest.mark.parametrize("bad", [{"kind": "playlist", "entries": "x"},
                                 {"kind": "playlist", "entries": [["http://a", 3, False]]},
                                 {"kind": "playlist", "entries": [["http://a", "t", "yes"]]},
                                 {"kind": "playlist", "entries": [["http://a", "t"]]}])
def test_a_malformed_announcement_is_refused(bad: dict) -> None:
    with pytest.raises(playlists.BadSource):
        read(bad, "http://127.0.0.1/list", 25, GUARD)


def test_a_single_video_announcement_is_no_playlist() -> None:
    assert read({"kind": "video"}, "http://127.0.0.1/a", 25, GUARD) is None


def test_links_of_one_video_are_not_expanded_and_their_check_costs_little(figures) -> None:
    single_video_link("https://example.com/warm-up")  # yt-dlp's extractors load once per process
    links = ["http://127.0.0.1/talk.mp4", "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://youtu.be/dQw4w9WgXcQ"]
    assert all(single_video_link(u) for u in links)
    assert not single_video_link(NESTED_URL)
    assert not single_video_link("https://example.com/course.html")  # any page: expanded in the jail
    t = time.perf_counter()
    for _ in range(20):
        for u in links:
            single_video_link(u)
    each = (time.perf_counter() - t) / (20 * len(links))
    figures(f"playlists: deciding that a link is one video (no expansion): {each * 1e3:.2f} ms a link")


def test_the_message_neutralizes_titles_and_bounds_its_length() -> None:
    hostile = "@everyone **bold** [click](https://evil.example/x) <@123> <!channel>"
    entries = tuple(Entry(f"http://127.0.0.1/{i}.mp4", f"{hostile} {i}") for i in range(25))
    run = PlaylistRun(Playlist("http://127.0.0.1/list", hostile, entries,
                               tuple(Entry(f"http://127.0.0.1/s{i}.mp4", hostile) for i in range(10)), 40))
    for i, item in enumerate(run.items):
        item.state, item.message = (State.FAILED, f"bad {hostile}") if i % 2 else (State.DONE, "")
    style = present.Style(bold="**{}**")
    text = present.playlist_progress(style, run, 1900)
    assert len(text) <= 1900
    assert text.startswith("⚠️ ") and "13 of 25 indexed · 12 failed" in text
    assert "@everyone" not in text and "https://" not in text and "<@" not in text and "<!" not in text
    assert "…and 4 more" in text or text.endswith("…")


# ---- expansion in the jail ----------------------------------------------------------------------
async def test_a_page_of_several_videos_is_expanded_in_the_jail(tmp_path: Path) -> None:
    server = FakeMediaServer({})
    await server.start()
    try:
        server.files["course.html"] = lectures_page("Ocean course", ["a.mp4", "b.mp4", "c.mp4", "d.mp4"])
        server.files["feed.rss"] = feed("Podcast", [("First &lt;b&gt;talk&lt;/b&gt;", f"{server.base}/a.mp4"),
                                                   ("Passwords", "file:///etc/passwd"),
                                                   ("Nested", NESTED_URL)])
        settings = Settings(data_dir=tmp_path / "data", allow_hosts=("127.0.0.1",), max_playlist_videos=2)
        page = await expand(f"{server.base}/course.html", settings)
        settings = Settings(data_dir=tmp_path / "data", allow_hosts=("127.0.0.1",))
        rss = await expand(f"{server.base}/feed.rss", settings)
        one = await expand(f"{server.base}/course.html?one", settings)  # still a page: expanded
    finally:
        await server.stop()
    assert page is not None and [e.url for e in page.entries] == [f"{server.base}/a.mp4", f"{server.base}/b.mp4"]
    assert [e.url.rsplit("/", 1)[1] for e in page.skipped] == ["c.mp4", "d.mp4"] and page.more == 0
    assert page.title == "Ocean course" and all(e.problem == "" for e in page.entries)
    assert rss is not None and [(e.title, e.problem) for e in rss.entries] == [
        ("First <b>talk</b>", ""), ("Passwords", "I only fetch http and https links."), ("Nested", NESTED)]
    assert one is not None and len(one.entries) == 4
    assert {name for name, _ in server.requests} == {"course.html", "feed.rss"}  # the lists, no video
    assert not list((tmp_path / "data" / "playlists").iterdir())  # each expansion's folder is removed


async def test_a_link_that_is_no_list_is_left_to_its_job(tmp_path: Path, fake_models, figures) -> None:
    from core.service import Service
    from tests.fakes.media_server import page_with_captions

    server = FakeMediaServer({"page.html": b"<html><title>nothing</title><p>no video</p></html>",
                              "one.html": page_with_captions("talk.mp4", "talk.vtt", "One talk")})
    await server.start()
    settings = Settings(data_dir=tmp_path / "data", allow_hosts=("127.0.0.1",))
    try:
        async with Service.open(settings, models=fake_models, chat=None) as svc:
            assert await svc.expand(f"{server.base}/page.html") is None  # unsupported: the job says why
            assert await svc.expand(f"{server.base}/missing.html") is None  # a 404: the job says why
            t = time.perf_counter()
            assert await svc.expand(f"{server.base}/talk.mp4") is None  # one video: not even looked at
            direct = time.perf_counter() - t
            t = time.perf_counter()
            assert await svc.expand(f"{server.base}/one.html") is None  # a page of one video: read, then its job
            page = time.perf_counter() - t
    finally:
        await server.stop()
    assert [name for name, _ in server.requests] == ["page.html", "missing.html", "one.html"]
    figures(f"playlists: expansion cost before a job, a video file's link {direct * 1e3:.1f} ms, "
            f"a page of one video {page:.2f} s (one jailed child)")


# ---- the command line ---------------------------------------------------------------------------
async def cli(data: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """`vidrag …` in a process of its own, awaited (the fake site answers from this loop)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "SLACK", "LLM", "MISTRAL"))}
    base.update(DATA_DIR=str(data), MILVUS_URI=str(data / "milvus.db"), HF_HUB_OFFLINE="1",
                ALLOW_HOSTS="127.0.0.1", OCR="false", POST_SUMMARY="false", **env)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "adapters.console", *args, env=base,
                                                cwd=Path(__file__).parent.parent, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 280)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.timeout(400)
async def test_cli_ingest_of_a_page_prints_each_entry_and_the_total_and_indexes_nothing_twice(
        tmp_path: Path, site: FakeMediaServer) -> None:
    url = f"{site.base}/course.html"
    code, out, err = await cli(tmp_path / "d", "ingest", url, "--channel", "ocean")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Playlist 'Ocean course': 5 entries to index.", out
    assert sum(1 for x in lines if x.startswith("  ✅ indexed ")) == 2, out
    assert any(x.startswith("  ❌ failed: 'missing.mp4' — ") for x in lines), out
    assert any(x.startswith("  ❌ failed: 'notes.mp4' — ") for x in lines), out
    assert any(x.startswith("  ⛔ not queued: 'talk.mp4' — That link points inside a private network") for x in lines)
    assert lines[-1] == "Total: 2 of 5 indexed · 2 failed · 1 not queued.", out
    fetched = sum(1 for name, _ in site.requests if name in ("tides.mp4", "bees.mp4"))

    code, out, err = await cli(tmp_path / "d", "ingest", url, "--channel", "ocean", "--json")
    assert code == 0, err
    again = json.loads(out.strip().splitlines()[-1])
    states = {e["url"].rsplit("/", 1)[1]: e["state"] for e in again["entries"]}
    assert states == {"tides.mp4": "already", "bees.mp4": "already", "missing.mp4": "failed",
                      "notes.mp4": "failed", "talk.mp4": "refused"}, again
    assert (again["indexed"], again["failed"], again["refused"]) == (2, 2, 1)

    code, out, err = await cli(tmp_path / "d", "videos", "--channel", "ocean", "--json")
    videos = json.loads(out.strip().splitlines()[-1])
    assert sorted(v["status"] for v in videos) == ["ready", "ready"], videos  # one row each, not two
    assert sum(1 for name, _ in site.requests if name in ("tides.mp4", "bees.mp4")) == fetched  # not again


async def test_a_run_counts_and_names_each_entry(tmp_path: Path) -> None:
    run = PlaylistRun(Playlist("http://x/list", "L", (Entry("http://x/a.mp4", "A"), Entry("http://x/b.mp4", "B"))))
    assert [i.name for i in run.items] == ["A", "B"] and not run.finished
    run.items[0].state = State.DONE
    run.items[1] = Item(Entry("http://x/b.mp4", ""), State.REFUSED, "You already have 3 videos waiting")
    assert run.finished and present.entry_name(run.items[1]) == "b.mp4"
    assert present.playlist_counts(run) == "1 of 2 indexed · 1 not queued"


async def test_a_list_posted_while_its_entries_wait_follows_their_jobs_and_queues_none(
        tmp_path: Path, fake_models) -> None:
    from core.models import Scope
    from core.service import Service

    settings = Settings(data_dir=tmp_path / "data", allow_hosts=("127.0.0.1",))
    scope = Scope("console", "local", "waiting")
    playlist = Playlist("http://127.0.0.1:9/list", "L", (Entry("http://127.0.0.1:9/a.mp4", "A"),
                                                         Entry("http://127.0.0.1:9/b.mp4", "B")))
    async with Service.open(settings, models=fake_models, chat=None) as svc:  # no worker: the jobs wait
        first = await svc.submit_playlist(scope, playlist, requested_by="U1")
        second = await svc.submit_playlist(scope, playlist, requested_by="U2")
        counts = await svc.catalog.counts(scope)
    assert [i.state for i in first.items] == [State.QUEUED, State.QUEUED]
    assert [i.state for i in second.items] == [State.WAITING, State.WAITING]
    assert [i.job_id for i in second.items] == [i.job_id for i in first.items]
    assert counts["jobs"] == 2 and counts["videos"] == 2, counts
    text = present.playlist_progress(present.PLAIN, second)
    assert text.count("already queued here: ") == 2 and text.startswith("⏳ L: 0 of 2 indexed"), text

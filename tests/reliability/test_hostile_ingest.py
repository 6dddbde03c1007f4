"""The ingest side of issue 22: cases that a per-case guard did not foresee, each built in the test
and served from 127.0.0.1. Each failed on the code before the jailed ingest (core/ingest/jail.py):
the bot process itself ran yt-dlp's parsers, the subtitle parser and ffmpeg sized by a header.
Now each ends in a bounded result or a clear refusal, with the bot's event loop free (stall under
`STALL_S`), its RSS barely moved (under `RSS_GROWTH_MB`), and nothing of the job's processes left.

Each case prints `HOSTILE <case> stall=… rss+=… tree=…` (run with `-s` to see the figures): the
worst loop stall, the bot process's RSS growth, and the jailed tree's peak memory (its cgroup)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.chat.incoming import Incoming, decide
from core.config import Settings
from core.errors import UserFacingError
from core.ingest import jail
from core.ingest.ytdlp import is_video_link
from core.models import Kind, Scope, Video
from core.service import Service
from tests.fakes.media_server import page_with_captions
from tests.reliability import hostile
from tests.reliability.hostile import warm_models  # noqa: F401 - the fixture, used below
from tests.reliability.probes import LoopLag

# A case indexes a lecture or two beside its hostile input, and the first one warms the models
# (`warm_models`, ~30 s here): past pytest's 60-s default on a busy 2-core machine. Stalls are
# measured with nothing beside them (`alone`: scripts/test.sh runs those last, one at a time).
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("warm_models"),
              pytest.mark.alone("measures the event loop's stalls and the bot's RSS per case")]

SCOPE = Scope("console", "local", "hostile-ingest")
STALL_S = 0.5
RSS_GROWTH_MB = 100


def figures(case: str, run: Run) -> None:
    tree = "-" if run.tree is None else f"{run.tree:.0f}MB"
    print(f"\nHOSTILE {case} stall={run.stall:.3f}s rss+={run.rss:.0f}MB tree={tree} "
          f"(sampled {run.tree_sampled:.0f}MB) {run.seconds:.1f}s"
          + (f" (with the lecture after it rss+={run.rss_all:.0f}MB)" if run.rss_all != run.rss else ""))


class Run:
    """One submission to a service of its own (127.0.0.1 allowed), with the loop-lag and RSS
    probes beside it: what it answered, the video it made, and what the stores hold after."""

    def __init__(self, settings: Settings, models) -> None:
        self.settings = replace(settings, allow_hosts=("127.0.0.1",))
        self.models = models
        self.error: str | None = None
        self.video: Video | None = None
        self.stall = self.rss = self.rss_all = 0.0
        self.tree: float | None = None  # the jailed tree's peak, from its cgroup
        self.tree_sampled = 0.0  # the bot's descendants' peak, sampled
        self.segments: list = []
        self.units = 0
        self.frames: list = []
        self.seconds = 0.0

    async def submit(self, source: str, wait_s: float = 120, then: str | None = None) -> Run:
        with hostile.RssGrowth() as rss:
            async with LoopLag() as lag, Service.open(self.settings, models=self.models, chat=None) as svc:
                svc.start_workers(1)
                seen = len(jail.RECENT)
                t = time.monotonic()
                sub = await svc.submit(SCOPE, source)
                try:
                    self.video = await asyncio.wait_for(svc.wait(sub.job.id), wait_s)
                except UserFacingError as e:
                    self.error = e.message
                self.seconds = time.monotonic() - t
                if self.video is not None:
                    store = svc.store(SCOPE)
                    self.segments = await store.segments(self.video.id, 0, 1e9)
                    for k in Kind:
                        self.units += len(await store.units(self.video.id, 0, 1e9, str(k)))
                    self.frames = await store.frames(self.video.id)
                # The input's cost is the bot's growth by the time its job ended. The legit lecture
                # that may follow is another video's cost (one the warm fixture did not index:
                # +58-115 MB here and on CI, the hostile job itself +2 MB): printed, not the case's.
                self.rss = rss.growth
                if then is not None:  # the slot is free again: another video indexes
                    nxt = await svc.submit(SCOPE, then)
                    await asyncio.wait_for(svc.wait(nxt.job.id), 120)
                outcomes = list(jail.RECENT)[seen:]
                self.tree = max((o.peak_mb for o in outcomes), default=None)
                self.left = hostile.processes_in(self.settings.data_dir)
        self.stall, self.rss_all, self.tree_sampled = lag.worst, rss.growth, rss.tree_peak
        return self


def assert_bounded(run: Run) -> None:
    assert run.stall < STALL_S, run.stall
    assert run.rss < RSS_GROWTH_MB, run.rss
    assert run.left == [], run.left


# -- case 1: a subtitle line that made the old parser backtrack for ~90 s, on the event loop -------

async def test_quadratic_subtitles_neither_stall_nor_hold_the_worker(rel_settings, models, server,
                                                                     short_lectures) -> None:
    server.files.update({"lecture.mp4": short_lectures["volcano"], "c.vtt": hostile.quadratic_vtt().encode(),
                         "page.html": page_with_captions("lecture.mp4", "c.vtt", "Volcanoes")})
    run = await Run(rel_settings, models).submit(f"{server.base}/page.html")
    figures("quadratic-vtt", run)
    assert run.error is None, run.error
    assert [s.text for s in run.segments if s.kind == Kind.SUBTITLE] == ["Magma rises."]
    assert_bounded(run)


# -- case 2: a 554-byte DASH manifest of 5e9 fragments -------------------------------------------

async def test_dash_manifest_of_billions_of_fragments_ends_at_the_memory_limit(rel_settings, models,
                                                                             server) -> None:
    server.files["bomb.mpd"] = hostile.DASH_BOMB
    run = await Run(rel_settings, models).submit(f"{server.base}/bomb.mpd")
    figures("dash-bomb", run)
    assert len(hostile.DASH_BOMB) < 600
    assert run.error is not None and "more memory than I allow" in run.error, run.error
    assert run.tree is not None and run.tree <= rel_settings.max_ingest_mb + 1
    assert_bounded(run)


# -- case 3: a million fragments, the first there and the rest 404 -------------------------------

async def test_million_fragment_manifest_frees_the_slot_at_the_deadline(rel_settings, models, server,
                                                                       short_lectures) -> None:
    server.files.update({"many.mpd": hostile.DASH_MILLION, "s1.m4s": b"\0" * 4096,
                         "lecture.mp4": short_lectures["volcano"]})
    limits = replace(rel_settings, download_timeout_seconds=8.0, download_grace_seconds=30.0)
    run = await Run(limits, models).submit(f"{server.base}/many.mpd", wait_s=60, then=f"{server.base}/lecture.mp4")
    asked = len(server.requests)
    await asyncio.sleep(1.0)
    figures("million-fragments", run)
    assert run.error is not None and "longer than my limit" in run.error, run.error
    assert len(server.requests) == asked  # nothing walks the fragments after the job ended
    assert_bounded(run)


# -- case 4: parameter sets that switch to 6000×6000; a second, huge video stream ----------------

async def test_parameter_set_switch_to_6000x6000_is_never_decoded(rel_settings, models, short_lectures,
                                                                tmp_path: Path) -> None:
    video = await asyncio.to_thread(hostile.size_switch, tmp_path / "switch.ts", short_lectures["volcano"], tmp_path)
    run = await Run(rel_settings, models).submit(str(video))
    figures("sps-switch-6000", run)
    assert run.error is None, run.error
    assert run.frames and not await asyncio.to_thread(greys, run.frames)  # the lecture's frames only
    assert run.tree_sampled < 400, run.tree_sampled  # no 6000×6000 picture was ever held
    assert_bounded(run)


async def test_only_the_first_video_stream_is_read(rel_settings, models, short_lectures, tmp_path: Path) -> None:
    video = await asyncio.to_thread(hostile.second_stream, tmp_path / "two.mkv", short_lectures["volcano"])
    run = await Run(rel_settings, models).submit(str(video))
    figures("second-stream-8000", run)
    assert run.error is None, run.error
    def size(path: str) -> tuple[int, int]:
        with Image.open(path) as im:
            return im.size

    sizes = await asyncio.to_thread(lambda: {size(f.path) for f in run.frames})
    assert sizes == {(640, 360)}, sizes  # the lecture's frames, not the 8000×8000 grey stream's
    assert not await asyncio.to_thread(greys, run.frames)
    assert_bounded(run)


# -- case 5 (ingest half): 20,000 cues on a short video --------------------------------------------

async def test_subtitle_cues_are_bounded_per_minute_and_inside_the_video(rel_settings, models, server,
                                                                        short_lectures) -> None:
    cues = hostile.many_cues_vtt(20_000, 6.0).encode()
    server.files.update({"lecture.mp4": short_lectures["volcano"], "c.vtt": cues,
                         "page.html": page_with_captions("lecture.mp4", "c.vtt", "Volcanoes")})
    run = await Run(rel_settings, models).submit(f"{server.base}/page.html", wait_s=90)
    figures("20000-cues", run)
    assert len(cues) > 10**6
    assert run.error is None and run.video is not None, run.error
    subs = [s for s in run.segments if s.kind == Kind.SUBTITLE]
    per_minute = rel_settings.max_segments_per_minute
    assert 0 < len(subs) <= per_minute
    assert run.units <= 2 * per_minute
    assert all(0 <= s.start < s.end <= run.video.duration for s in subs)
    assert_bounded(run)


# -- case 9: cover art decoded by every ffprobe and ffmpeg -----------------------------------------

async def test_cover_art_is_never_decoded(rel_settings, models, short_lectures, tmp_path: Path) -> None:
    video = await asyncio.to_thread(hostile.with_covers, tmp_path / "covers.mp4", short_lectures["volcano"],
                                    tmp_path, 12000, 4)
    run = await Run(rel_settings, models).submit(str(video))
    figures("covers-4x12000", run)
    assert video.stat().st_size < 16 * 2**20
    assert run.error is None, run.error
    assert run.tree_sampled < 400, run.tree_sampled  # each cover is 576 MB decoded
    assert_bounded(run)


# -- case 10: a long link in any message, matched by yt-dlp's quadratic patterns -------------------

async def test_a_long_link_in_a_message_does_not_stall_the_loop() -> None:
    link = "https://www.youtube.com/" + "?a" * 10_000  # YoutubePlaylist's pattern: 7 s for this one
    msg = Incoming(Scope("slack", "T1", "C1"), f"look {link}", links=(link,))
    await asyncio.to_thread(is_video_link, "https://example.org/warm-up")  # yt-dlp's extractors load once
    async with LoopLag() as lag:
        decision = await decide(msg)
    print(f"\nHOSTILE long-link stall={lag.worst:.3f}s")
    assert decision.sources == ()
    assert lag.worst < STALL_S, lag.worst
    assert is_video_link("https://www.youtube.com/watch?v=dQw4w9WgXcQ")


def greys(frames: list) -> list[float]:
    """Times of the frames that show the uniform grey of the hostile streams (no slide does)."""
    out = []
    for f in frames:
        with Image.open(f.path) as im:
            px = np.asarray(im.convert("L"), dtype=np.float32)
        if float(px.std()) < 3.0 and abs(float(px.mean()) - 128) < 10:
            out.append(f.time)
    return out

"""Answers while a video is indexing: the ingest commits window by window (core/ingest/pipeline.py),
so a question asked meanwhile is answered from the part done and says how far that is, the
progress message shows it, and `summary` gives the chapters known so far. Through the real
pipeline (ffmpeg, whisper tiny.en, RapidOCR, MiniLM, Milvus Lite, SQLite) on the demo lecture
(~40 s, four slides) cut into ~10-s windows, the ingest paused before its second window is
committed, as the crash tests pause one at a stage."""

from __future__ import annotations

import asyncio
import re

import pytest

from core.chat import present
from core.ingest import audio
from core.models import Progress, VideoStatus
from core.service import Service
from core.store.scoped import ScopedStore
from tests.conftest import console
from tests.reliability.conftest import milvus_rows

WINDOW_S = 10.0


class PauseAfterFirstWindow:
    """Holds `ScopedStore.put_window` of one channel at its second call until `release` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, channel: str) -> None:
        self.paused = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[tuple[float, float]] = []
        put = ScopedStore.put_window

        async def put_window(store: ScopedStore, video_id: str, since: float, until: float, *args, **kw) -> None:  # noqa: ANN002, ANN003
            if store.scope.channel == channel:
                self.calls.append((since, until))
                if len(self.calls) == 2:
                    self.paused.set()
                    await self.release.wait()
            await put(store, video_id, since, until, *args, **kw)

        monkeypatch.setattr(ScopedStore, "put_window", put_window)


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "WINDOW_S", WINDOW_S)


@pytest.mark.timeout(180)  # one ingest of the demo lecture and four questions: ~20 s alone, more on a loaded machine
async def test_a_question_during_an_ingest_is_answered_from_the_first_window(
        service: Service, lecture, small_windows, monkeypatch: pytest.MonkeyPatch) -> None:
    path, lec = lecture
    sc = console("progressive")
    pause = PauseAfterFirstWindow(monkeypatch, sc.channel)
    heard: list[Progress] = []

    async def on_progress(p: Progress) -> None:
        heard.append(p)

    sub = await service.submit(sc, str(path), on_progress=on_progress)
    await asyncio.wait_for(pause.paused.wait(), 240)
    video = await service.video(sc, sub.job.video_id)
    assert video is not None and video.status == VideoStatus.INDEXING
    first = pause.calls[0]
    assert video.indexed_to == pytest.approx(first[1]) and 0 < video.indexed_to < video.duration - 5

    # the first slide's words are in the first window: answered, with how far the video is indexed
    answer = await service.ask(sc, "What do we talk about today?")
    assert answer.citations and all(c.start < video.indexed_to for c in answer.citations)
    line = f"indexed up to {present.fmt_time(video.indexed_to)} of {present.fmt_time(video.duration)}"
    assert line in answer.text, answer.text
    # the last slide is not indexed yet: nothing past the committed part is cited
    late = await service.ask(sc, "Why do stratovolcanoes explode while shield volcanoes pour out runny lava?")
    assert all(c.start < video.indexed_to for c in late.citations)

    # the progress message says how far it is
    windowed = [p for p in heard if p.indexed_to > 0]
    assert windowed and windowed[-1].indexed_to == pytest.approx(video.indexed_to)
    shown = present.progress(present.PLAIN, "lecture.mp4", windowed[-1])
    assert line in shown and present.ASK_ABOUT_PART in shown
    assert line in present.video_list(present.PLAIN, await service.videos(sc))
    assert line in present.job_status(present.PLAIN, await service.jobs(sc), await service.videos(sc))

    # the summary says it is still indexing and gives the chapters known so far
    partial = await service.summary(sc, video.id)
    assert "still being indexed" in partial.text and line in partial.text
    assert partial.chapters and all(c.start < video.indexed_to for c in partial.chapters)
    assert partial.chapters[0].title == lec.slides[0].title

    pause.release.set()
    done = await service.wait(sub.job.id)
    assert done.status == VideoStatus.READY and done.indexed_to == pytest.approx(done.duration)
    assert len(pause.calls) >= 3 and pause.calls[-1][1] >= done.duration - 0.01
    assert [a for a, _ in pause.calls[1:]] == [b for _, b in pause.calls[:-1]]  # windows follow one another

    # nothing indexed twice: every row and vector once
    rows = milvus_rows(service, sc, done.id)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    frames = await service.catalog.rows('SELECT "time" FROM frames WHERE scope=? AND video_id=?', (sc.key, done.id))
    times = [r["time"] for r in frames]
    assert len(times) == len(set(times)) == sum(1 for i in ids if re.search(r"f\d+$", i)) > 0
    segs = await service.catalog.rows('SELECT start, kind, text FROM segments WHERE scope=? AND video_id=?',
                                      (sc.key, done.id))
    assert len({(r["start"], r["kind"], r["text"]) for r in segs}) == len(segs) > 0
    full = await service.ask(sc, "Why do stratovolcanoes explode?")
    assert "indexed up to" not in full.text


def test_window_chunks_are_the_whole_video_chunks_but_the_one_across_each_edge() -> None:
    """A window's speech is chunked where one pass over the whole video chunks it (an answer cites
    the same moments as before windows), each chunk starting inside its window (what a resumed
    ingest drops and redoes), every segment in some chunk."""
    from core.ingest.chunk import chunk
    from core.ingest.windows import window_chunks
    from core.models import Kind, Segment

    segs, t = [], 0.0
    for i in range(200):  # 2-9 s segments with pauses, ~12 minutes
        d = 2.0 + (i * 7919 % 70) / 10
        segs.append(Segment(t, t + d, f"s{i}", Kind.SPEECH))
        t += d + (i * 104729 % 15) / 10
    edges = [0.0, 180.0, 360.0, 540.0, 1e9]
    got: list[Segment] = []
    before: list[Segment] = []
    for a, b in zip(edges, edges[1:], strict=False):
        speech = [s for s in segs if a <= s.start < b]
        mine = window_chunks(before, speech, a)
        assert all(a <= c.start < b for c in mine)
        got += mine
        before += speech
    whole = {(c.start, c.text) for c in chunk(segs)}
    windowed = {(c.start, c.text) for c in got}
    assert len(whole - windowed) <= 3  # the chunk across each of the three edges, cut there
    assert {w for c in got for w in c.text.split()} == {s.text for s in segs}
    assert len(windowed - whole) <= 6  # each cut chunk's two parts at most
    assert window_chunks([], segs, 0.0) == chunk(segs)

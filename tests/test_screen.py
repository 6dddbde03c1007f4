"""What is on the screen: scene-aware frames catch a short slide, identical frames are read once,
and a fact shown only on a slide is found and cited with the frame that shows it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core import synth
from core.ingest.ocr import read_frames
from core.models import Frame, Kind
from core.service import Service
from tests.conftest import console


@pytest.fixture(scope="session")
def short_slide(media_dir: Path) -> tuple[Path, synth.Lecture]:
    """A 3-second slide between two 5-second samples (at 6.5–9.5 s): only scene detection sees it."""
    lec = synth.Lecture("Shipping logistics", [
        synth.Slide("Containers", ("standard sizes",), "", hold=6.5),
        synth.Slide("Port code", ("harbour identifier: NLRTM-4471",), "", hold=3.0),
        synth.Slide("Cranes", ("gantry cranes lift boxes",), "", hold=6.5),
    ], background="0xF0F5E6")
    return synth.render(lec, media_dir / "short_slide.mp4"), lec


async def test_short_slide_between_samples_is_seen_and_read(service: Service, short_slide) -> None:
    path, lec = short_slide
    sc = console("screen")
    video = await service.wait((await service.submit(sc, str(path))).job.id)
    a, b = lec.times[1]
    frames = await service.store(sc).frames(video.id)
    assert any(a - 0.1 <= f.time < b for f in frames), (frames, lec.times)
    segs = await service.store(sc).segments(video.id, 0, 1e9)
    code = [s for s in segs if s.kind == Kind.OCR and "NLRTM" in s.text]
    assert code and code[0].start >= a - 0.1 and code[0].end <= b + 0.1

    answer = await service.ask(sc, "What is the harbour identifier?")
    assert "NLRTM-4471" in answer.text
    top = answer.citations[0]
    assert top.start >= a - 0.5 and top.end <= b + 0.5
    assert answer.frame is not None and a - 0.1 <= answer.frame.time < b


class CountingReader:
    def __init__(self) -> None:
        self.calls = 0

    def read(self, image: Path) -> str:
        self.calls += 1
        return f"text of {image.name[:2]}"


def test_unchanged_frames_are_read_once_and_merged(tmp_path: Path) -> None:
    from PIL import Image

    paths = []
    for i, shade in enumerate([200, 200, 200, 40, 40]):
        p = tmp_path / f"{'ab' if shade == 200 else 'cd'}{i}.jpg"
        Image.new("RGB", (64, 36), (shade, shade, shade)).save(p)
        paths.append(p)
    frames = [Frame(i * 5.0, str(p)) for i, p in enumerate(paths)]
    reader = CountingReader()
    segments, texts = read_frames(reader, frames, duration=25.0)
    assert reader.calls == 2  # one read per distinct image
    assert [(s.start, s.end, s.text) for s in segments] == [(0.0, 15.0, "text of ab"), (15.0, 25.0, "text of cd")]
    assert texts[10.0] == "text of ab"

    # the next window (core/ingest/pipeline.py reads a video's frames window by window): its first
    # frame looks like the last one before it and reuses that text, read again by no one
    reader = CountingReader()
    segments, texts = read_frames(reader, frames[4:], duration=25.0, previous=(frames[3], "text of cd"))
    assert reader.calls == 0 and texts == {20.0: "text of cd"}
    segments, texts = read_frames(reader, frames[3:], duration=25.0, previous=(frames[2], "text of ab"))
    assert reader.calls == 1 and [s.text for s in segments] == ["text of cd"]


def test_change_points_and_motion_from_packet_sizes() -> None:
    from core.ingest.frames import Packet, change_points, motion_threshold, moving_between

    still = [Packet(i * 0.04, 60, False) for i in range(1, 250)]
    pkts = sorted([Packet(0.0, 20000, True), Packet(10.0, 20000, True), *still,
                   Packet(4.0, 9000, False), Packet(4.04, 3000, False)], key=lambda p: p.time)
    threshold = motion_threshold(pkts)
    assert threshold == 1024
    assert change_points(pkts, threshold) == [4.14]  # one burst, after it settles
    assert not moving_between(pkts, 0.0, 3.9, threshold) and moving_between(pkts, 0.0, 5.0, threshold)


async def test_moving_picture_is_sampled_every_interval_and_still_slides_are_not(tmp_path: Path) -> None:
    """A 20-s moving test pattern whose keyframes are 10 s apart gets a frame near every 5 s; a
    still slide of the same length keeps just its keyframes (no seek decodes a GOP for nothing)."""
    from core.ingest.frames import extract_frames
    from tests.conftest import ffmpeg

    moving = tmp_path / "moving.mp4"
    await asyncio.to_thread(ffmpeg, "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=20", "-c:v", "libx264", "-x264-params",
           "keyint=250:min-keyint=250:scenecut=0", "-pix_fmt", "yuv420p", str(moving))
    frames = await extract_frames(moving, tmp_path / "m", 20.0, 5.0, 30)
    times = [f.time for f in frames]
    assert all(any(abs(t - w) <= 2.5 for t in times) for w in (0, 5, 10, 15)), times

    still = tmp_path / "still.mp4"
    await asyncio.to_thread(ffmpeg, "-f", "lavfi", "-i", "color=c=white:s=320x240:r=25:d=20", "-c:v", "libx264", "-x264-params",
           "keyint=250:min-keyint=250:scenecut=0", "-pix_fmt", "yuv420p", str(still))
    frames = await extract_frames(still, tmp_path / "s", 20.0, 5.0, 30)
    assert [round(f.time) for f in frames] == [0, 10]

"""What is on the screen: scene-aware frames catch a short slide, identical frames are read once,
and a fact shown only on a slide is found and cited with the frame that shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import synth
from core.models import Frame, Kind
from core.ocr import read_frames
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
    assert any(a - 0.1 <= t < b for t, _, _ in frames), (frames, lec.times)
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

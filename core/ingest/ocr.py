"""On-screen text: RapidOCR on sampled frames, skipping frames that did not change and merging
identical text across consecutive frames into one timed span (kind `ocr`)."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from core.engines.ocr import Reader
from core.models import Frame, Kind, Segment

log = logging.getLogger(__name__)


def thumbnail(path: Path | str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((160, 90)), dtype=np.float32)


def same_image(a: np.ndarray, b: np.ndarray, level: float = 24.0, share: float = 0.001) -> bool:
    """Fewer than `share` of the pixels of two 160×90 greyscale thumbnails differ by more than
    `level` grey levels. A changed line of text moves a few percent of the pixels by far more;
    compression noise on a still slide moves many pixels by a little. (A mean difference cannot
    tell the two apart: one new line on a plain slide shifts the mean by under two levels.)"""
    return float((np.abs(a - b) > level).mean()) < share


def same_text(a: str, b: str) -> bool:
    """The same slide read twice (OCR may differ by a character), not a slide that adds a line
    to the previous one: build-up slides must each keep their span."""
    if a == b:
        return True
    longest = max(len(a), len(b))
    return abs(len(a) - len(b)) <= max(2, 0.05 * longest) and difflib.SequenceMatcher(None, a, b).ratio() >= 0.9


def read_frames(reader: Reader, frames: list[Frame], duration: float,
                previous: tuple[Frame, str] | None = None) -> tuple[list[Segment], dict[float, str]]:
    """Timed on-screen text for `frames` (sorted by time), and the text read on each frame.

    A frame whose thumbnail matches the previous one reuses its text without running OCR; a run of
    frames with the same text becomes one segment from the first frame to the next change.
    `previous` (the frame before these, with its text: the last of the window before, in
    core/ingest/pipeline.py) is what the first frame is compared with.
    """
    texts: dict[float, str] = {}
    prev_thumb: np.ndarray | None = thumbnail(previous[0].path) if previous else None
    prev_text = previous[1] if previous else ""
    for f in frames:
        thumb = thumbnail(f.path)
        if prev_thumb is not None and same_image(thumb, prev_thumb):
            text = prev_text
        else:
            text = reader.read(Path(f.path))
        texts[f.time] = text
        prev_thumb, prev_text = thumb, text
    segments: list[Segment] = []
    run_start, run_text = None, ""
    for f in frames:
        text = texts[f.time]
        if run_start is not None and same_text(text, run_text):
            continue
        if run_start is not None and run_text:
            segments.append(Segment(run_start, f.time, run_text, Kind.OCR))
        run_start, run_text = f.time, text
    if run_start is not None and run_text:
        segments.append(Segment(run_start, max(duration, run_start), run_text, Kind.OCR))
    return segments, texts

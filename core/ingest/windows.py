"""The windows a video is indexed and committed in (core/ingest/pipeline.py): about WINDOW_S of
media each, cut at pauses of the sound track (core/ingest/audio.py), and what each lane gives a
window before it is committed."""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.ingest import audio
from core.ingest.chunk import chunk
from core.models import Frame, Segment


@dataclass(frozen=True)
class Span:
    """One window of the video, [since, until) in seconds, committed whole (the last one reaches
    the video's end); `samples` are its first and last sample of the sound track, if any."""

    since: float
    until: float
    samples: tuple[int, int] | None = None


def spans(wav: Path | None, duration: float, resume: float, window_s: float | None = None) -> list[Span]:
    """The windows of a video from `resume` on: the sound track's (cut at pauses,
    `core.ingest.audio.windows`), else windows of WINDOW_S seconds."""
    size = audio.WINDOW_S if window_s is None else window_s
    out: list[Span] = []
    if wav is not None:
        with wave.open(str(wav), "rb") as w:
            rate = w.getframerate()
        out = [Span(a / rate, b / rate, (a, b)) for a, b in audio.windows(wav, size, start=round(resume * rate))]
    else:
        at = resume
        while at < duration:
            end = duration if duration - at <= size * 1.25 else at + size
            out.append(Span(at, end))
            at = end
    if out and out[-1].until < duration:
        out[-1] = Span(out[-1].since, duration, out[-1].samples)
    return out


def window_chunks(before: list[Segment], speech: list[Segment], since: float) -> list[Segment]:
    """The chunks of one window's `speech`, cut where one pass over the whole video cuts them
    (`chunk` from the video's start; `before` is the speech of the windows before), so a window
    edge moves no chunk but the one across it. That one is cut at the window's start: its part
    before was the last chunk of the window before, its part from `since` on (up to the segment
    the next chunk overlaps it by) is this window's first. Every chunk starts in its window,
    which is what a resumed ingest drops and redoes (core/store/catalog/windows.py)."""
    if not before:
        return chunk(speech)
    mine = [c for c in chunk(before + speech) if c.start >= since]
    first = mine[0].start if mine else float("inf")
    head = [s for s in speech if s.start < first]
    if not head:
        return mine
    return chunk(head + [s for s in speech if s.start == first][:1]) + mine


@dataclass
class Said:
    """What was said in one window: its segments, their chunks and units, each with its vectors."""

    speech: list[Segment]
    chunks: list[Segment]
    chunk_vectors: np.ndarray
    units: list[Segment]
    unit_vectors: np.ndarray


@dataclass
class Screen:
    """What one window showed: its frames, their on-screen text (per frame, and as spans with
    their text vectors) and the frames' CLIP vectors."""

    frames: list[Frame]
    segments: list[Segment]
    text: dict[float, str]
    vectors: np.ndarray | None
    ocr_vectors: np.ndarray


async def ready(fut: asyncio.Future[Any], lanes: list[asyncio.Future[Any]]) -> Any:
    """`fut`'s result, or the error of a lane that stopped before giving it."""
    while not fut.done():
        await asyncio.wait([fut, *[t for t in lanes if not t.done()]], return_when=asyncio.FIRST_COMPLETED)
        for t in lanes:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        if not fut.done() and all(t.done() for t in lanes):
            raise RuntimeError("an ingest lane ended before its window")
    return fut.result()

"""Transcription in bounded windows, so a 90-minute video costs the memory of a 3-minute one.

A whisper backend given a whole file decodes all of it into one float array first (faster-whisper:
90 min × 16 kHz × 4 B = 345 MB, plus its features). Here the 16 kHz mono WAV is read with `wave`
in windows of about three minutes, each window cut at the quietest half second near its end (a
pause between words, so no word is split), written to a small WAV of its own and transcribed,
and each segment is moved by the window's start. Any `Transcriber` works: it still gets a file.

Three minutes, not ten: faster-whisper computes a window's log-mel features in one go, and that
transient was the peak of a whole ingest (+450 MB at the start of a 10-minute window, ~1.3 GB in
all). With 180-s windows a worker indexing the 10-minute lecture peaks at 0.98-1.00 GB
(bench.footprint ingest; 1.10-1.23 GB with 300-s windows). Whisper conditions on nothing before a
window (`condition_on_previous_text=False`), so a cut at a pause loses no context.
"""

from __future__ import annotations

import wave
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.engines.transcribe import Transcriber
from core.models import Segment

WINDOW_S = 180.0  # a window's length, before the cut moves back to a pause (see above)
SEARCH_S = 30.0  # how far back from a window's end the cut looks for the quietest moment
QUIET_S = 0.5  # the span whose loudness is compared


def quietest(samples: np.ndarray, rate: int, search_s: float = SEARCH_S, span_s: float = QUIET_S) -> int:
    """The sample index at the middle of the quietest `span_s` within the last `search_s` of
    `samples` (int16 mono): where to end a window."""
    span = max(1, int(span_s * rate))
    tail_start = max(0, len(samples) - int(search_s * rate))
    tail = samples[tail_start:].astype(np.float32)
    if len(tail) <= span:
        return len(samples)
    energy = np.convolve(tail * tail, np.ones(span, np.float32), mode="valid")
    return tail_start + int(np.argmin(energy)) + span // 2


def windows(wav: Path, window_s: float | None = None, start: int = 0) -> list[tuple[int, int]]:
    """(first, last) sample of each window of `wav` from sample `start` on, the cuts at pauses.
    Reads the file one window at a time. Where each cut falls depends only on where its window
    starts, so the windows from an earlier cut are the ones a run from 0 found there: an ingest
    resumed after its last committed window cuts the rest as it would have."""
    window_s = WINDOW_S if window_s is None else window_s
    out: list[tuple[int, int]] = []
    with wave.open(str(wav), "rb") as w:
        rate, total, width, channels = w.getframerate(), w.getnframes(), w.getsampwidth(), w.getnchannels()
        size = int(window_s * rate)
        while start < total:
            if total - start <= size * 1.25:  # a short remainder joins the last window
                out.append((start, total))
                break
            w.setpos(start)
            raw = w.readframes(size)
            samples = np.frombuffer(raw, dtype=np.int16 if width == 2 else np.uint8)[::channels]
            cut = start + max(quietest(samples, rate, min(SEARCH_S, window_s / 2)), size // 2)
            out.append((start, cut))
            start = cut
    return out


def transcribe_windows(transcriber: Transcriber, wav: Path, workdir: Path,
                       window_s: float | None = None) -> list[Segment]:
    """`transcriber.transcribe(wav)`, window by window (see the module's docstring); a file no
    longer than 1.25 windows goes through whole, as before."""
    spans = windows(wav, window_s)
    if len(spans) <= 1:
        return transcriber.transcribe(wav)
    return [s for first, last in spans for s in transcribe_span(transcriber, wav, workdir, first, last)]


def transcribe_span(transcriber: Transcriber, wav: Path, workdir: Path, first: int, last: int) -> list[Segment]:
    """The segments of samples [first, last) of `wav`, at their times in the whole file: the span
    written to a small WAV of its own and transcribed."""
    piece = workdir / "audio-window.wav"
    try:
        with wave.open(str(wav), "rb") as src:
            rate = src.getframerate()
            src.setpos(first)
            with wave.open(str(piece), "wb") as dst:
                dst.setparams(src.getparams())
                dst.writeframes(src.readframes(last - first))
        offset = first / rate
        return [replace(s, start=s.start + offset, end=s.end + offset) for s in transcriber.transcribe(piece)]
    finally:
        piece.unlink(missing_ok=True)

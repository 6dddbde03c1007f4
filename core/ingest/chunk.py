"""Timed text chunks: consecutive segments grouped into ~30 s windows that overlap by one segment,
each keeping its start and end."""

from __future__ import annotations

from core.models import Segment


def chunk(segments: list[Segment], target: float = 30.0, overlap: int = 1, max_chars: int = 1500) -> list[Segment]:
    segs = sorted((s for s in segments if s.text.strip()), key=lambda s: s.start)
    if not segs:
        return []
    chunks: list[Segment] = []
    i = 0
    while i < len(segs):
        j = i
        text_len = 0
        while j < len(segs) and (j == i or (segs[j].end - segs[i].start <= target
                                            and text_len + len(segs[j].text) <= max_chars)):
            text_len += len(segs[j].text) + 1
            j += 1
        group = segs[i:j]
        chunks.append(Segment(group[0].start, max(s.end for s in group),
                              " ".join(s.text.strip() for s in group), group[0].kind))
        if j >= len(segs):
            break
        i = max(i + 1, j - overlap)
    return chunks


def units(speech: list[Segment]) -> list[Segment]:
    """What a retrieved chunk is narrowed to: each segment, and each two consecutive ones (whisper
    often cuts a sentence in half)."""
    segs = sorted((s for s in speech if s.text.strip()), key=lambda s: s.start)
    pairs = [Segment(a.start, b.end, f"{a.text} {b.text}", a.kind) for a, b in zip(segs, segs[1:], strict=False)]
    return segs + pairs

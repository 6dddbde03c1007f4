"""vidrag's neutral vocabulary: frozen dataclasses shared by the core and every adapter."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Scope:
    """The isolation unit: one channel on one workspace (Slack team, Discord guild) of one platform.

    Only a Scope knows its Milvus partition name, and every store read or write takes one, so a
    search across channels cannot be written by accident.
    """

    platform: str
    workspace: str
    channel: str

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}"

    @property
    def partition(self) -> str:
        # Partition names allow letters, digits and underscores and must start with a letter.
        return "s_" + hashlib.sha256(self.key.encode()).hexdigest()[:24]


class Kind(StrEnum):
    SPEECH = "speech"
    SUBTITLE = "subtitle"
    OCR = "ocr"


class VideoStatus(StrEnum):
    QUEUED = "queued"
    INDEXING = "indexing"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Video:
    id: str
    scope: Scope
    source: str
    title: str
    duration: float
    status: VideoStatus
    url: str = ""  # a link a person can open; empty for local files
    error: str = ""


@dataclass(frozen=True)
class Segment:
    """A span of timed text: one transcript segment, subtitle cue, or on-screen text span."""

    start: float
    end: float
    text: str
    kind: Kind = Kind.SPEECH


@dataclass(frozen=True)
class Frame:
    time: float
    path: str


@dataclass(frozen=True)
class Hit:
    """One retrieved moment of one video, after fusion."""

    video_id: str
    start: float
    end: float
    text: str
    kind: str
    score: float


@dataclass(frozen=True)
class Citation:
    video_id: str
    title: str
    start: float
    end: float
    url: str

    @property
    def label(self) -> str:
        return fmt_time(self.start)


@dataclass(frozen=True)
class FrameRef:
    video_id: str
    time: float
    path: str


@dataclass(frozen=True)
class Turn:
    """One earlier exchange in a thread, given back to the model for follow-up questions."""

    question: str
    answer: str


@dataclass(frozen=True)
class Answer:
    text: str
    citations: tuple[Citation, ...] = ()
    frame: FrameRef | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "citations": [
                {"video_id": c.video_id, "title": c.title, "start": round(c.start, 2),
                 "end": round(c.end, 2), "url": c.url}
                for c in self.citations
            ],
            "frame": None if self.frame is None else {
                "video_id": self.frame.video_id, "time": round(self.frame.time, 2),
                "path": self.frame.path},
        }


class Stage(StrEnum):
    QUEUED = "queued"
    FETCH = "downloading"
    PROBE = "probing"
    FRAMES = "extracting frames"
    TRANSCRIBE = "transcribing"
    OCR = "reading the screen"
    EMBED = "indexing"
    DONE = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Progress:
    """A report from a running ingest: which stage, how far through it (0..1), on which video."""

    job_id: str
    video_id: str
    stage: Stage
    fraction: float = 0.0
    title: str = ""
    duration: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class Job:
    id: str
    video_id: str
    scope: Scope
    source: str
    stage: Stage
    attempts: int = 0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def fmt_time(seconds: float) -> str:
    """3:41 or 1:02:03, as chat users write timestamps."""
    s = int(max(0.0, seconds))
    h, m, sec = s // 3600, (s % 3600) // 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"

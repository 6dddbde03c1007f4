"""vidrag's neutral vocabulary: frozen dataclasses shared by the core and every adapter."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


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

    @classmethod
    def parse(cls, key: str) -> Scope:
        """The scope whose `key` this is (the catalog stores keys)."""
        platform, workspace, channel = key.split(":", 2)
        return cls(platform, workspace, channel)


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
    language: str = ""  # as Whisper names it, detected at ingest; "" when none was (no speech)
    requested_by: str = ""  # the chat user who posted it; "" for the operator's command line
    created: float = 0.0  # when it was filed: a video forgotten and posted again is filed anew (its version)
    indexed_to: float = 0.0  # seconds of it indexed and searchable (all of it once ready)


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


FRAME = "frame"  # the kind of a frame's hit


@dataclass(frozen=True, slots=True)
class Hit:
    """One timed piece of one video, the one type retrieval reads by name: a chunk or segment found
    by its vector or its words (`kind` speech, subtitle or ocr), a moment after fusion, or a frame
    (`kind` "frame": `start` = `end` = its `time`, the text read on it as `text`, and `path`, where
    its JPEG was written when it was indexed — maybe on another host: `ScopedStore.frame_file`
    gives a local copy)."""

    video_id: str
    start: float
    end: float
    text: str = ""
    kind: str = ""
    score: float = 0.0
    path: str = ""

    @property
    def time(self) -> float:
        """A frame's time."""
        return self.start


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


@dataclass(frozen=True)
class Chapter:
    """A stretch of one video about one topic: start and end in seconds, a short title (the
    slide's heading, or a key phrase of what is said), and a link that opens the video at its
    start ("" for a local file)."""

    start: float
    end: float
    title: str
    url: str = ""


class StoredSummary(NamedTuple):
    """A video's summary as the catalog keeps it: the text (its [m:ss] markers are the cited
    moments, in `moments`), the chapters, which model wrote it ("extractive" without an LLM) and
    how far into the video its indexed part reached when it was made."""

    text: str
    chapters: tuple[Chapter, ...]
    moments: tuple[tuple[float, float], ...]
    method: str
    indexed_to: float


@dataclass(frozen=True)
class Summary:
    """What a video is about: a few sentences, each citing a moment (`citations`, as an answer's),
    and its chapters."""

    video: Video
    text: str
    chapters: tuple[Chapter, ...]
    citations: tuple[Citation, ...] = ()
    method: str = "extractive"

    def answer(self) -> Answer:
        """The summary as an answer: the adapters link its [m:ss] markers the same way."""
        return Answer(self.text, self.citations)

    def to_json(self) -> dict[str, Any]:
        return {"video_id": self.video.id, "title": self.video.title, "summary": self.text,
                "chapters": [{"start": round(c.start, 2), "end": round(c.end, 2), "title": c.title}
                             for c in self.chapters]}


class Stage(StrEnum):
    """Where a job is: a stable id, stored in the catalog (`jobs.stage`). What people read for
    each is worded in core/chat/present.py (`STAGE_WORDS`), so rewording is not a migration."""

    QUEUED = "queued"
    FETCH = "fetch"
    PROBE = "probe"
    FRAMES = "frames"
    TRANSCRIBE = "transcribe"
    OCR = "ocr"
    EMBED = "embed"
    DONE = "done"
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
    indexed_to: float = 0.0  # seconds of the video searchable already (its committed windows)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"  # failed for good, or out of attempts; `error` says why


@dataclass(frozen=True)
class Job:
    """One ingest job as the queue holds it. `needs_auth`: the source is a chat attachment whose
    URL needs the platform's bot token (the submitter's headers live in memory only, so a job run
    after a restart or on another host uses the token). `worker`/`lease_until`: who holds it and
    until when (0 when nobody does)."""

    id: str
    video_id: str
    scope: Scope
    source: str
    stage: Stage
    attempts: int = 0
    error: str = ""
    status: JobStatus = JobStatus.QUEUED
    needs_auth: bool = False
    requested_by: str = ""
    worker: str = ""
    lease_until: float = 0.0


def fmt_time(seconds: float) -> str:
    """3:41 or 1:02:03, as chat users write timestamps."""
    s = int(max(0.0, seconds))
    h, m, sec = s // 3600, (s % 3600) // 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Laps:
    """Wall seconds per named stage, each counted from the end of the one before (the ingest's
    stage table; bench/baseline.py times the seed recipe's stages the same way)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.started = self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(now - self._clock, 3)
        self._clock = now

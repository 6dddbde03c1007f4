"""The ingest pipeline: fetch → probe → two lanes at once — speech (audio → language → transcript,
or subtitles) and screen (frames → OCR → CLIP) — → chunks → text embeddings → store. Each stage
reports progress; model work runs on the model threads of `Models`, one per lane (and a third
one for questions).

A video that is not in English is transcribed in its own language by the multilingual Whisper,
and its text (speech and on-screen) is embedded by the multilingual text model beside the English
one (core/engines/text.py, `BilingualEmbedder`): questions in its language and in English both find it.
The stored text (what answers quote, what the full-text index matches) is the video's own words.
English videos are indexed exactly as before; one language-detection pass on 30 s of speech is
all they pay."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Settings
from core.engines.registry import Models
from core.engines.transcribe import Transcriber
from core.errors import BadSource
from core.ingest import media
from core.ingest.audio import transcribe_windows
from core.ingest.chunk import chunk, units
from core.ingest.fetch import Pace, UrlGuard, fetch
from core.ingest.ocr import read_frames
from core.ingest.subtitles import parse_subtitles
from core.models import Frame, Laps, Segment, Stage
from core.store.scoped import ScopedStore

log = logging.getLogger(__name__)

Report = Callable[[Stage, float, str], Awaitable[None]]


@dataclass
class IngestResult:
    title: str
    duration: float
    url: str
    language: str = ""  # as Whisper names it, "" when none was detected (subtitles, no speech)
    stages: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Speech:
    """What was heard: the segments, and their language as Whisper names it ("" when unknown:
    subtitles, a backend without language detection)."""

    segments: list[Segment]
    language: str = ""


def hear(transcriber: Transcriber, wav: Path, workdir: Path) -> Speech:
    """The language detected once on the video's first speech, then every window transcribed in
    it (a 90-minute video is not detected again per window)."""
    language = transcriber.detect(wav)
    return Speech(transcribe_windows(transcriber.speaking(language), wav, workdir), language)


async def ingest(video_id: str, source: str, store: ScopedStore, models: Models, settings: Settings,
                 workdir: Path, report: Report, headers: dict[str, str] | None = None,
                 allow_local: bool = False, guard: UrlGuard | None = None) -> IngestResult:
    """Index `source` as `video_id` in `store`'s scope. Vectors of an earlier attempt are dropped
    first, so a retried job never leaves duplicates."""
    guard = guard or UrlGuard(frozenset(settings.allow_hosts))
    lap = Laps()
    stages = lap.stages

    download = workdir / "download"
    await report(Stage.FETCH, 0.0, "")
    try:
        limit = settings.max_video_minutes * 60
        got = await fetch(source, download, guard, max_bytes=int(settings.max_download_mb * 2**20),
                          max_seconds=limit, headers=headers, allow_local=allow_local,
                          pace=Pace(settings.download_timeout_seconds, settings.min_download_kbps * 1024,
                                    settings.download_grace_seconds))
        lap("fetch")
        await report(Stage.PROBE, 0.0, "")
        info = await media.probe(got.path, scan_seconds=limit + 1)
        check_limits(info, settings)
        title = clean_title(got.title if got.url else info.title, settings.max_title_chars)
        await store.update_video(video_id, title=title, duration=info.duration, url=got.url)
        lap("probe")

        # Two lanes at once; each records its own stage times (they overlap), and "lanes" is the
        # wall time of both, so fetch + probe + lanes + embed + store is the whole ingest.
        async def timed(name: str, work: Awaitable[Any]) -> Any:
            t = time.perf_counter()
            try:
                return await work
            finally:
                stages[name] = round(time.perf_counter() - t, 3)

        async def speech_lane() -> Speech:
            if got.subtitles is not None:
                return Speech(parse_subtitles(got.subtitles.read_text(errors="replace")))
            if not info.has_audio:
                return Speech([])
            wav = await timed("audio", media.extract_audio(got.path, workdir / "audio.wav", fmt=info.format,
                                                           limit=info.duration + 1.0))
            await report(Stage.TRANSCRIBE, 0.0, title)
            heard: Speech = await timed("transcribe", models.call(lambda: hear(models.transcriber, wav, workdir)))
            return heard

        async def screen_lane() -> tuple[list[Frame], list[Segment], dict[float, str], np.ndarray | None]:
            frames_dir = workdir / "frames"
            shutil.rmtree(frames_dir, ignore_errors=True)
            frames = await timed("frames", media.extract_frames(
                got.path, frames_dir, info.duration, settings.frame_interval, settings.max_frames_per_minute,
                fmt=info.format, pixels=info.width * info.height))
            ocr_segments: list[Segment] = []
            ocr_text: dict[float, str] = {}
            if settings.ocr:
                await report(Stage.OCR, 0.0, title)
                ocr_segments, ocr_text = await timed("ocr", models.call_screen(
                    lambda: read_frames(models.ocr, frames, info.duration)))
            image_vectors = await timed("clip", _embed_frames(models, frames))
            return frames, ocr_segments, ocr_text, image_vectors

        await report(Stage.FRAMES, 0.0, title)
        heard_lane, screen = asyncio.ensure_future(speech_lane()), asyncio.ensure_future(screen_lane())
        try:
            heard, (frames, ocr_segments, ocr_text, image_vectors) = await asyncio.gather(heard_lane, screen)
        except BaseException:
            for t in (heard_lane, screen):
                t.cancel()
            await asyncio.gather(heard_lane, screen, return_exceptions=True)
            raise
        speech = heard.segments
        lap("lanes")
        if not speech and not ocr_segments:
            raise BadSource("I found no speech and no readable text in that video, so there is "
                            "nothing I could answer questions from.")

        await report(Stage.EMBED, 0.0, title)
        chunks = chunk(speech) + ocr_segments
        spoken_units = units(speech)
        # one pass: chunks (searched) and spoken units (what a hit is narrowed to); an on-screen
        # text span is its own chunk and its own unit
        texts = [c.text for c in chunks + spoken_units]
        vectors = await models.call(lambda: models.text.embed_passages(texts, heard.language))
        text_vectors = vectors[:len(chunks)]
        unit_vectors = np.concatenate([vectors[len(chunks):], vectors[len(chunks) - len(ocr_segments):len(chunks)]])
        lap("embed")
        await store.drop_vectors([video_id])
        await store.put_text(video_id, chunks, text_vectors, speech + ocr_segments,
                             spoken_units + ocr_segments, unit_vectors, heard.language)
        await store.put_frames(video_id, frames, ocr_text, image_vectors)
        lap("store")
        counts = {"frames": len(frames), "speech": len(speech), "ocr": len(ocr_segments), "chunks": len(chunks)}
        return IngestResult(title, info.duration, got.url, heard.language, stages, counts)
    finally:
        shutil.rmtree(download, ignore_errors=True)
        (workdir / "audio.wav").unlink(missing_ok=True)


def check_limits(info: media.MediaInfo, settings: Settings) -> None:
    """Refuse a video longer than the limit (by its packets, not only its header) or larger in
    pixels than the limits: decoding memory grows with the frame (a 4000×4000 video made ffmpeg
    peak at 3 GB)."""
    if info.duration > settings.max_video_minutes * 60:
        raise BadSource(f"That video is {info.duration / 60:.0f} minutes long; my limit is "
                        f"{settings.max_video_minutes:.0f} minutes.")
    if max(info.width, info.height) > settings.max_video_side or info.width * info.height > settings.max_video_pixels:
        raise BadSource(f"That video's resolution ({info.width}×{info.height}) is larger than I read "
                        f"(at most {settings.max_video_side} px a side and "
                        f"{settings.max_video_pixels / 1e6:.1f} megapixels, e.g. 4K).")


def clean_title(raw: str, limit: int) -> str:
    """A title from yt-dlp's info or a container tag, both chosen by whoever posted the video:
    one printable line of at most `limit` characters, stored that way so nothing that reads it
    later (citations, prompts, listings) pays for a 100 KB title."""
    head = "".join(c for c in " ".join(raw[: limit * 4].split()) if c.isprintable())
    return head if len(head) <= limit else head[: limit - 1].rstrip() + "…"


async def _embed_frames(models: Models, frames: list[Frame]) -> np.ndarray | None:
    image = await models.call_screen(lambda: models.image)
    if image is None or not frames:
        return None
    return await models.call_screen(image.embed_images, [f.path for f in frames])

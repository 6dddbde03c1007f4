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
from core.errors import BadSource
from core.ingest import audio, media, results
from core.ingest.chunk import units
from core.ingest.fetch import SOCKET, fetch, fetched, local_file, refusal, way_out
from core.ingest.guard import UrlGuard
from core.ingest.jail import Jail, Limits, child_settings
from core.ingest.ocr import read_frames
from core.ingest.proxy import Pace
from core.ingest.subtitles import bound
from core.ingest.windows import Said, Screen, Span, ready, spans, window_chunks
from core.models import Frame, Kind, Laps, Segment, Stage
from core.store.media_keep import set_aside
from core.store.scoped import ScopedStore
from core.text.links import looks_like_url

log = logging.getLogger(__name__)

# report(stage, fraction, title, *, indexed_to=seconds searchable already, duration=the video's)
Report = Callable[..., Awaitable[None]]


@dataclass
class IngestResult:
    title: str
    duration: float
    url: str
    language: str = ""  # as Whisper names it, "" when none was detected (subtitles, no speech)
    stages: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    media: str = ""  # the file the ingest read, set aside for MEDIA_KEEP_GB (core/store/media_keep.py)
    media_format: str = ""


async def ingest(video_id: str, source: str, store: ScopedStore, models: Models, settings: Settings,
                 workdir: Path, report: Report, headers: dict[str, str] | None = None,
                 allow_local: bool = False, guard: UrlGuard | None = None) -> IngestResult:
    """Index `source` as `video_id` in `store`'s scope, window by window (`Span`: about
    WINDOW_S of media each): each window's text, units, frames and vectors are committed in one
    fenced write that moves the video's `indexed_to` on, so questions find the part done while
    the rest is indexed. An earlier attempt's committed windows are kept and not done again; what
    it left past them is dropped first, so a retried job never leaves duplicates.

    Everything that reads the posted bytes runs in a jailed child (core/ingest/jail.py): the
    download, the probe, the subtitles, the sound track and the frames. Its results are checked
    (core/ingest/results.py) and each lane starts as soon as its input is announced: the
    transcription when the sound track is written, OCR and CLIP when the frames are; a window is
    committed as soon as both lanes are past it."""
    guard = guard or UrlGuard(frozenset(settings.allow_hosts))
    lap = Laps()
    stages = lap.stages
    max_bytes = int(settings.max_download_mb * 2**20)
    pace = Pace(settings.download_timeout_seconds, settings.min_download_kbps * 1024, settings.download_grace_seconds)
    download = workdir / "download"
    lanes: dict[str, asyncio.Future[Any]] = {}
    known = await store.video(video_id)
    resume = known.indexed_to if known is not None else 0.0
    if known is not None and 0 < known.duration <= resume:  # every window committed: only the finish is left
        return IngestResult(known.title, known.duration, known.url, known.language, {}, {"windows": 0})
    await store.drop_after(video_id, resume)  # what an earlier attempt left past its last window
    await report(Stage.FETCH, 0.0, "")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(workdir / "frames", ignore_errors=True)
        src, local, title, url = source.strip(), False, "", ""
        readable: tuple[Path, ...] = ()
        media_file: Path | None = None  # what the jail reads: kept for clips once indexed
        if headers is not None:  # an attachment: downloaded here with the bot's token, read in the jail
            got = await fetch(src, download, guard, max_bytes=max_bytes, max_seconds=settings.max_video_minutes * 60,
                              headers=headers, pace=pace)
            src, local, title, media_file = str(got.path.relative_to(workdir)), True, got.title, got.path
        elif not looks_like_url(src):
            path = local_file(src, allow_local)
            src, local, title, readable = str(path.resolve()), True, path.stem, (path.resolve(),)
            media_file = path.resolve()
        else:
            await asyncio.to_thread(guard.check, src)  # getaddrinfo: never on the loop
        info: media.MediaInfo | None = None
        lane_started = time.perf_counter()
        loop = asyncio.get_running_loop()
        windows: asyncio.Future[list[Span]] = loop.create_future()
        said: list[asyncio.Future[Said]] = []
        seen: list[asyncio.Future[Screen]] = []
        stored: list[asyncio.Future[None]] = []  # each window's commit
        spoken: asyncio.Future[str] = loop.create_future()  # the language, as Whisper names it
        counts = {"frames": 0, "speech": 0, "ocr": 0, "chunks": 0, "windows": 0}
        found_spans: list[Span] = []
        before: list[Segment] = []  # the speech of the windows before the one being chunked

        def add(name: str, t: float) -> None:
            stages[name] = round(stages.get(name, 0.0) + time.perf_counter() - t, 3)

        def plan(found: list[Span]) -> None:
            said.extend(loop.create_future() for _ in found)
            seen.extend(loop.create_future() for _ in found)
            stored.extend(loop.create_future() for _ in found)
            windows.set_result(found)

        async def embed(call: Callable[..., Awaitable[Any]], texts: list[str]) -> np.ndarray:
            t = time.perf_counter()
            try:
                return await call(models.text.embed_passages, texts, await spoken) if texts \
                    else np.zeros((0, models.text.dim), np.float32)
            finally:
                add("embed", t)

        async def heard(k: int, segments: list[Segment]) -> None:
            """Window k's speech, bounded, chunked and embedded (chunks, which are searched, and
            units, what a hit is narrowed to) on the speech lane's thread."""
            assert info is not None
            speech = bound(segments, info.duration, settings.max_segments_per_minute, settings.max_segment_chars)
            if k == 0 and resume:  # the speech of the windows committed before: where the chunks are cut
                before.extend(s for s in await store.segments(video_id, -1.0, resume) if s.kind != Kind.OCR)
            chunks, spoken_units = window_chunks(before, speech, found_spans[k].since), units(speech)
            before.extend(speech)
            vectors = await embed(models.call, [c.text for c in chunks + spoken_units])
            said[k].set_result(Said(speech, chunks, vectors[:len(chunks)], spoken_units, vectors[len(chunks):]))

        async def transcribe(wav: Path | None, cues: list[Segment] | None) -> None:
            assert info is not None
            found = await asyncio.to_thread(spans, wav, info.duration, resume)
            found_spans.extend(found)
            plan(found)
            if wav is None:
                spoken.set_result("")
                for k, w in enumerate(found):
                    last = k == len(found) - 1
                    await heard(k, [c for c in cues or () if w.since <= c.start and (last or c.start < w.until)])
                return
            await report(Stage.TRANSCRIBE, 0.0, title)
            t = time.perf_counter()
            language = await models.call(lambda: models.transcriber.detect(wav, title))  # the title: a second witness
            spoken.set_result(language)
            speaking = models.transcriber.speaking(language)
            add("transcribe", t)
            whole = len(found) == 1 and found[0].samples is not None and found[0].samples[0] == 0
            for k, w in enumerate(found):
                if k:
                    # One window at a time past the last commit: a killed ingest transcribes at most
                    # one window again. The lanes embed their own text, so what waits here is the
                    # window's store (a few Milvus and SQL calls) and the screen lane, if behind.
                    await stored[k - 1]
                t = time.perf_counter()
                a, b = w.samples or (0, 0)
                segments = await (models.call(speaking.transcribe, wav) if whole
                                  else models.call(audio.transcribe_span, speaking, wav, workdir, a, b))
                add("transcribe", t)
                await heard(k, segments)

        async def screen(frames: list[Frame]) -> None:
            assert info is not None
            found = await windows
            if settings.ocr:
                await report(Stage.OCR, 0.0, title)
            previous: tuple[Frame, str] | None = None  # a window's last frame: the next one's first is compared with it
            for k, w in enumerate(found):
                last = k == len(found) - 1
                mine = [f for f in frames if w.since <= f.time and (last or f.time < w.until)]
                ocr_segments: list[Segment] = []
                ocr_text: dict[float, str] = {}
                if settings.ocr and mine:
                    t = time.perf_counter()
                    ocr_segments, ocr_text = await models.call_screen(read_frames, models.ocr, mine,
                                                                      min(w.until, info.duration), previous)
                    previous = (mine[-1], ocr_text[mine[-1].time])
                    add("ocr", t)
                ocr_segments = bound(ocr_segments, info.duration, settings.max_frames_per_minute,
                                     OCR_CHARS_PER_SEGMENT * settings.max_segment_chars)
                t = time.perf_counter()
                image_vectors = await _embed_frames(models, mine)
                add("clip", t)
                # an on-screen text span is its own chunk and its own unit: one vector serves both
                ocr_vectors = await embed(models.call_screen, [c.text for c in ocr_segments])
                seen[k].set_result(Screen(mine, ocr_segments, ocr_text, image_vectors, ocr_vectors))

        async def commit() -> None:
            """Each window, once both lanes are past it: one fenced write."""
            assert info is not None
            work = [lanes["speech"], lanes["screen"]]
            found = await ready(windows, work)
            for k, w in enumerate(found):
                said_k: Said = await ready(said[k], work)
                shown: Screen = await ready(seen[k], work)
                t = time.perf_counter()
                ocr = shown.segments
                await store.put_window(video_id, w.since, w.until, said_k.chunks + ocr,
                                       np.concatenate([said_k.chunk_vectors, shown.ocr_vectors]), said_k.speech + ocr,
                                       said_k.units + ocr, np.concatenate([said_k.unit_vectors, shown.ocr_vectors]),
                                       shown.frames, shown.text, shown.vectors, spoken.result())
                add("store", t)
                for name, n in (("frames", len(shown.frames)), ("speech", len(said_k.speech)), ("ocr", len(ocr)),
                                ("chunks", len(said_k.chunks) + len(ocr)), ("windows", 1)):
                    counts[name] += n
                stored[k].set_result(None)
                await report(Stage.EMBED, min(1.0, w.until / max(info.duration, 1e-9)), title,
                             indexed_to=w.until, duration=info.duration)

        def start_commits() -> None:
            if "speech" in lanes and "screen" in lanes and "commit" not in lanes:
                lanes["commit"] = asyncio.ensure_future(commit())

        async def on_event(event: dict[str, Any]) -> None:
            nonlocal info, title, url, lane_started, media_file
            kind = event["event"]
            if kind == "fetched":
                got = fetched(workdir, event)
                title, url, media_file = got.title, got.url, got.path
                proxy.finish()
                lap("fetch")
            elif kind == "stage":
                if event.get("stage") == "probe":
                    if "fetch" not in stages:  # a local file: the child's start is the fetch
                        lap("fetch")
                    await report(Stage.PROBE, 0.0, "")
            elif kind == "probed":
                info = results.probed(event, settings)
                check_limits(info, settings)
                title = clean_title(title if url else info.title, settings.max_title_chars)
                await store.update_video(video_id, title=title, duration=info.duration, url=url)
                jail.deadline_in(settings.ingest_seconds_base + settings.ingest_seconds_per_minute * info.duration / 60)
                if "fetch" not in stages:
                    lap("fetch")
                lap("probe")
                lane_started = time.perf_counter()
                await report(Stage.FRAMES, 0.0, title, duration=info.duration)
            elif info is None:
                raise BadSource(results.UNREADABLE)  # nothing comes before the probe
            elif kind == "subtitles" and "speech" not in lanes:
                cues = await asyncio.to_thread(results.subtitles, workdir, event.get("path"), info.duration, settings)
                lanes["speech"] = asyncio.ensure_future(transcribe(None, cues))
                start_commits()
            elif kind == "audio" and "speech" not in lanes:
                wav = await asyncio.to_thread(results.audio, workdir, event.get("path"), info.duration)
                stages["audio"] = round(time.perf_counter() - lane_started, 3)
                lanes["speech"] = asyncio.ensure_future(transcribe(wav, None))
                start_commits()
            elif kind == "frames" and "screen" not in lanes:
                frames = await asyncio.to_thread(results.frames, event, workdir, info.duration, settings)
                stages["frames"] = round(time.perf_counter() - lane_started, 3)
                if not frames:
                    raise BadSource("I couldn't decode any frame of that video; it may be corrupt.")
                lanes["screen"] = asyncio.ensure_future(screen([f for f in frames if f.time >= resume]))
                start_commits()

        limits = Limits.from_settings(settings)
        async with Jail(workdir, limits, readable=readable,
                        deadline=settings.download_timeout_seconds + limits.cpu) as jail, \
                way_out(guard, workdir, max_bytes, None if local else pace, jail) as proxy:
            task = {"steps": ["fetch", "probe", "decode"], "source": src, "local": local, "proxy": SOCKET,
                    "max_bytes": max_bytes, "settings": child_settings(settings)}
            try:
                await jail.run(task, on_event)
            except BadSource as e:
                raise (refusal(proxy) or e) from e
            if proxy.stopped:
                raise BadSource(proxy.stopped)
        log.info("jailed ingest of %s: %s", video_id, jail.outcome)
        if info is None or "screen" not in lanes:
            raise BadSource(results.UNREADABLE)
        if "speech" not in lanes:
            lanes["speech"] = asyncio.ensure_future(transcribe(None, []))
            start_commits()
        await lanes["commit"]
        lap("lanes")
        if not counts["speech"] and not counts["ocr"] and \
                (resume == 0 or not await store.segments(video_id, -1.0, info.duration + 1e6, limit=1)):
            raise BadSource("I found no speech and no readable text in that video, so there is "
                            "nothing I could answer questions from.")
        if resume:
            counts["resumed_at"] = int(resume)
        kept = await asyncio.to_thread(set_aside, media_file, workdir, bool(readable)) \
            if media_file is not None and settings.media_keep_gb > 0 else None
        return IngestResult(title, info.duration, url, spoken.result() if spoken.done() else "", stages, counts,
                            str(kept or ""), info.format)
    finally:
        for t in lanes.values():
            t.cancel()
        if lanes:
            await asyncio.gather(*lanes.values(), return_exceptions=True)
        shutil.rmtree(download, ignore_errors=True)
        for name in ("audio.wav", "subtitles.json", SOCKET):
            (workdir / name).unlink(missing_ok=True)


# On-screen text of one slide may run longer than a spoken segment: its cap is this many times
# MAX_SEGMENT_CHARS.
OCR_CHARS_PER_SEGMENT = 4


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

"""What the jailed child announced, checked before anything reaches the models, the catalog or
Milvus. The child read hostile bytes and may have been bent by them, so nothing it says is
believed: numbers must be finite and inside the video's limits, files must be regular files
inside the job folder with the names the child gives them, frames JPEGs of bounded pixels (read
from their header before anything decodes them), the sound track a 16 kHz mono 16-bit WAV no
longer than the video, and subtitle segments are bounded again (core/ingest/subtitles.py)."""

from __future__ import annotations

import json
import math
import re
import wave
from pathlib import Path
from typing import Any

from PIL import Image

from core.config import Settings
from core.errors import BadSource
from core.ingest import media
from core.ingest.fetch import inside
from core.ingest.subtitles import bound
from core.models import Frame, Kind, Segment

FRAME_WIDTH = 640  # what frames.extract_frames scales to
FRAME_BYTES = 4 * 2**20
_FRAME_NAME = re.compile(r"frames/(k\d{6}|s\d{9})\.jpg")
SUBTITLE_JSON_BYTES = 64 * 2**20

UNREADABLE = "I couldn't read what that video turned into."


def _number(v: object, low: float, high: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not low <= v <= high:
        raise BadSource(UNREADABLE)
    return float(v)


def probed(event: dict[str, Any], settings: Settings) -> media.MediaInfo:
    fmt = event.get("format")
    if fmt not in media.CONTAINERS or not isinstance(event.get("has_audio"), bool):
        raise BadSource(UNREADABLE)
    side = settings.max_video_side
    return media.MediaInfo(
        duration=_number(event.get("duration"), 0.001, settings.max_video_minutes * 60 + 1),
        width=int(_number(event.get("width"), 1, side)), height=int(_number(event.get("height"), 1, side)),
        has_audio=bool(event["has_audio"]), title=str(event.get("title") or "")[:4096], format=str(fmt))


def frames(event: dict[str, Any], work: Path, duration: float, settings: Settings) -> list[Frame]:
    """The frames the child cut: at most `max_frames_per_minute` of the video's minutes, each a
    JPEG at most 640 px wide and `max_video_side` high, at a time inside the video."""
    items = event.get("frames")
    cap = int(settings.max_frames_per_minute * max(duration, 1.0) / 60.0 + 0.999) + 1
    if not isinstance(items, list) or len(items) > cap:
        raise BadSource(UNREADABLE)
    out: dict[float, Frame] = {}
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)
                and _FRAME_NAME.fullmatch(item[1])):
            raise BadSource(UNREADABLE)
        t = min(max(_number(item[0], -1.0, duration + 1.0), 0.0), duration)  # pts may sit a little outside
        path = inside(work, item[1])
        if path.stat().st_size > FRAME_BYTES or not _small_jpeg(path, settings.max_video_side):
            raise BadSource(UNREADABLE)
        out[t] = Frame(time=t, path=str(path))
    return sorted(out.values(), key=lambda f: f.time)


def _small_jpeg(path: Path, max_height: int) -> bool:
    try:
        with Image.open(path) as im:  # reads the header only
            w, h = im.size
            return im.format == "JPEG" and 0 < w <= FRAME_WIDTH and 0 < h <= max_height
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def subtitles(work: Path, rel: object, duration: float, settings: Settings) -> list[Segment]:
    path = inside(work, rel)
    if path.stat().st_size > SUBTITLE_JSON_BYTES:
        raise BadSource(UNREADABLE)
    try:
        rows = json.loads(path.read_bytes())
    except ValueError as e:
        raise BadSource(UNREADABLE) from e
    if not isinstance(rows, list):
        raise BadSource(UNREADABLE)
    segs = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[2], str)):
            raise BadSource(UNREADABLE)
        start, end = _number(row[0], -1e9, 1e9), _number(row[1], -1e9, 1e9)
        segs.append(Segment(start, end, row[2], Kind.SUBTITLE))
    return bound(segs, duration, settings.max_segments_per_minute, settings.max_segment_chars)


AUDIO_OVERRUN, AUDIO_OVERRUN_S = 0.02, 2.0  # how much longer than the video its decoded sound may run


def audio(work: Path, rel: object, duration: float) -> Path | None:
    """The child's sound track, if it is the WAV media.extract_audio writes and no longer than
    the video by more than 2 % and 2 s; None when the video has none. Decoded audio outruns the
    container's timeline where packets' times overlap (joined narration, a stream-copied loop):
    by 0.3 % in our own rendered lectures, 17.5 s in the bench's 90-minute loop, which a bound
    of 2 s alone refused as unreadable."""
    if rel == "":
        return None
    path = inside(work, rel)
    try:
        with wave.open(str(path), "rb") as w:
            shape = (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype())
            frames = w.getnframes()
    except (wave.Error, EOFError, OSError) as e:
        raise BadSource(UNREADABLE) from e
    if shape != (16000, 1, 2, "NONE") or frames > (duration * (1 + AUDIO_OVERRUN) + AUDIO_OVERRUN_S) * 16000 \
            or path.stat().st_size > frames * 2 + 4096:
        raise BadSource(UNREADABLE)
    return path

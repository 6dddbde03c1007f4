"""A video's timed frames, cut with ffmpeg: every keyframe, a seek after each change the packets
show without one, and a seek at each interval where the picture moved; thinned to a rate.

Every ffmpeg and ffprobe here opens its input through `core.ingest.media.input_args` and runs
through `media.run`, so the bounds that module's docstring gives hold for them too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadSource
from core.ingest.media import input_args, run
from core.models import Frame

log = logging.getLogger(__name__)

_SHOWINFO = re.compile(r"n:\s*(\d+).*?pts_time:\s*([0-9.]+)")


async def keyframes(path: Path, out_dir: Path, width: int = 640, *, fmt: str = "",
                    limit: float | None = None, min_gap: float = 0.0, max_frames: int | None = None) -> list[Frame]:
    """Every keyframe of the video, decoded alone (`-skip_frame nokey`), as JPEGs ≤ `width` px wide.

    Encoders place keyframes at scene cuts (x264's scenecut) and at a fixed maximum spacing, so a
    slide change is a keyframe: this gives the scene-aware frames without decoding the frames in
    between (0.5 s instead of 8 s for 10 minutes of 720p here).

    Counted as they come: a keyframe less than `min_gap` after the last one kept is skipped, and
    no more than `max_frames` are written, so a video whose every frame is a keyframe costs a
    bounded number of JPEGs (it wrote 6,000 for one minute), not one per frame.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    chain = f"scale='min({width},iw)':-2,showinfo"
    if min_gap > 0:
        chain = f"select='isnan(prev_selected_t)+gte(t-prev_selected_t,{min_gap:.3f})',{chain}"
    cap = ["-frames:v", str(max_frames)] if max_frames is not None else []
    code, _, err = await run(
        "ffmpeg", "-v", "info", "-nostdin", "-y", "-skip_frame", "nokey", *input_args(path, fmt, limit),
        "-map", "0:V:0", "-an", "-sn", "-dn", "-vf", chain, "-fps_mode", "passthrough", *cap,
        "-q:v", "4", str(out_dir / "k%06d.jpg"))
    if code != 0:
        raise BadSource("I couldn't decode the frames of that video; it may be corrupt.")
    times = [float(m.group(2)) for m in _SHOWINFO.finditer(err.decode(errors="replace"))
             if "pts_time" in m.group(0)]
    files = sorted(out_dir.glob("k*.jpg"))
    return [Frame(time=t, path=str(f)) for t, f in zip(times, files, strict=False)]


# Pixels of one frame up to which `frames_at` decodes its full batch of inputs at once (1080p);
# a larger frame decodes proportionally fewer (a 4000×4000 video made ffmpeg peak at gigabytes with
# a full batch: docs/benchmarks.md, "Design figures").
_BATCH_PIXELS = 1920 * 1080


async def frames_at(path: Path, times: list[float], out_dir: Path, width: int = 640,
                    batch: int = 16, *, fmt: str = "", pixels: int = 0) -> list[Frame]:
    """Frames at the given times by seeking: each is decoded from the keyframe before it, never
    from the start. Several seeks share one ffmpeg process (one input each), since a process per
    seek costs more in start-up than in decoding (126 seeks: 16 s here); fewer when frames of
    `pixels` are larger than 1080p, since every input holds its own decoded frames."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if pixels > _BATCH_PIXELS:
        batch = max(1, batch * _BATCH_PIXELS // pixels)
    frames: list[Frame] = []
    for b in range(0, len(times), batch):
        chunk = times[b:b + batch]
        args = ["ffmpeg", "-v", "error", "-nostdin", "-y"]
        for t in chunk:
            args += ["-ss", f"{t:.3f}", *input_args(path, fmt, 1.0)]
        outs = []
        for i, t in enumerate(chunk):
            out = out_dir / f"s{int(round(t * 1000)):09d}.jpg"
            args += ["-map", f"{i}:V:0", "-frames:v", "1", "-vf", f"scale='min({width},iw)':-2",
                     "-q:v", "4", str(out)]
            outs.append((t, out))
        code, _, err = await run(*args)
        if code != 0:
            log.warning("seeking frames failed: %s", err.decode(errors="replace")[-300:])
        frames += [Frame(time=t, path=str(o)) for t, o in outs if o.is_file()]
    return frames


def sample(frames: list[Frame], duration: float, max_per_minute: int) -> list[Frame]:
    """Thin keyframes to at most `max_per_minute`, keeping scene cuts first and then even coverage."""
    frames = sorted(frames, key=lambda f: f.time)
    cap = max(1, int(max_per_minute * max(duration, 1.0) / 60.0 + 0.999))
    if len(frames) <= cap:
        return frames
    min_gap = 60.0 / max_per_minute
    kept: list[Frame] = []
    for f in frames:
        if not kept or f.time - kept[-1].time >= min_gap:
            kept.append(f)
    return kept[:cap]


@dataclass(frozen=True)
class Packet:
    time: float
    size: int
    key: bool


async def packets(path: Path, *, fmt: str = "", limit: float | None = None) -> list[Packet]:
    """The video stream's packets (time, bytes, keyframe?) in the first `limit` seconds, read by
    demuxing alone: 0.2 s for 10 minutes of 720p. Empty when ffprobe cannot list them."""
    interval = ["-read_intervals", f"%+{limit:.3f}"] if limit is not None else []
    code, out, _ = await run("ffprobe", "-v", "error", "-select_streams", "V:0", "-show_entries",
                             "packet=pts_time,size,flags", "-of", "csv=p=0", *interval,
                             *input_args(path, fmt), timeout=300)
    result = []
    for line in out.decode(errors="replace").splitlines() if code == 0 else []:
        parts = line.split(",")
        try:
            result.append(Packet(float(parts[0]), int(parts[1]), "K" in parts[2]))
        except (ValueError, IndexError):
            continue
    return sorted(result, key=lambda p: p.time)


def motion_threshold(pkts: list[Packet]) -> int:
    """Bytes above which a non-key packet means the picture changed. A still slide's predicted
    frames are tiny (under 600 bytes on a 720p lecture whose keyframes are ~11 KB); a new line
    of text or any motion costs kilobytes."""
    keys = sorted(p.size for p in pkts if p.key)
    return max(1024, keys[len(keys) // 2] // 20) if keys else 1024


def moving_between(pkts: list[Packet], start: float, end: float, threshold: int) -> bool:
    return any(start < p.time <= end and not p.key and p.size > threshold for p in pkts)


def change_points(pkts: list[Packet], threshold: int, settle: float = 1.0) -> list[float]:
    """Times just after the picture changed without a keyframe (a slide switched mid-GOP): the end
    of each burst of large predicted frames, plus a moment for it to settle."""
    points: list[float] = []
    last = -1e9
    for p in pkts:
        if p.key or p.size <= threshold:
            continue
        if points and p.time - last <= settle:
            points[-1] = p.time + 0.1
        else:
            points.append(p.time + 0.1)
        last = p.time
    return points


# Keyframes closer than this are near-duplicates, and one is skipped as ffmpeg writes them. Kept
# short: an encoder's scene cut can land a few frames after a periodic keyframe (0.16 s apart in
# the shared evaluation's photosynthesis lecture), and the later one is the new slide.
KEYFRAME_MIN_GAP = 0.1


async def extract_frames(path: Path, out_dir: Path, duration: float, interval: float,
                         max_per_minute: int, *, fmt: str = "", pixels: int = 0) -> list[Frame]:
    """Timed frames: every keyframe (encoders put one at each scene cut), a seek just after each
    change that came without a keyframe, and a seek at each multiple of `interval` that no
    frame lies near — unless the packets show the picture has not moved since the last
    keyframe (a still slide: the keyframe already shows it). Thinned to `max_per_minute`.

    On the 10-minute lecture this drops every one of ~100 seeks (each decodes up to a GOP).

    Nothing past `duration` is read (probe's length, checked against the limit), keyframes come
    no closer than `KEYFRAME_MIN_GAP`, and at most four times as many as are kept (seeks at the
    interval cover what a video made of keyframes leaves past the cap)."""
    limit = duration + 1.0
    cap = 4 * max(1, int(max_per_minute * max(duration, 1.0) / 60.0 + 0.999)) + 16
    pkts, frames = await asyncio.gather(
        packets(path, fmt=fmt, limit=limit),
        keyframes(path, out_dir, fmt=fmt, limit=limit, min_gap=KEYFRAME_MIN_GAP, max_frames=cap))
    threshold = motion_threshold(pkts)
    key_times = sorted(p.time for p in pkts if p.key) or [f.time for f in frames]
    near = [f.time for f in frames]
    targets = [c for c in change_points(pkts, threshold) if c < duration - 0.2
               and all(abs(c - t) > 0.5 for t in near)]
    for t in (i * interval for i in range(int(duration // interval) + 1)):
        if t >= duration - 0.2 or any(abs(t - x) <= interval / 2 for x in near + targets):
            continue
        since = max((k for k in key_times if k <= t), default=0.0)
        if not pkts or moving_between(pkts, since, t, threshold):
            targets.append(t)
    if targets:
        frames += await frames_at(path, sorted(targets), out_dir, fmt=fmt, pixels=pixels)
    if not frames:
        raise BadSource("I couldn't decode any frame of that video; it may be corrupt.")
    kept = sample(frames, duration, max_per_minute)
    for f in set(frames) - set(kept):
        Path(f.path).unlink(missing_ok=True)
    return sorted(kept, key=lambda f: f.time)

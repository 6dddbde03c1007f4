"""How the jailed child cuts a clip (core/ingest/child.py's `clip`, for a task whose steps are
["clip"]): cut `length` seconds from `start` of a kept video file into an MP4 that plays inline on
Discord and Slack (H.264 High, yuv420p, AAC stereo, `+faststart`), no larger than `max_bytes`.

The kept file is the posted file, hostile bytes, read exactly as an ingest reads it: probed first
(the same limits on length and pixels), opened through `media.input_args` (single-file container
demuxers, the file protocol, the probed format forced, pixels capped), under the ingest's memory,
CPU and file limits. The output is probed here too (ffprobe, in the jail) and announced:

    {"event": "clip", "path": "clip.mp4", "bytes": …, "duration": …, "video": "h264", "audio": "aac",
     "width": …, "height": …}

which the parent checks again before anything is posted (core/ingest/cut.py).

Fitting the size: the bit rate the limit allows over the clip's length (less a tenth for the
container and the rate control's overshoot) caps the encoder (`-maxrate`, quality `-crf 23`
below it); a low cap also lowers the picture's height, since a few hundred kbit/s look better at
360p than smeared at 720p. If the file still comes out too large, it is cut again at 0.6× the rate.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from core.errors import BadSource
from core.ingest import media

log = logging.getLogger(__name__)

OUT = "clip.mp4"
# A clip plays in a chat's inline player: 480 lines keep a slide's text legible there, and cost
# less CPU than 720 to scale and encode (docs/benchmarks.md, "Design figures")
MAX_HEIGHT = 480
# (video kbit/s at least, the height that rate is given)
LADDER = ((800, 480), (400, 360), (200, 240), (0, 180))
MIN_VIDEO_KBPS = 30
TRIES = 3
TOO_SMALL = ("A clip of {s:.0f} s can't be made under {mb:.1f} MB; ask for a shorter moment "
             "(or raise MAX_CLIP_MB).")


def plan(max_bytes: int, length: float, source_height: int, scale: float = 1.0) -> tuple[int, int, int]:
    """(height, video kbit/s cap, audio kbit/s) for a clip of `length` seconds within `max_bytes`."""
    total = max_bytes * 8 / 1000 / max(length, 0.1) * 0.9 * scale
    audio = 96 if total >= 1200 else 64 if total >= 300 else 32
    video = int(total - audio)
    if video < MIN_VIDEO_KBPS:
        raise BadSource(TOO_SMALL.format(s=length, mb=max_bytes / 2**20))
    height = next(h for floor, h in LADDER if video >= floor)
    height = min(height, MAX_HEIGHT, max(source_height, 2))
    return height - height % 2, min(video, 8000), audio


def encode_args(path: Path, fmt: str, start: float, length: float, has_audio: bool, height: int,
                video_kbps: int, audio_kbps: int, out: Path) -> list[str]:
    args = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", f"{start:.3f}", *media.input_args(path, fmt, length)]
    if not has_audio:  # a silent track: the clip is always H.264 + AAC, as both platforms play inline
        args += ["-f", "lavfi", "-t", f"{length:.3f}", "-i", "anullsrc=r=44100:cl=stereo"]
    return [*args, "-map", "0:V:0", "-map", "0:a:0" if has_audio else "1:a:0",
            "-vf", f"scale=-2:{height}:flags=bilinear,format=yuv420p", "-fpsmax", "30",
            "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-crf", "23",
            "-maxrate", f"{video_kbps}k", "-bufsize", f"{video_kbps}k",
            "-c:a", "aac", "-b:a", f"{audio_kbps}k", "-ac", "2",
            "-map_metadata", "-1", "-map_chapters", "-1", "-movflags", "+faststart",
            "-t", f"{length:.3f}", str(out)]


async def described(out: Path) -> dict[str, Any]:
    """What ffprobe finds in the clip: its codecs, length, picture size."""
    code, stdout, _ = await media.run("ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                                      "-show_streams", *media.input_args(out, "mov"), timeout=60)
    if code != 0:
        raise BadSource("I couldn't cut a playable clip from that video; it may be corrupt.")
    info = json.loads(stdout or b"{}")
    streams = info.get("streams", [])
    video: dict[str, Any] = next((s for s in streams if s.get("codec_type") == "video"), {})
    audio: dict[str, Any] = next((s for s in streams if s.get("codec_type") == "audio"), {})
    return {"duration": float(info.get("format", {}).get("duration") or 0), "video": str(video.get("codec_name")),
            "audio": str(audio.get("codec_name")), "width": int(video.get("width") or 0),
            "height": int(video.get("height") or 0), "streams": len(streams)}

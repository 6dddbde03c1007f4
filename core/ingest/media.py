"""ffprobe and ffmpeg: validate a file and cut its 16 kHz mono audio (its frames: `core.ingest.frames`).

Everything here runs ffmpeg as an asyncio subprocess, so the event loop is never blocked.

The bytes are hostile (a link or an upload anyone in a channel posted), and ffmpeg picks a
demuxer by content, not by name: a text file called `leak.mp4` holding an HLS playlist makes
ffmpeg open the local files it lists, and a concat list or an image sequence does the same. So
every call opens its one input through `input_args`: only the demuxers of single-file containers
(`CONTAINERS`; none of them opens another file or URL named inside the file — the mov demuxer's
external references stay off), only the `file` protocol, the format found at probe forced with
`-f`, and reading cut at the length limit with `-t`, whatever the header says.

And whatever the header says about sizes: every decoder ffprobe or ffmpeg opens refuses a picture
over `MAX_PIXELS` (`-max_pixels`, checked again at each parameter-set change: a 640×360 H.264
stream switching to 6000×6000 made one ffmpeg peak at ~6 GB), cover art included (ffprobe and
ffmpeg decode attached pictures to describe them: four 16000×16000 PNG covers cost ~3 GB per
process), and only the first video stream that is not an attached picture is ever decoded
(`V:0`). These run inside the jailed child (core/ingest/child.py), whose limits bound what is left;
a program killed by one of them is a `LimitHit`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from core.errors import NO_SPACE, BadSource, DiskFull
from core.ingest.stops import LimitHit

log = logging.getLogger(__name__)


# Demuxers of real single-file containers (and of plain audio files, refused later for having no
# picture, with that reason). Everything else — hls, dash, concat/ffconcat, image2 and other
# sequences, tee, lavfi, data, raw streams — is refused at probe however the bytes look.
CONTAINERS = ("mov", "matroska", "avi", "flv", "mpegts", "mpeg", "ogg", "asf", "wav", "mp3", "flac")
_LIST_MARKERS = (b"#EXTM3U", b"ffconcat", b"<?xml", b"<MPD", b"file ")
_LIST_DEMUXERS = {"hls", "dash", "concat", "ffconcat", "tee", "image2", "image2pipe", "mpl2", "lavfi"}
_REFUSED_DEMUXER = re.compile(rb"\[(\w+) @ [^\]]*\] Format not on whitelist")


MAX_PIXELS = 3840 * 2160  # of any picture a decoder opens; the jailed child sets MAX_VIDEO_PIXELS
MAX_STREAMS = 32  # a file with more streams is refused at probe (each one is opened to describe it)


@dataclass(frozen=True)
class MediaInfo:
    duration: float  # the longer of the header's and the last video packet's time
    width: int
    height: int
    has_audio: bool
    title: str
    format: str = ""  # the demuxer found at probe, forced with `-f` on every later call


def input_args(path: Path, fmt: str = "", limit: float | None = None) -> list[str]:
    """The options and `-i` of one hostile input: container demuxers and the file protocol only,
    `fmt` forced when known, and no more than `limit` seconds read (ffmpeg only; ffprobe has
    `-read_intervals` instead)."""
    args = ["-protocol_whitelist", "file", "-format_whitelist", ",".join(CONTAINERS), "-max_pixels", str(MAX_PIXELS)]
    if fmt:
        args += ["-f", fmt]
    if limit is not None:
        args += ["-t", f"{max(limit, 0.001):.3f}"]
    return [*args, "-i", f"file:{path.absolute()}"]


_LIMIT_SIGNALS = {signal.SIGKILL: "memory", signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file"}


async def run(*args: str, timeout: float = 3600) -> tuple[int, bytes, bytes]:  # noqa: ASYNC109
    """Run a program to its end; a limit of the jail that stopped it raises `LimitHit` (SIGKILL
    is the memory cgroup's OOM kill: the jail kills nothing else while the child lives)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    code = proc.returncode or 0
    if code < 0 and -code in _LIMIT_SIGNALS:
        raise LimitHit(_LIMIT_SIGNALS[signal.Signals(-code)])
    if code != 0 and b"Cannot allocate memory" in err[-4096:]:
        raise LimitHit("memory")
    if code and any(s.encode() in err for s in NO_SPACE):  # the disk's fault, not the video's
        raise DiskFull(args[-1].removeprefix("file:"))
    return code, out, err


PLAYLIST = ("That file is a playlist or a list of other files, not a video; I only read single "
            "video files (MP4, WebM, MKV, …).")


async def probe(path: Path, scan_seconds: float | None = None) -> MediaInfo:
    """Describe `path`, refusing what is not a readable single-file video with a message a user
    understands. The length is the header's, or the last video packet's when that is later
    (demuxed up to `scan_seconds`, so a header that says 10 s on 2 hours is found out cheaply)."""
    if not path.is_file():
        raise BadSource(f"I can't find the file `{path.name}`.")
    code, out, err = await run(
        "ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
        *input_args(path), timeout=60)
    if code != 0 and b"exceeds specified max pixel count" in err:
        raise BadSource(f"That video's resolution is larger than I read (at most {MAX_PIXELS / 1e6:.1f} "
                        "megapixels a frame, e.g. 4K).")
    if code != 0:
        log.info("ffprobe refused %s: %s", path, err.decode(errors="replace")[-300:])
        refused = _REFUSED_DEMUXER.search(err)
        if (refused and refused.group(1).decode() in _LIST_DEMUXERS) or await asyncio.to_thread(
                _starts_like_a_list, path):
            raise BadSource(PLAYLIST)
        raise BadSource("That file isn't a video I can read (it may be corrupt or another kind of file).")
    info = json.loads(out or b"{}")
    container = str(info.get("format", {}).get("format_name") or "").split(",")[0]
    if container not in CONTAINERS:  # the whitelist already holds ffmpeg to these; this keeps `-f` honest
        raise BadSource(PLAYLIST)
    streams = info.get("streams", [])
    if len(streams) > MAX_STREAMS:
        raise BadSource(f"That file holds {len(streams)} streams; I read files of at most {MAX_STREAMS}.")
    video = [s for s in streams if s.get("codec_type") == "video"
             and not s.get("disposition", {}).get("attached_pic")]
    if not video:
        raise BadSource("That file has no video stream, so there is nothing for me to watch.")
    fmt = info.get("format", {})
    duration = _float(fmt.get("duration")) or _float(video[0].get("duration"))
    if duration <= 0:
        raise BadSource("That video has no length I can read; it may be corrupt or still uploading.")
    tags = {k.lower(): v for k, v in (fmt.get("tags") or {}).items()}
    if scan_seconds is not None:
        duration = max(duration, await last_packet_time(path, container, scan_seconds))
    return MediaInfo(
        duration=duration,
        width=int(video[0].get("width") or 0),
        height=int(video[0].get("height") or 0),
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
        title=str(tags.get("title") or path.stem),
        format=container,
    )


def _starts_like_a_list(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(_LIST_MARKERS)


async def last_packet_time(path: Path, fmt: str, up_to: float) -> float:
    """The time of the last video packet within the first `up_to` seconds, by demuxing alone
    (0.1 s for an hour of a small video): the length the file really has, not the one it claims."""
    code, out, _ = await run("ffprobe", "-v", "error", "-select_streams", "V:0", "-show_entries",
                             "packet=pts_time", "-of", "csv=p=0", "-read_intervals", f"%+{up_to:.3f}",
                             *input_args(path, fmt), timeout=300)
    times = [_float(t) for t in out.decode(errors="replace").split()] if code == 0 else []
    return max(times, default=0.0)


async def extract_audio(path: Path, wav: Path, *, fmt: str = "", limit: float | None = None) -> Path:
    """16 kHz mono PCM, what every whisper backend wants; no more than `limit` seconds of it
    (a sound track longer than the video it came with is cut, never transcribed whole)."""
    code, _, err = await run(
        "ffmpeg", "-v", "error", "-nostdin", "-y", *input_args(path, fmt, limit), "-map", "0:a:0", "-vn", "-ac", "1", "-ar", "16000",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-c:a", "pcm_s16le", str(wav))  # a bare WAV: no title chunk
    if code != 0:
        log.warning("audio extraction failed: %s", err.decode(errors="replace")[-300:])
        raise BadSource("I couldn't read the sound track of that video; it may be corrupt.")
    return wav


def _float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0

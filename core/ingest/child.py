"""The work of the jailed child (started by core/ingest/jail.py, shut in by core/ingest/sandbox.py):
everything that reads the bytes a channel member chose.

fetch (yt-dlp, through the forwarder below to the bot's guarding proxy) → probe (ffprobe) →
limits → at once: the speech side (subtitles parsed and bounded, or the sound track as 16 kHz
mono WAV) and the frames (ffmpeg). Each result is announced as soon as it exists, so the bot
starts transcribing while the frames are still being cut:

    {"event": "stage", "stage": "probe"}
    {"event": "fetched", "path": "download/video.mp4", "title": …, "url": …, "subtitles": "download/video.en.vtt"}
    {"event": "probed", "duration": …, "width": …, "height": …, "has_audio": …, "title": …, "format": …}
    {"event": "subtitles", "path": "subtitles.json"}      (bounded segments, written here)
    {"event": "audio", "path": "audio.wav"}               ("" when there is no sound track)
    {"event": "frames", "frames": [[time, "frames/k000001.jpg"], …]}
    {"event": "expanded", "kind": "video" | "playlist", "title": …, "entries": [[url, title, nested], …], "total": n}
                                                          (the "expand" task: what a link holds, nothing downloaded)
    {"event": "done"}
    {"event": "error", "message": …, "limit": "memory" | "cpu" | "file" | "disk" | "", "internal": bool}

Paths are relative to the job folder. The parent believes none of it until it has checked it
(core/ingest/results.py).

A task whose steps are ["clip"] cuts a moment of a kept video file instead (`clip`; how, in
core/ingest/clip.py): it probes the file as above, then announces
`{"event": "clip", "path": "clip.mp4", …}`, which core/ingest/cut.py checks.

The forwarder: in the child's empty network namespace the only listening port is the one the
launcher opened; each connection to it is joined to the bot's proxy through the socket file in
the job folder. yt-dlp is told that port is its HTTP proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from core.errors import BadSource, disk_full
from core.ingest import clip as cutting
from core.ingest import media
from core.ingest.frames import extract_frames
from core.ingest.stops import LimitHit
from core.ingest.subtitles import bound, parse_subtitles

log = logging.getLogger("vidrag.jail")

SUBTITLE_BYTES = 16 * 2**20  # of a subtitle file read at most


class Events:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, **fields}, ensure_ascii=True) + "\n")
        self.out.flush()


async def forward(listener: socket.socket, unix_path: str) -> asyncio.Server:
    """Join every connection on `listener` to the proxy's socket file."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(unix_path)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    listener.setblocking(False)
    return await asyncio.start_server(serve, sock=listener)


def lower_cpu_limit(seconds: float) -> None:
    """This process and what it starts from now on get `seconds` more CPU time than this
    process has used (a limit can only go down)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    new = int(used.ru_utime + used.ru_stime + seconds) + 1
    if soft == resource.RLIM_INFINITY or new < soft:
        resource.setrlimit(resource.RLIMIT_CPU, (new, new + 5))


def check_limits(info: media.MediaInfo, s: dict[str, Any]) -> None:
    """Refuse a video longer than the limit (by its packets, not only its header) or larger in
    pixels than the limits: decoding memory grows with the frame (a 4000×4000 video made ffmpeg
    peak at 3 GB)."""
    if info.duration > s["max_video_minutes"] * 60:
        raise BadSource(f"That video is {info.duration / 60:.0f} minutes long; my limit is "
                        f"{s['max_video_minutes']:.0f} minutes.")
    if max(info.width, info.height) > s["max_video_side"] or info.width * info.height > s["max_video_pixels"]:
        raise BadSource(f"That video's resolution ({info.width}×{info.height}) is larger than I read "
                        f"(at most {s['max_video_side']} px a side and "
                        f"{s['max_video_pixels'] / 1e6:.1f} megapixels, e.g. 4K).")


async def work(task: dict[str, Any], emit: Events, proxy_url: str) -> None:
    s = task["settings"]
    job = Path(task["work"])
    source = task["source"]
    media.MAX_PIXELS = int(s["max_video_pixels"])
    if task["steps"] == ["expand"]:  # a playlist's entries, no video read (core/ingest/playlist.py)
        from core.ingest import ytdlp

        emit("stage", stage="expand")
        emit("expanded", **await asyncio.to_thread(ytdlp.expand, source, proxy_url, int(task["cap"]),
                                                    int(task["named"])))
        return
    if task["steps"] == ["clip"]:  # a clip of a kept file, not an ingest
        await clip(task, emit)
        return
    if task.get("local"):
        path, subtitles = Path(source), None
    else:
        from core.ingest import ytdlp

        emit("stage", stage="fetch")
        got = await asyncio.to_thread(ytdlp.download, source, job / "download", int(task["max_bytes"]),
                                      float(s["max_video_minutes"]) * 60, proxy_url)
        path, subtitles = got.path, got.subtitles
        emit("fetched", path=str(path.relative_to(job)), title=got.title[:4096], url=got.url[:4096],
             subtitles=str(subtitles.relative_to(job)) if subtitles else "")
    if "probe" not in task["steps"]:
        return
    emit("stage", stage="probe")
    limit = float(s["max_video_minutes"]) * 60
    info = await media.probe(path, scan_seconds=limit + 1)
    check_limits(info, s)
    emit("probed", duration=info.duration, width=info.width, height=info.height, has_audio=info.has_audio,
         title=info.title[:4096], format=info.format)
    lower_cpu_limit(s["seconds_base"] + s["seconds_per_minute"] * info.duration / 60)

    async def speech() -> None:
        if subtitles is not None:
            with subtitles.open("rb") as fh:
                text = fh.read(SUBTITLE_BYTES).decode("utf-8", errors="replace")
            segs = bound(parse_subtitles(text), info.duration, int(s["max_segments_per_minute"]),
                         int(s["max_segment_chars"]))
            (job / "subtitles.json").write_text(json.dumps([[g.start, g.end, g.text] for g in segs]))
            emit("subtitles", path="subtitles.json")
        elif info.has_audio:
            wav = await media.extract_audio(path, job / "audio.wav", fmt=info.format, limit=info.duration + 1.0)
            emit("audio", path=str(wav.relative_to(job)))
        else:
            emit("audio", path="")

    async def frames() -> None:
        got = await extract_frames(path, job / "frames", info.duration, float(s["frame_interval"]),
                                         int(s["max_frames_per_minute"]), fmt=info.format,
                                         pixels=info.width * info.height)
        emit("frames", frames=[[f.time, str(Path(f.path).relative_to(job))] for f in got])

    emit("stage", stage="frames")
    lanes = [asyncio.ensure_future(speech()), asyncio.ensure_future(frames())]
    try:
        await asyncio.gather(*lanes)
    finally:
        for t in lanes:
            t.cancel()


async def clip(task: dict[str, Any], emit: Events) -> None:
    """The clip task (core/ingest/clip.py): probe the kept file, cut, probe the clip, announce it."""
    s = task["settings"]
    job = Path(task["work"])
    path = Path(task["source"])
    start, length, max_bytes = float(task["start"]), float(task["length"]), int(task["max_bytes"])
    emit("stage", stage="probe")
    info = await media.probe(path, scan_seconds=float(s["max_video_minutes"]) * 60 + 1)
    check_limits(info, s)
    if start >= info.duration - 0.05:
        raise BadSource("That moment is past the end of the video.")
    length = min(length, info.duration - start)
    lower_cpu_limit(s["seconds_base"] + s["seconds_per_minute"] * length / 60)
    out = job / cutting.OUT
    scale = 1.0
    for _ in range(cutting.TRIES):
        height, video_kbps, audio_kbps = cutting.plan(max_bytes, length, info.height, scale)
        emit("stage", stage="clip")
        code, _, err = await media.run(*cutting.encode_args(path, info.format, start, length, info.has_audio,
                                                            height, video_kbps, audio_kbps, out), timeout=3600)
        if code != 0:
            log.warning("the clip failed: %s", err.decode(errors="replace")[-300:])
            raise BadSource("I couldn't cut a clip from that video; it may be corrupt.")
        size = out.stat().st_size
        if size <= max_bytes:
            emit("clip", path=cutting.OUT, bytes=size, **await cutting.described(out))
            return
        log.info("a %d-byte clip is over %d bytes: cut again at a lower rate", size, max_bytes)
        scale *= 0.6
    raise BadSource(cutting.TOO_SMALL.format(s=length, mb=max_bytes / 2**20))


async def _main(task: dict[str, Any], emit: Events, listener: socket.socket | None) -> int:
    server = await forward(listener, task["proxy"]) if listener is not None else None
    proxy_url = f"http://127.0.0.1:{listener.getsockname()[1]}" if listener is not None else ""
    try:
        await work(task, emit, proxy_url)
    except Exception as e:  # a full disk first, whatever it was wrapped in (ffmpeg's, yt-dlp's, Python's)
        if disk_full(e) is None:
            return _failed(e, emit)
        emit("error", message="", limit="disk", internal=False)
        return 2
    finally:
        if server is not None:
            server.close()
    emit("done")
    return 0


def _failed(e: Exception, emit: Events) -> int:
    """Tell the bot why the work stopped: a limit, the video's fault, or (exit 3) a bug."""
    if isinstance(e, LimitHit):
        emit("error", message=e.message, limit=e.kind, internal=False)
    elif isinstance(e, BadSource):
        emit("error", message=e.message, limit="", internal=False)
    elif isinstance(e, MemoryError):  # RLIMIT_AS, met in Python
        emit("error", message="", limit="memory", internal=False)
    else:
        traceback.print_exception(e, file=sys.stderr)
        emit("error", message="", limit="", internal=True)
        return 3
    return 2


def main(task: dict[str, Any], out: TextIO, listener: socket.socket | None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    return asyncio.run(_main(task, Events(out), listener))

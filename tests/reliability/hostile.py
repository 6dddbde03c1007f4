"""Hostile inputs, made in the test: manifests (DASH, HLS), subtitles (WebVTT, SRT, TTML), container
files whose headers lie, and the measuring probes that judge them (the bot process's RSS while a
case runs, the processes left behind). The named cases of issue 22 and the fuzzer's seeds
(tests/reliability/test_fuzz.py) both come from here; nothing is downloaded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# -- manifests ------------------------------------------------------------------------------------


def dash(media: str = "s$Number$.m4s", *, timescale: int = 1000, duration: int = 2000, seconds: float = 4.0,
         init: str = "", width: int = 640, height: int = 360) -> bytes:
    """A static DASH manifest of one video representation with a SegmentTemplate: `seconds` of
    segments `duration`/`timescale` long each."""
    init_attr = f' initialization="{init}"' if init else ""
    return (f'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
            f'mediaPresentationDuration="PT{seconds:g}S" minBufferTime="PT1S" '
            f'profiles="urn:mpeg:dash:profile:isoff-live:2011">\n<Period><AdaptationSet mimeType="video/mp4" '
            f'contentType="video"><Representation id="v" bandwidth="100000" width="{width}" height="{height}" '
            f'codecs="avc1.42c01e">\n<SegmentTemplate timescale="{timescale}" duration="{duration}" '
            f'media="{media}"{init_attr} startNumber="1"/>\n</Representation></AdaptationSet></Period></MPD>\n').encode()


DASH_BOMB = dash(timescale=10**9, duration=1, seconds=5)  # 5e9 fragments of one tick (issue 22, case 2)
DASH_MILLION = dash(timescale=1000, duration=1, seconds=1000)  # 1e6 fragments of 1 ms (case 3)


def hls(segments: list[tuple[float, str]], *, target: int = 10, extra: str = "") -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0"]
    if extra:
        lines.append(extra)
    for dur, uri in segments:
        lines += [f"#EXTINF:{dur:.3f},", uri]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


# -- subtitles ------------------------------------------------------------------------------------


def _clock(t: float, sep: str = ".") -> str:
    h, rest = divmod(t, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}".replace(".", sep)


def vtt(cues: list[tuple[float, float, str]]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_clock(a)} --> {_clock(b)}\n{text}\n\n" for a, b, text in cues)


def srt(cues: list[tuple[float, float, str]]) -> str:
    return "".join(f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n\n" for i, (a, b, text) in enumerate(cues, 1))


def ttml(cues: list[tuple[float, float, str]]) -> str:
    body = "".join(f'<p begin="{a:.3f}s" end="{b:.3f}s">{text}</p>' for a, b, text in cues)
    return (f'<?xml version="1.0" encoding="utf-8"?><tt xmlns="http://www.w3.org/ns/ttml" xml:lang="en">'
            f"<body><div>{body}</div></body></tt>")


def quadratic_vtt(digits: int = 40_000) -> str:
    """A line of digits: the old cue pattern's optional hour group backtracked over all of them
    from every start (issue 22, case 1: ~90 s for 100 KB)."""
    return "WEBVTT\n\n" + "1" * digits + "\n\n00:00:00.500 --> 00:00:03.000\nMagma rises.\n\n" + "9" * digits + "\n"


def many_cues_vtt(n: int = 20_000, span: float = 6.0) -> str:
    """`n` cues crammed into `span` seconds (case 5: 1.1 MB, 20,000 cues on a 6-s video)."""
    step = span / n
    return vtt([(i * step, i * step + step, f"cue number {i} says something new") for i in range(n)])


# -- containers -----------------------------------------------------------------------------------


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, capture_output=True)


def size_switch(dst: Path, lecture: Path, tmp: Path, big: int = 6000, offset: float = 20.0) -> Path:
    """`lecture` (640×360 H.264 with its sound) as MPEG-TS, followed byte for byte by one second of
    `big`×`big` H.264 on the same stream at `offset` s (case 4): the stream's parameter sets
    switch size mid-file, and a probe sees 640×360."""
    small_ts, big_ts = tmp / "small.ts", tmp / "big.ts"
    ffmpeg("-i", str(lecture), "-c", "copy", "-f", "mpegts", str(small_ts))
    ffmpeg("-f", "lavfi", "-i", f"color=c=gray:s={big}x{big}:r=25:d=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-x264-params", "level=6.2", "-output_ts_offset", f"{offset:g}", "-f", "mpegts",
           str(big_ts))
    dst.write_bytes(small_ts.read_bytes() + big_ts.read_bytes())
    return dst


def second_stream(dst: Path, lecture: Path, side: int = 8000) -> Path:
    """`lecture` with a second video stream of `side`×`side` grey (case 4): only the first is read."""
    ffmpeg("-i", str(lecture), "-f", "lavfi", "-i", f"color=c=gray:s={side}x{side}:r=1:d=2",
           "-map", "0:v:0", "-map", "0:a:0", "-map", "1:v:0", "-c:v:0", "copy", "-c:a", "copy",
           "-c:v:1", "mjpeg", "-q:v:1", "31", "-shortest", str(dst))
    return dst


def big_png(dst: Path, side: int) -> Path:
    """A white RGBA PNG of `side`×`side` (4 bytes a pixel once decoded), a few hundred KB on disk,
    written row by row."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(1)
    row = b"\0" + b"\xff" * (4 * side)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    dst.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
                    + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return dst


def with_covers(dst: Path, lecture: Path, tmp: Path, side: int = 12000, n: int = 4) -> Path:
    """`lecture` with `n` attached pictures of `side`×`side` (case 9)."""
    png = big_png(tmp / "cover.png", side)
    args = ["-i", str(lecture)]
    for _ in range(n):
        args += ["-i", str(png)]
    args += ["-map", "0:v:0", "-map", "0:a:0"]
    for i in range(n):
        args += ["-map", f"{i + 1}:v:0"]
    args += ["-c", "copy"]
    for i in range(n):
        args += [f"-disposition:v:{i + 1}", "attached_pic"]
    ffmpeg(*args, str(dst))
    return dst


# -- probes ---------------------------------------------------------------------------------------


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# The bot process's peak RSS while `warm_models` indexed its lectures (MB): what a legit video
# costs the bot at its worst (one batch of the text embedder, ~300 MB above rest for 32 chunks of
# 256 tokens, allocated and freed each time).
WARM_PEAK_MB = 0.0


@dataclass
class RssGrowth:
    """`with RssGrowth() as g:` samples this process's RSS every 20 ms; `g.growth` is the most
    it rose above where it started, or above `WARM_PEAK_MB` when that is higher (MB): what an
    input cost the bot beyond what a legit lecture does."""

    start: float = 0.0
    peak: float = 0.0
    tree_peak: float = 0.0  # the most this process's descendants held at once (Milvus Lite's server left out)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssGrowth:
        self.start = self.peak = rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())
            self.tree_peak = max(self.tree_peak, descendants_rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # the sampler ends within 20 ms; not joined, so the loop never waits on it
        self.peak = max(self.peak, rss_mb())

    @property
    def growth(self) -> float:
        return max(0.0, self.peak - max(self.start, WARM_PEAK_MB))


def descendants_rss_mb(exclude: tuple[bytes, ...] = (b"milvus",)) -> float:
    """The RSS of every descendant of this process (an ingest's programs, jailed or not), in MB."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0.0, list(children.get(os.getpid(), []))
    # A child between fork and exec is still this process's image, its RSS all pages shared with
    # ours (~2 GB with the models): not an ingest's memory. It reads as our own command line.
    ours = Path("/proc/self/cmdline").read_bytes()
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if cmdline == ours or any(x in cmdline for x in exclude):
                continue
            total += rss_mb(pid)
        except OSError:
            continue
        todo += children.get(pid, [])
    return total


def processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is inside `folder`: a jailed child runs in its job folder,
    and so does every program it starts, so none may be left there once a job has ended."""
    root = str(folder.resolve())
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{d}/cwd")
            state = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + "/")):
            out.append(int(d))
    return out


def wait_until(check, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


# -- a warm bot -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def warm_models(models, short_lectures, tmp_path_factory: pytest.TempPathFactory):
    """The session's models after the ingest of a lecture (speech, OCR, frame vectors) and of two
    pages whose captions are at the bound (60 cues a minute): what a running bot holds and the
    most a legit video makes it hold (`WARM_PEAK_MB`), so that a case's RSS growth is the case's,
    not a model's first use (+100-160 MB here) or a text batch any dense lecture costs."""
    from core.config import Settings
    from core.models import Scope
    from core.service import Service
    from tests.fakes.media_server import FakeMediaServer, page_with_captions

    async def warm() -> None:
        # Dense captions at the bound (MAX_SEGMENTS_PER_MINUTE), in words and in numbers: chunks of
        # ~1,500 characters, as many tokens as either text model reads (the largest batch a text
        # embedder is given).
        words = [(i * 0.1, i * 0.1 + 0.1, f"the dough rises when yeast feeds, line {i}") for i in range(60)]
        numbers = [(i * 0.1, i * 0.1 + 0.1, " ".join(str(i * k % 9973) for k in range(1, 12))) for i in range(60)]
        server = FakeMediaServer({"lecture.mp4": short_lectures["bread"], "w.vtt": vtt(words).encode(),
                                  "n.vtt": vtt(numbers).encode(),
                                  "words.html": page_with_captions("lecture.mp4", "w.vtt", "Bread"),
                                  "numbers.html": page_with_captions("lecture.mp4", "n.vtt", "Bread")})
        await server.start()
        settings = Settings(data_dir=tmp_path_factory.mktemp("warm") / "data", clip_pretrained="random",
                            allow_hosts=("127.0.0.1",))
        try:
            async with Service.open(settings, models=models, chat=None) as svc:
                svc.start_workers(1)
                for name in ("lecture.mp4", "words.html", "numbers.html"):
                    source = f"{server.base}/{name}"
                    await svc.wait((await svc.submit(Scope("console", "local", "warm"), source)).job.id)
                await svc.ask(Scope("console", "local", "warm"), "What does yeast feed on?")
            from core.ingest.ytdlp import is_video_link

            await asyncio.to_thread(is_video_link, "https://example.org/warm")  # yt-dlp's ~1,800 patterns compile
        finally:
            await server.stop()

    global WARM_PEAK_MB
    with RssGrowth() as rss:
        asyncio.run(warm())
    WARM_PEAK_MB = rss.peak
    return models

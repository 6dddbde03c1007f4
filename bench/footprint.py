"""What one process costs: peak RSS of a process that answers questions (`chat_rss_mb`), of a
worker indexing the lecture (`worker_rss_mb`) and a 90-minute video (`long_video_rss_mb`, the
lecture looped with ffmpeg), and the wall time of a cold `vidrag ask --json`, process start to
exit (`cold_ask_s`, median of 5; `cold_ask_st_s` with TEXT_EMBEDDER=st:<bundled MiniLM>, the
sentence-transformers path on torch).

Each figure comes from a fresh child process (`python -m bench.footprint chat|ingest …`) on the
defaults, reporting its own ru_maxrss: the parent's models and caches never count. Run alone with
`python -m bench.run --only footprint`.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.lecture import ROOT
from core.config import Settings
from core.models import Scope

SCOPE = Scope("console", "local", "bench")  # the console's scope for channel "bench"
QUESTION = "Who was the first consul of the Roman Republic?"


def child_env(data: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "MILVUS_URI", "TEXT_EMBEDDER")
            and not k.startswith("CLIP_")}
    return {**keep, "DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "LOG_LEVEL": "WARNING", **extra}


def run_child(*args: str, data: Path, timeout: float = 3600, **extra: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.footprint", *args], env=child_env(data, **extra),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise SystemExit(f"bench.footprint {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def loop_video(video: Path, dst: Path, seconds: float = 5340.0) -> Path:
    """The lecture repeated to `seconds` (under MAX_VIDEO_MINUTES' 90), without re-encoding."""
    if not dst.is_file():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(video), "-t", str(seconds),
                        "-c", "copy", str(dst)], check=True)
    return dst


def cold_asks(data: Path, n: int = 5, **extra: str) -> list[float]:
    """Wall seconds of `vidrag ask --json` in a new process, start to exit."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "adapters.console", "ask", "--json", QUESTION,
                               "--channel", SCOPE.channel], env=child_env(data, **extra), cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - t)
        if proc.returncode or not json.loads(proc.stdout)["citations"]:
            raise SystemExit(f"cold ask failed:\n{proc.stdout[-500:]}\n{proc.stderr[-2000:]}")
    return times


def measure(video: Path, out: Path, questions: list[str], long: bool = True) -> dict[str, Any]:
    """Every footprint figure, on fresh data directories under `out`."""
    import shutil

    from bench.run import say

    data = out / "data-footprint"
    shutil.rmtree(data, ignore_errors=True)
    say("footprint: a worker indexes the lecture")
    worker = run_child("ingest", str(video), data=data)
    say(f"  worker peak RSS {worker['rss_mb']} MB, {worker['seconds']} s, models {worker['loaded']}")
    say("footprint: a chat process answers the lecture's questions")
    (out / "questions.json").write_text(json.dumps(questions))
    chat = run_child("chat", str(out / "questions.json"), data=data, QUESTIONS_PER_MINUTE_PER_CHANNEL="100000",
                     QUESTIONS_PER_MINUTE_PER_USER="100000")
    say(f"  chat peak RSS {chat['rss_mb']} MB over {chat['asks']} asks, models {chat['loaded']}")
    bundled = Settings().text_embedder.partition(":")[2]
    cold = cold_asks(data)
    cold_st = cold_asks(data, TEXT_EMBEDDER="st:" + bundled)
    say(f"  cold ask: {statistics.median(cold):.2f} s (onnx), {statistics.median(cold_st):.2f} s (st)")
    result: dict[str, Any] = {
        "chat_rss_mb": chat["rss_mb"], "worker_rss_mb": worker["rss_mb"],
        "cold_ask_s": round(statistics.median(cold), 2), "cold_ask_st_s": round(statistics.median(cold_st), 2),
        "footprint": {"worker": worker, "chat": chat, "cold_ask_runs_s": [round(x, 2) for x in cold],
                      "cold_ask_st_runs_s": [round(x, 2) for x in cold_st]},
    }
    if long:
        long_video = loop_video(video, out / "media" / f"{video.stem}-90min.mp4")
        say("footprint: a worker indexes a 90-minute video (the lecture looped)")
        data_long = out / "data-footprint-long"
        shutil.rmtree(data_long, ignore_errors=True)
        lw = run_child("ingest", str(long_video), data=data_long)
        say(f"  long video: peak RSS {lw['rss_mb']} MB, {lw['seconds']} s for {lw['duration']:.0f} s of video")
        result["long_video_rss_mb"] = lw["rss_mb"]
        result["footprint"]["long_video"] = lw
        shutil.rmtree(data_long, ignore_errors=True)
    return result


# ---- the child processes -------------------------------------------------------------------------
def peak_mb() -> float:
    """This process's peak resident memory (VmHWM). Not `ru_maxrss`: Linux carries it across
    fork and exec, so a child of the benchmark reported the parent's peak (1,570 MB for both the
    worker and the chat child) instead of its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def child_ingest(video: str) -> dict[str, Any]:
    """A worker as deployed: the service on the defaults, one job, models loaded on demand."""
    from core.service import Service

    t = time.perf_counter()
    async with Service.open(Settings.from_env(dotenv=False), chat=None) as svc:
        svc.start_workers(1)
        v = await svc.wait((await svc.submit(SCOPE, video)).job.id)
        loaded = svc.models.loaded()
    return {"rss_mb": peak_mb(), "seconds": round(time.perf_counter() - t, 1), "duration": v.duration,
            "loaded": loaded}


async def child_chat(questions_file: str) -> dict[str, Any]:
    """A process that only answers: every question of the lecture, as a chat bot would."""
    from core.service import Service

    questions = json.loads(Path(questions_file).read_text())
    async with Service.open(Settings.from_env(dotenv=False), chat=None) as svc:
        for q in questions:
            await svc.ask(SCOPE, q)
        loaded = svc.models.loaded()
    return {"rss_mb": peak_mb(), "asks": len(questions), "loaded": loaded}


def main(argv: list[str]) -> int:
    work = {"ingest": child_ingest, "chat": child_chat}[argv[0]]
    print(json.dumps(asyncio.run(work(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Part 3 of bench/run.py (retrieval at 100 videos) for comparing two trees on a shared machine,
whose load moves more than a change does: build a data folder once per tree with that tree's own
bench functions, then time asks in alternating processes and read CPU milliseconds per ask (this
process and its children) beside the wall-clock percentiles.

    PYTHONPATH=TREE python -m bench.compare_retrieval build DIR [VIDEOS]   # part 1's lecture + copies
    PYTHONPATH=TREE python -m bench.compare_retrieval time DIR ASKS [--reads] [--warm N]

`TREE` may be an old commit checked out with `git worktree add` (its own bench/run.py is used:
imports are by name only). `--reads` also prints the catalog statements per ask; `--warm N` asks
N questions before the clock (default 3, as part 3; a bot that has run a while has read each
video's cover already).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

import bench.run as br  # noqa: E402


def settings(data: str) -> Any:
    return br.Settings(data_dir=Path(data), clip_pretrained="", ocr=True, log_level="WARNING")


def questions() -> list[str]:
    return [q["q"] for q in json.loads((br.ROOT / "eval" / "questions.json").read_text())
            if q["video"] == "roman_republic"]


def tree_cpu_s() -> float:
    """CPU seconds of this process and every descendant still running (Milvus Lite's server)."""
    total, tick, todo = 0.0, os.sysconf("SC_CLK_TCK"), [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
        todo += br.children(pid)
    return total


async def build(data: str, videos: int) -> None:
    s = settings(data)
    models = br.Models(s)
    await models.call(lambda: (models.text, models.image, models.transcriber, models.ocr))
    async with br.Service.open(s, models=models, chat=None) as svc:
        video, _ = br.rendered("roman_republic", br.ROOT / "bench-out" / "media")
        _, vid = await br.part_ingest(svc, video)
        if videos > 1:
            await br.add_synthetic(svc, vid, 1, videos - 1, np.random.default_rng(0))
    models.close()


async def timed(data: str, asks: int, reads: bool, warm: int = 3) -> None:
    s, qs = settings(data), questions()
    models = br.Models(s)
    await models.call(lambda: (models.text, models.image))
    calls: collections.Counter[str] = collections.Counter()
    rows: collections.Counter[str] = collections.Counter()
    async with br.Service.open(s, models=models, chat=None) as svc:
        if reads:
            cat, real = svc.catalog, svc.catalog._fetch

            async def fetch(sql: str, args: Any = ()) -> Any:
                got = await real(sql, args)
                key = " ".join(sql.split()[:8])
                calls[key] += 1
                rows[key] += len(got)
                return got

            cat._fetch = fetch  # type: ignore[method-assign]
        for i in range(warm):  # warm-up: 3 in part 3
            await svc.ask(br.SCOPE, qs[i % len(qs)])
        calls.clear()
        rows.clear()
        ms, cpu0 = [], tree_cpu_s()
        for i in range(asks):
            t = time.perf_counter()
            await svc.ask(br.SCOPE, qs[i % len(qs)])
            ms.append((time.perf_counter() - t) * 1000)
        cpu = (tree_cpu_s() - cpu0) * 1000 / asks
    models.close()
    print(json.dumps({"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
                      "cpu_ms_per_ask": round(cpu, 1), "asks": asks, "load": round(os.getloadavg()[0], 2)}))
    for k in calls:
        print(f"  {calls[k] / asks:6.2f} statements, {rows[k] / asks:7.1f} rows an ask: {k}")


if __name__ == "__main__":
    if sys.argv[1] == "build":
        asyncio.run(build(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 100))
    else:
        warm = int(sys.argv[sys.argv.index("--warm") + 1]) if "--warm" in sys.argv else 3
        asyncio.run(timed(sys.argv[2], int(sys.argv[3]), "--reads" in sys.argv, warm))

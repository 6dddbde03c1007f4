"""Probes that run beside a hostile case: how late the event loop wakes a sleeper (a stall is
what every channel feels), and the peak memory of a child process (an ingest run as its own
`vidrag` command, so its RSS is its own and not the test process's models)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

STALL_LIMIT_S = 1.0


@dataclass
class LoopLag:
    """`async with LoopLag() as lag:` samples the loop every 10 ms while the body runs;
    `lag.worst` is the longest stall seen, in seconds."""

    period: float = 0.01
    samples: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _since: float | None = None  # when the sample in progress began

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        # The sample in progress counts too: a body that blocks the loop and then ends (or raises)
        # without awaiting would otherwise end before the probe ever wakes to see the stall.
        if self._since is not None:
            self.samples.append(max(0.0, time.perf_counter() - self._since - self.period))
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            self._since = t = time.perf_counter()
            await asyncio.sleep(self.period)
            self.samples.append(time.perf_counter() - t - self.period)

    @property
    def worst(self) -> float:
        return max(self.samples, default=0.0)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    peak_rss_mb: float


ROOT = Path(__file__).resolve().parents[2]


_WRAP = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
         "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
         "sys.exit(code)")


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> Run:
    """`vidrag ARGS` in a child process with `env` added, and its peak RSS: the largest of it and
    every process it waited for (ffmpeg, ffprobe), measured by a small wrapper process whose
    only child it is (RUSAGE_CHILDREN of this test process would remember earlier children)."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        proc = subprocess.Popen([sys.executable, "-c", _WRAP, rss.name, sys.executable, "-m", "adapters.console", *args],
                                cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        kib = float(Path(rss.name).read_text() or 0)
    return Run(proc.returncode, out, err, kib / 1024.0)

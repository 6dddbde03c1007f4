"""The jailed ingest, the parent's side: one child process per job runs everything that reads the
bytes a channel member chose (core/ingest/child.py), shut in by core/ingest/sandbox.py, and the
bot only reads what it announces.

The child is started in a session of its own (`start_new_session=True`), so `os.killpg` ends it
with every program it started and every thread of it; where a memory cgroup can be made under
the bot's own (cgroup v1 here, as root), the whole tree is in it, which bounds the tree's memory
together (`MAX_INGEST_MB`), counts its peak, tells an OOM kill from any other death, and finds
every process of the tree even if one left the session. The task goes to the child's stdin only
once it is in the cgroup. The child's environment is built from nothing (no token of the bot
reaches it).

Each job has a wall-clock deadline (`deadline_in`), moved by the caller as it learns the
video's length; past it, or when the caller `stop`s it (the proxy cut the download, the job was
forgotten, cancelled or shut down), the tree is killed at once and the reason is the user's error:
"this video needed more memory than I allow", "…took longer to read…". Nothing of the tree
outlives `Jail.__aexit__`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import BadSource, DiskFull
from core.ingest.cgroup import Cgroup
from core.ingest.stops import LIMIT_MESSAGES, LimitHit

log = logging.getLogger(__name__)

EVENT_LINE_MAX = 1 << 20  # bytes of one event line; a longer one ends the job
STDERR_KEPT = 64 * 1024  # of the child's stderr, the last bytes kept for the log
ROOT = Path(__file__).resolve().parents[2]  # where `core` is imported from


@dataclass(frozen=True)
class Limits:
    """What one job's child may use. `memory` bounds each process's address space and, with a
    cgroup, the whole tree's memory; `cpu` each process's CPU seconds until the child lowers it
    in proportion to the video's length; `file` the size of any one file written."""

    memory: int
    cpu: int
    file: int
    open_files: int

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        minutes = s.max_video_minutes
        wav = int(minutes * 60 * 16000 * 2) + 2**20  # the 16 kHz mono sound track of the longest video
        return cls(memory=int(s.max_ingest_mb * 2**20),
                   cpu=int(s.ingest_seconds_base + s.ingest_seconds_per_minute * minutes),
                   file=max(int(s.max_download_mb * 2**20) + 16 * 2**20, wav),
                   open_files=s.max_ingest_files)


def child_settings(s: Settings) -> dict[str, Any]:
    """The settings the child works by (plain values: it imports no configuration)."""
    return {"frame_interval": s.frame_interval, "max_frames_per_minute": s.max_frames_per_minute,
            "max_video_minutes": s.max_video_minutes, "max_video_side": s.max_video_side,
            "max_video_pixels": s.max_video_pixels, "max_segments_per_minute": s.max_segments_per_minute,
            "max_segment_chars": s.max_segment_chars, "seconds_base": s.ingest_seconds_base,
            "seconds_per_minute": s.ingest_seconds_per_minute}


def child_env() -> dict[str, str]:
    """The child's whole environment: where programs and vidrag's code are, and nothing else."""
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    pythonpath = os.pathsep.join([str(ROOT), *[p for p in sys.path if p and "site-packages" in p]])
    return {"PATH": path, "PYTHONPATH": pythonpath, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}


@dataclass
class Outcome:
    """What happened to one child, for the log and the tests: how it ended, which limit (if any)
    stopped it, the tree's peak memory (with a cgroup), and what of the jail held."""

    code: int | None = None
    limit: str = ""
    peak_mb: float = 0.0
    jail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    startup: float = 0.0  # seconds from the spawn to the jail shut (interpreter, limits, namespaces)


Handler = Callable[[dict[str, Any]], Awaitable[None]]

# The outcomes of this process's last children, newest last: what `vidrag` logs per job, and what
# the tests and benchmarks read (peak memory of the tree, the limit that ended it).
RECENT: collections.deque[Outcome] = collections.deque(maxlen=256)


class Jail:
    """One job's child. `async with Jail(work, limits) as jail: await jail.run(task, on_event)`."""

    def __init__(self, work: Path, limits: Limits, *, readable: tuple[Path, ...] = (), deadline: float = 3600) -> None:
        self.work = work.absolute()  # the child runs in it (cwd): a relative DATA_DIR would point elsewhere
        self.limits = limits
        self.readable = readable
        self.deadline = time.monotonic() + deadline
        self.outcome = Outcome()
        self._reason = ""  # why the parent killed the child, in the user's words
        self._proc: asyncio.subprocess.Process | None = None
        self._cgroup: Cgroup | None = None
        self._stopped = asyncio.Event()
        self._stderr = bytearray()

    def deadline_in(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def stop(self, reason: str) -> None:
        """Kill the tree now; `run` raises BadSource(`reason`)."""
        if not self._reason:
            self._reason = reason
        self._kill()
        self._stopped.set()

    def _kill(self) -> None:
        """The session now (a signal, no waiting); the cgroup's stragglers are killed off the loop
        as `run` and `__aexit__` end."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def __aenter__(self) -> Jail:
        self.work.mkdir(parents=True, exist_ok=True)
        self._cgroup = await asyncio.to_thread(Cgroup, self.limits.memory)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._kill()
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(self._proc.wait(), 10))
        if self._cgroup is not None:
            self.outcome.peak_mb = round(await asyncio.to_thread(self._cgroup.peak) / 2**20, 1)
            await asyncio.shield(asyncio.to_thread(self._cgroup.remove))
        if self._proc is not None:
            RECENT.append(self.outcome)

    async def run(self, task: dict[str, Any], on_event: Handler) -> None:
        """Start the child on `task` and hand each event to `on_event` as it comes, until "done";
        raise BadSource with the child's reason, or the limit or deadline that ended it."""
        started = time.monotonic()
        task = {**task, "work": str(self.work), "writable": [str(self.work)], "parent": os.getpid(),
                "readable": [str(p) for p in self.readable],
                "limits": {"as": self.limits.memory, "cpu": self.limits.cpu, "fsize": self.limits.file,
                           "nofile": self.limits.open_files}}
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.ingest.sandbox", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(self.work),
            env=child_env(), start_new_session=True, limit=EVENT_LINE_MAX)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        drain = asyncio.create_task(self._drain(proc.stderr))
        error: dict[str, Any] | None = None
        done = False
        try:
            in_cgroup = self._cgroup is not None and await asyncio.to_thread(self._cgroup.add, proc.pid)
            proc.stdin.write(json.dumps(task).encode() + b"\n")
            with contextlib.suppress(OSError):
                await proc.stdin.drain()
            proc.stdin.close()
            while True:
                line = await self._next_line(proc.stdout)
                if line is None:
                    break
                event = _event(line)
                if event is None:
                    self.stop(LIMIT_MESSAGES["crash"])  # the child says what it may not
                    break
                kind = event.get("event")
                if kind == "jail":
                    self.outcome.startup = round(time.monotonic() - started, 3)
                    self.outcome.jail = {k: v for k, v in event.items() if k != "event"}
                    self.outcome.jail["cgroup"] = in_cgroup
                elif kind == "error":
                    error = event
                elif kind == "done":
                    done = True
                else:
                    await on_event(event)
            await self._wait(proc)
        finally:
            self._kill()
            if proc.returncode is None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.wait_for(proc.wait(), 10))
            drain.cancel()
            self.outcome.code = proc.returncode
            self.outcome.seconds = round(time.monotonic() - started, 3)
        oom = await asyncio.to_thread(self._cgroup.oom_kills) if self._cgroup is not None else 0
        self._conclude(proc.returncode, error, done, oom)

    async def _next_line(self, stdout: asyncio.StreamReader) -> bytes | None:
        """The next event line, or None at the end (or when stopped); past the deadline the tree
        is killed."""
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.stop(LIMIT_MESSAGES["time"])
                self.outcome.limit = self.outcome.limit or "time"
                return None
            if self._stopped.is_set():
                return None
            reading = asyncio.ensure_future(stdout.readline())
            stopped = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({reading, stopped}, timeout=min(remaining, 5.0),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                if not reading.done():
                    reading.cancel()
            if reading.done() and not reading.cancelled():
                try:
                    line = reading.result()
                except (ValueError, asyncio.LimitOverrunError):  # a line past EVENT_LINE_MAX
                    self.stop(LIMIT_MESSAGES["crash"])
                    return None
                return line or None

    async def _wait(self, proc: asyncio.subprocess.Process) -> None:
        remaining = max(0.1, self.deadline - time.monotonic())
        try:
            await asyncio.wait_for(proc.wait(), min(remaining, 30))
        except TimeoutError:
            self.stop(LIMIT_MESSAGES["time"])
            self.outcome.limit = self.outcome.limit or "time"

    async def _drain(self, stderr: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while data := await stderr.read(1 << 16):
                self._stderr += data
                del self._stderr[:-STDERR_KEPT]

    def _conclude(self, code: int | None, error: dict[str, Any] | None, done: bool, oom: int) -> None:
        tail = self._stderr.decode(errors="replace")[-2000:]
        if self._reason:
            log.info("jailed ingest stopped: %s", self._reason)
            self.outcome.limit = self.outcome.limit or "stopped"
            raise BadSource(self._reason)
        if oom:
            self.outcome.limit = "memory"
            raise LimitHit("memory")
        if error is not None:
            if error.get("limit") == "disk":  # DATA_DIR is full: the job waits for room (core/jobs)
                raise DiskFull(str(self.work))
            if error.get("limit") in LIMIT_MESSAGES:
                self.outcome.limit = str(error["limit"])
                raise LimitHit(self.outcome.limit)
            if error.get("internal"):
                raise RuntimeError(f"the jailed ingest failed: {tail}")
            raise BadSource(str(error.get("message") or LIMIT_MESSAGES["crash"])[:500])
        if code == 0 and done:
            return
        if code is not None and code < 0:
            sig = -code
            kind = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file", signal.SIGKILL: "memory"}.get(
                signal.Signals(sig) if sig in signal.valid_signals() else signal.SIGTERM, "crash")
            self.outcome.limit = kind
            log.info("jailed ingest ended by signal %d (%s): %s", sig, kind, tail[-500:])
            raise LimitHit(kind) if kind != "crash" else BadSource(LIMIT_MESSAGES["crash"])
        raise RuntimeError(f"the jailed ingest ended without a result (exit {code}): {tail}")


def _event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None

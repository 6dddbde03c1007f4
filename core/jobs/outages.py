"""What goes wrong around the jobs of a process that is no video's fault, as its worker loops see
it: the disk under DATA_DIR short of room (MIN_FREE_MB), a loop that cannot lease or commit, a
server that went away. One `Troubles` per `JobRunner`: it pauses the loops with a growing delay
(1 s, 2 s, … 30 s) and logs each run of trouble once; it logged a traceback every second before,
579 in 581 s, when SQLite could not commit on a full disk."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

from core.config import Settings
from core.errors import DiskFull, Outage, Unavailable, disk_full

log = logging.getLogger("core.jobs.worker")  # the worker's log: an operator reads one place


def free_mb(path: Path) -> float:
    """Free space of the file system under `path` (or its nearest existing parent), in MB."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 2**20


class Backoff:
    """A growing pause after consecutive failures: `first`, twice that, … up to `cap` seconds."""

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(self.cap, self.delay * 2 if self.delay else self.first)
        return self.delay

    def ok(self) -> None:
        self.delay = 0.0


class Troubles:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backoff = Backoff()
        self.resume_at = 0.0  # monotonic time before which the loops lease nothing
        self.loop = Outage(log, "the ingest loop")
        self.disk = Outage(log, f"free space under DATA_DIR {settings.data_dir}")

    def seen(self, e: Exception) -> None:
        """A failure of a worker loop itself: logged once per run of failures, then a pause."""
        if (full := disk_full(e)) is not None:
            self.disk.failed(f"out of disk space at {full.path or self.settings.data_dir.resolve()}: "
                             f"the ingest loop cannot commit ({e})")
        elif isinstance(e, Unavailable):
            self.loop.failed(f"the ingest loop waits for {e.server} ({e.setting})")
        else:
            if not self.loop.down:
                log.exception("ingest worker error")
            self.loop.failed(f"ingest worker error: {e!r}")
        self.pause()

    def pause(self) -> None:
        """No job is leased for the next delay of the backoff (after a full disk, an outage)."""
        self.resume_at = max(self.resume_at, time.monotonic() + self.backoff.failed())

    def ok(self) -> None:
        """A job was indexed: whatever it was is over."""
        self.backoff.ok()
        self.disk.ok()

    async def paused(self) -> None:
        if (pause := self.resume_at - time.monotonic()) > 0:
            await asyncio.sleep(pause)

    async def free(self) -> float:
        return await asyncio.to_thread(free_mb, self.settings.data_dir)

    async def low_disk(self) -> DiskFull | None:
        """A `DiskFull` when DATA_DIR has less than MIN_FREE_MB free, else None."""
        free = await self.free()
        if free >= self.settings.min_free_mb:
            return None
        return DiskFull(f"{self.settings.data_dir.resolve()} ({free:.1f} MB free, MIN_FREE_MB="
                        f"{self.settings.min_free_mb:g})")

    async def wait_for_room(self) -> None:
        """Take no job while DATA_DIR is short of room; look again every few seconds."""
        delay = 2.0
        while (low := await self.low_disk()) is not None:
            self.disk.failed(f"out of disk space at {low.path}: no ingest starts until there is room")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        if delay > 2.0:
            self.disk.ok()

"""A memory cgroup (v1) for one jailed ingest's process tree, made under the bot's own cgroup: it
bounds the tree's memory together (`MAX_INGEST_MB`), counts its peak, tells an OOM kill from any
other death, and finds every process of the tree, even one that left the session. Where one
cannot be made (not root, no v1 memory controller, cgroup v2 without delegation), `path` is None
and the per-process limits of the sandbox are what bounds the tree.

Blocking file I/O on /sys: call it off the event loop."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

_CGROUP_V1 = Path("/sys/fs/cgroup/memory")


class Cgroup:
    """A memory cgroup (v1) for one job's tree under this process's own, or nothing where one
    cannot be made (not root, no v1 memory controller): `path` is None then."""

    _made = 0

    def __init__(self, limit: int) -> None:
        self.path: Path | None = None
        try:
            own = next(line.split(":", 2)[2].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                       if line.split(":", 2)[1] == "memory")
            Cgroup._made += 1
            parent = _CGROUP_V1 / own.lstrip("/")
            if Cgroup._made == 1:
                Cgroup.sweep(parent)
            path = parent / f"vidrag-{os.getpid()}-{Cgroup._made}"
            path.mkdir()
        except (OSError, StopIteration, IndexError):
            return
        try:
            (path / "memory.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return
        self.path = path

    @staticmethod
    def sweep(parent: Path) -> None:
        """Remove what a bot that died left: the cgroups of processes that are gone, each with
        whatever of its tree still runs (the sandbox's programs outlive a SIGKILLed bot)."""
        for old in parent.glob("vidrag-*-*"):
            try:
                os.kill(int(old.name.split("-")[1]), 0)
                continue  # its bot is alive
            except ProcessLookupError:
                pass
            except (ValueError, PermissionError):
                continue
            stale = Cgroup.__new__(Cgroup)
            stale.path = old
            log.warning("removing %s, left by a bot that stopped mid-ingest", old.name)
            stale.remove()

    def add(self, pid: int) -> bool:
        if self.path is None:
            return False
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
            return True
        except OSError:
            return False

    def _read(self, name: str) -> str:
        if self.path is None:
            return ""
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    def pids(self) -> list[int]:
        return [int(p) for p in self._read("cgroup.procs").split()]

    def oom_kills(self) -> int:
        for line in self._read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def peak(self) -> int:
        """The tree's peak memory, page cache of its files included (bytes)."""
        return int(self._read("memory.max_usage_in_bytes").strip() or 0)

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        if self.path is None:
            return
        self.kill_all()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.01)
        log.warning("could not remove the cgroup %s", self.path)

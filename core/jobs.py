"""The durable ingest queue, kept in the SQLite catalog (WAL, busy timeout: see `Catalog.open`).

A job is leased by one worker for `lease_s` seconds and the lease is renewed while it runs; a
worker that dies lets its lease expire and another worker takes the job up again (`attempts`
grows). Leasing is one `BEGIN IMMEDIATE` transaction, so two workers, in one process or several,
never take the same job. Every later write of a running job names its worker, so a worker that
lost its lease cannot finish or fail a job another worker now holds. After `max_attempts` (failed
or crashed) a job is dead and its reason kept for the channel.

A worker id is `host:pid:nonce`. At start-up `recover` re-queues at once the jobs of workers on
this host whose process is gone (a SIGKILL, an OOM kill, a reboot), instead of waiting for their
leases to expire; jobs of other hosts wait for expiry.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

from .models import Job, Scope, Stage, VideoStatus
from .store import Catalog, job_from_row

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"
LOST = "lost"  # what `fail` answers when the job is no longer this worker's

CRASHED = "I tried to index this video {n} times and the indexer stopped each time; I gave up on it."


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def worker_gone(worker: str, me: str) -> bool:
    """True only when `worker` is certainly dead: a process of this host that no longer runs, or
    an earlier life of this very pid (a container restarts its bot as pid 1 every time)."""
    parts = worker.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or worker == me or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def scope_of(key: str) -> Scope:
    platform, workspace, channel = key.split(":", 2)
    return Scope(platform, workspace, channel)


class JobQueue:
    def __init__(self, catalog: Catalog, lease_s: float = 120.0, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.catalog = catalog
        self.lease_s = lease_s
        self.max_attempts = max_attempts

    async def enqueue(self, scope: Scope, video_id: str, source: str, headers: dict[str, str] | None,
                      requested_by: str = "") -> Job:
        now = time.time()
        job_id = uuid.uuid4().hex[:12]
        await self.catalog.write(
            "INSERT INTO jobs (id, video_id, scope, source, headers, stage, status, requested_by, created, updated) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, video_id, scope.key, source, json.dumps(headers) if headers is not None else "null",
             Stage.QUEUED, QUEUED, requested_by, now, now))
        return Job(job_id, video_id, scope, source, Stage.QUEUED)

    async def lease(self, worker: str) -> Job | None:
        """Take the oldest queued job, or one whose lease expired with attempts left, in one
        immediate transaction."""

        async def work(db: Any) -> Any:
            now = time.time()
            async with db.execute(
                    "SELECT * FROM jobs WHERE status=? OR (status=? AND lease_until<? AND attempts<?) "
                    "ORDER BY created LIMIT 1", (QUEUED, RUNNING, now, self.max_attempts)) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            await db.execute(
                "UPDATE jobs SET status=?, worker=?, lease_until=?, attempts=attempts+1, error='', updated=? "
                "WHERE id=?", (RUNNING, worker, now + self.lease_s, now, row["id"]))
            async with db.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)) as cur:
                return await cur.fetchone()

        row = await self._immediate(work)
        return job_from_row(row, scope_of(row["scope"])) if row is not None else None

    async def _immediate(self, work: Any) -> Any:
        """Run `work(db)` inside one BEGIN IMMEDIATE transaction on the catalog's connection."""
        async with self.catalog.lock:
            db = self.catalog.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                out = await work(db)
                await db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # a cancelled COMMIT may have run
                    await db.execute("ROLLBACK")
                raise
        return out

    async def recover(self, me: str) -> tuple[list[Job], list[Job]]:
        """Re-queue the running jobs of dead workers on this host; dead-letter those out of
        attempts. Returns (re-queued, dead)."""
        rows = await self.catalog.rows("SELECT * FROM jobs WHERE status=?", (RUNNING,))
        requeued: list[Job] = []
        dead: list[Job] = []
        for row in rows:
            if not worker_gone(row["worker"], me):
                continue
            job = await self._retire(row, requeue=True)
            if job is not None:
                (requeued if job.extra["status"] == QUEUED else dead).append(job)
        return requeued, dead

    async def reap(self) -> list[Job]:
        """Dead-letter the jobs whose lease expired after their last allowed attempt (their worker
        crashed every time): without this a video that kills the indexer would be retried forever."""
        rows = await self.catalog.rows("SELECT * FROM jobs WHERE status=? AND lease_until<? AND attempts>=?",
                                       (RUNNING, time.time(), self.max_attempts))
        out = [await self._retire(r, requeue=False) for r in rows]
        return [j for j in out if j is not None]

    async def _retire(self, row: Any, requeue: bool) -> Job | None:
        again = requeue and row["attempts"] < self.max_attempts
        error = "" if again else CRASHED.format(n=row["attempts"])

        async def work(db: Any) -> int:
            cur = await db.execute(
                "UPDATE jobs SET status=?, stage=?, lease_until=0, error=?, updated=? "
                "WHERE id=? AND status=? AND worker=? AND lease_until=?",
                (QUEUED if again else DEAD, Stage.QUEUED if again else Stage.FAILED, error, time.time(),
                 row["id"], RUNNING, row["worker"], row["lease_until"]))
            if cur.rowcount == 1 and not again:
                await db.execute("UPDATE videos SET status=?, error=? WHERE scope=? AND id=?",
                                 (VideoStatus.FAILED, error, row["scope"], row["video_id"]))
            return cur.rowcount

        if await self._immediate(work) != 1:
            return None  # someone else moved it meanwhile
        return await self.get(row["id"])

    async def live_videos(self, me: str) -> set[tuple[str, str]]:
        """(scope, video) of jobs that some live worker may be running right now."""
        rows = await self.catalog.rows("SELECT scope, video_id, worker FROM jobs WHERE status=? AND lease_until>=?",
                                       (RUNNING, time.time()))
        return {(r["scope"], r["video_id"]) for r in rows if not worker_gone(r["worker"], me)}

    async def renew(self, job_id: str, worker: str) -> bool:
        """Extend the lease; False when another worker has taken the job over."""
        n = await self.catalog.write(
            "UPDATE jobs SET lease_until=?, updated=? WHERE id=? AND worker=? AND status=?",
            (time.time() + self.lease_s, time.time(), job_id, worker, RUNNING))
        return n == 1

    async def stage(self, job_id: str, stage: Stage) -> None:
        await self.catalog.write("UPDATE jobs SET stage=?, updated=? WHERE id=?", (stage, time.time(), job_id))

    async def complete(self, job: Job, worker: str, **video: Any) -> bool:
        """Mark the job done and its video ready (with `video`'s fields) in one transaction, so a
        crash leaves either both or neither. False when the job is no longer this worker's (its
        lease was taken over, or the video was forgotten meanwhile): nothing is written then."""
        cols = "".join(f", {k}=?" for k in video)

        async def work(db: Any) -> bool:
            cur = await db.execute("UPDATE jobs SET status=?, stage=?, updated=? WHERE id=? AND worker=? AND status=?",
                                   (DONE, Stage.DONE, time.time(), job.id, worker, RUNNING))
            if cur.rowcount != 1:
                return False
            await db.execute(f"UPDATE videos SET status=?{cols} WHERE scope=? AND id=?",  # noqa: S608
                             (VideoStatus.READY, *video.values(), job.scope.key, job.video_id))
            return True

        return bool(await self._immediate(work))

    async def finish(self, job_id: str) -> None:
        """Mark a job done whatever its worker (its video was found ready already)."""
        await self.catalog.write("UPDATE jobs SET status=?, stage=?, updated=? WHERE id=?",
                                 (DONE, Stage.DONE, time.time(), job_id))

    async def fail(self, job_id: str, worker: str, error: str, retry: bool) -> str:
        """Record a failure: QUEUED when `retry` and attempts remain, DEAD otherwise, LOST (and
        nothing written) when the job is no longer this worker's."""
        rows = await self.catalog.rows("SELECT attempts FROM jobs WHERE id=?", (job_id,))
        again = retry and bool(rows) and rows[0]["attempts"] < self.max_attempts
        if again:
            error = ""
        elif retry:
            error = f"I tried {rows[0]['attempts'] if rows else 1} times and couldn't index this video. {error}"
        n = await self.catalog.write(
            "UPDATE jobs SET status=?, stage=?, error=?, lease_until=0, updated=? WHERE id=? AND worker=? AND status=?",
            (QUEUED if again else DEAD, Stage.QUEUED if again else Stage.FAILED, error, time.time(), job_id,
             worker, RUNNING))
        if n != 1:
            return LOST
        return QUEUED if again else DEAD

    async def get(self, job_id: str) -> Job | None:
        rows = await self.catalog.rows("SELECT * FROM jobs WHERE id=?", (job_id,))
        return job_from_row(rows[0], scope_of(rows[0]["scope"])) if rows else None

    async def active(self, scope: Scope) -> list[Job]:
        rows = await self.catalog.rows(
            "SELECT * FROM jobs WHERE scope=? AND status IN (?,?) ORDER BY created", (scope.key, QUEUED, RUNNING))
        return [job_from_row(r, scope) for r in rows]

    async def active_for_video(self, scope: Scope, video_id: str) -> Job | None:
        rows = await self.catalog.rows(
            "SELECT * FROM jobs WHERE scope=? AND video_id=? AND status IN (?,?) ORDER BY created DESC LIMIT 1",
            (scope.key, video_id, QUEUED, RUNNING))
        return job_from_row(rows[0], scope) if rows else None

    async def count_active(self, scope: Scope | None = None, requested_by: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) AS n FROM jobs WHERE status IN (?,?)", [QUEUED, RUNNING]
        if scope is not None:
            sql += " AND scope=?"
            args.append(scope.key)
        if requested_by:
            sql += " AND requested_by=?"
            args.append(requested_by)
        return int((await self.catalog.rows(sql, args))[0]["n"])

    async def scopes(self) -> Sequence[str]:
        rows = await self.catalog.rows("SELECT DISTINCT scope FROM videos UNION SELECT DISTINCT scope FROM jobs")
        return [r["scope"] for r in rows]

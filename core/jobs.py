"""The durable ingest queue, kept in the SQLite catalog.

A job is leased by one worker for `lease_s` seconds and the lease is renewed while it runs; a
worker that dies lets its lease expire and another worker takes the job up again (`attempts`
grows). Leasing is one `BEGIN IMMEDIATE` transaction, so two workers, in one process or several,
never take the same job. After `max_attempts` a job is dead and its reason kept for the channel.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

from .models import Job, Scope, Stage
from .store import Catalog, job_from_row

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"


def scope_of(key: str) -> Scope:
    platform, workspace, channel = key.split(":", 2)
    return Scope(platform, workspace, channel)


class JobQueue:
    def __init__(self, catalog: Catalog, lease_s: float = 120.0, max_attempts: int = 3) -> None:
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
        """Take the oldest queued job, or one whose lease expired, in one immediate transaction."""
        async with self.catalog.lock:
            db = self.catalog.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()
                async with db.execute(
                        "SELECT * FROM jobs WHERE status=? OR (status=? AND lease_until<?) "
                        "ORDER BY created LIMIT 1", (QUEUED, RUNNING, now)) as cur:
                    row = await cur.fetchone()
                if row is None:
                    await db.execute("COMMIT")
                    return None
                await db.execute(
                    "UPDATE jobs SET status=?, worker=?, lease_until=?, attempts=attempts+1, updated=? WHERE id=?",
                    (RUNNING, worker, now + self.lease_s, now, row["id"]))
                async with db.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)) as cur:
                    row = await cur.fetchone()
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        return job_from_row(row, scope_of(row["scope"]))

    async def renew(self, job_id: str, worker: str) -> bool:
        """Extend the lease; False when another worker has taken the job over."""
        n = await self.catalog.write(
            "UPDATE jobs SET lease_until=?, updated=? WHERE id=? AND worker=? AND status=?",
            (time.time() + self.lease_s, time.time(), job_id, worker, RUNNING))
        return n == 1

    async def stage(self, job_id: str, stage: Stage) -> None:
        await self.catalog.write("UPDATE jobs SET stage=?, updated=? WHERE id=?", (stage, time.time(), job_id))

    async def finish(self, job_id: str) -> None:
        await self.catalog.write("UPDATE jobs SET status=?, stage=?, updated=? WHERE id=?",
                                 (DONE, Stage.DONE, time.time(), job_id))

    async def fail(self, job_id: str, error: str, retry: bool) -> bool:
        """Record a failure; re-queue it when `retry` and attempts remain. True if re-queued."""
        rows = await self.catalog.rows("SELECT attempts FROM jobs WHERE id=?", (job_id,))
        again = retry and bool(rows) and rows[0]["attempts"] < self.max_attempts
        await self.catalog.write(
            "UPDATE jobs SET status=?, stage=?, error=?, lease_until=0, updated=? WHERE id=?",
            (QUEUED if again else DEAD, Stage.QUEUED if again else Stage.FAILED, error, time.time(), job_id))
        return again

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
        rows = await self.catalog.rows("SELECT DISTINCT scope FROM videos")
        return [r["scope"] for r in rows]

"""The job queue in the catalog (table `jobs`): queued, leased, renewed, finished, re-queued
or dead-lettered, each step one statement or one transaction that checks the job is still the
worker's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.models import Job, JobStatus, Scope, Stage, VideoStatus
from core.store.catalog.sql import Primitives, Row, Tx
from core.store.catalog.videos import VIDEO_FIELDS

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def job_from(row: Row) -> Job:
    return Job(id=row["id"], video_id=row["video_id"], scope=Scope.parse(row["scope"]), source=row["source"],
               stage=Stage(row["stage"]), attempts=int(row["attempts"]), error=row["error"],
               status=JobStatus(row["status"]), needs_auth=bool(row["needs_auth"]),
               requested_by=row["requested_by"], worker=row["worker"], lease_until=float(row["lease_until"]))


class JobRows(Primitives):
    """The SQL of the job queue, mixed into `Catalog`."""

    lock_clause = ""  # appended to the lease's SELECT (PostgreSQL: FOR UPDATE SKIP LOCKED)

    async def _notify(self, tx: Tx) -> None:  # noqa: B027 - a no-op where there is no channel
        """Wake the workers of other processes after this transaction commits (PostgreSQL)."""

    def listen(self, wake: Callable[[], None]) -> None:  # noqa: B027 - a no-op on SQLite
        """Call `wake` when any process queues a job. SQLite has no channel between processes: its
        workers rely on the in-process wake-up and their timed poll."""

    # ---- jobs -----------------------------------------------------------------------------------
    async def insert_job(self, job: Job, now: float) -> None:
        async with self._tx() as tx:
            await tx.run(
                "INSERT INTO jobs (id, video_id, scope, source, needs_auth, stage, status, requested_by, created, "
                "updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.video_id, job.scope.key, job.source, int(job.needs_auth), str(job.stage),
                 str(job.status), job.requested_by, now, now))
            await self._notify(tx)

    async def lease_job(self, worker: str, now: float, lease_s: float, max_attempts: int) -> Job | None:
        """Take the oldest queued job, or one whose lease expired with attempts left."""
        async with self._tx() as tx:
            rows = await tx.fetch(
                "SELECT id FROM jobs WHERE status=? OR (status=? AND lease_until<? AND attempts<?) "
                "ORDER BY created LIMIT 1" + self.lock_clause,
                (JobStatus.QUEUED.value, JobStatus.RUNNING.value, now, max_attempts))
            if not rows:
                return None
            got = await tx.fetch(
                "UPDATE jobs SET status=?, worker=?, lease_until=?, attempts=attempts+1, error='', updated=? "
                "WHERE id=? RETURNING *", (JobStatus.RUNNING.value, worker, now + lease_s, now, rows[0]["id"]))
        return job_from(got[0])

    async def release_job(self, job_id: str, worker: str, now: float) -> bool:
        """Hand a running job back to the queue, its attempt not counted (a worker shutting down)."""
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, attempts=attempts-1, lease_until=0, worker='', "
                             "updated=? WHERE id=? AND worker=? AND status=?",
                             (JobStatus.QUEUED.value, Stage.QUEUED.value, now, job_id, worker, JobStatus.RUNNING.value))
            if n == 1:
                await self._notify(tx)
        return n == 1

    async def renew_job(self, job_id: str, worker: str, until: float, now: float, attempt: int | None = None) -> bool:
        """Extend the lease of a running job of `worker` (of its `attempt`-th lease, when given: the
        fencing token, so an attempt whose lease another attempt of the same worker took over
        cannot renew it)."""
        fence, args = ("", ()) if attempt is None else (" AND attempts=?", (attempt,))
        n = await self._run("UPDATE jobs SET lease_until=?, updated=? WHERE id=? AND worker=? AND status=?" + fence,
                            (until, now, job_id, worker, JobStatus.RUNNING.value, *args))
        return n == 1

    async def set_job_stage(self, job_id: str, stage: Stage, now: float) -> None:
        await self._run("UPDATE jobs SET stage=?, updated=? WHERE id=?", (stage.value, now, job_id))

    async def finish_job(self, job_id: str, now: float) -> None:
        await self._run("UPDATE jobs SET status=?, stage=?, updated=? WHERE id=?",
                        (JobStatus.DONE.value, Stage.DONE.value, now, job_id))

    async def complete_job(self, job: Job, worker: str, now: float, video: Mapping[str, Any]) -> bool:
        """The job done and its video ready (with `video`'s fields) in one transaction; False, with
        nothing written, when the job is no longer `worker`'s."""
        unknown = set(video) - VIDEO_FIELDS
        if unknown:
            raise ValueError(f"not video fields: {sorted(unknown)}")
        cols = "".join(f", {k}=?" for k in video)
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, updated=? WHERE id=? AND worker=? AND status=?",
                             (JobStatus.DONE.value, Stage.DONE.value, now, job.id, worker, JobStatus.RUNNING.value))
            if n != 1:
                return False
            await tx.run(f"UPDATE videos SET status=?{cols} WHERE scope=? AND id=?",  # noqa: S608 - names checked
                         (VideoStatus.READY.value, *video.values(), job.scope.key, job.video_id))
        return True

    async def end_job(self, job_id: str, worker: str, status: JobStatus, stage: Stage, error: str,
                      now: float) -> bool:
        """Re-queue or dead-letter a running job of `worker`; False when it is no longer its."""
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, error=?, lease_until=0, updated=? "
                             "WHERE id=? AND worker=? AND status=?",
                             (status.value, stage.value, error, now, job_id, worker, JobStatus.RUNNING.value))
            if n == 1 and status == JobStatus.QUEUED:
                await self._notify(tx)
        return n == 1

    async def retire_job(self, job: Job, status: JobStatus, error: str, now: float) -> bool:
        """Re-queue or dead-letter a job whose worker crashed, if nobody moved it since `job` was
        read (same worker, same lease); a dead job fails its video in the same transaction."""
        stage = Stage.QUEUED if status == JobStatus.QUEUED else Stage.FAILED
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, lease_until=0, error=?, updated=? "
                             "WHERE id=? AND status=? AND worker=? AND lease_until=?",
                             (status.value, stage.value, error, now, job.id, JobStatus.RUNNING.value, job.worker,
                              job.lease_until))
            if n == 1 and status == JobStatus.DEAD:
                await tx.run("UPDATE videos SET status=?, error=? WHERE scope=? AND id=?",
                             (VideoStatus.FAILED.value, error, job.scope.key, job.video_id))
            if n == 1 and status == JobStatus.QUEUED:
                await self._notify(tx)
        return n == 1

    async def job(self, job_id: str) -> Job | None:
        rows = await self._fetch("SELECT * FROM jobs WHERE id=?", (job_id,))
        return job_from(rows[0]) if rows else None

    async def running_jobs(self, lease_before: float | None = None, min_attempts: int = 0,
                           lease_from: float | None = None) -> list[Job]:
        """Running jobs, optionally only those whose lease ended before `lease_before` after at
        least `min_attempts`, or whose lease lasts until `lease_from` or later."""
        sql, args = "SELECT * FROM jobs WHERE status=? AND attempts>=?", [JobStatus.RUNNING.value, min_attempts]
        if lease_before is not None:
            sql += " AND lease_until<?"
            args.append(lease_before)
        if lease_from is not None:
            sql += " AND lease_until>=?"
            args.append(lease_from)
        return [job_from(r) for r in await self._fetch(sql + " ORDER BY created", args)]

    async def jobs(self, scope: Scope, video_id: str | None = None, active_only: bool = True) -> list[Job]:
        """The jobs of `scope` (of one video), oldest first; queued or running ones only by default."""
        sql, args = "SELECT * FROM jobs WHERE scope=?", [scope.key]
        if video_id is not None:
            sql += " AND video_id=?"
            args.append(video_id)
        if active_only:
            sql += " AND status IN (?,?)"
            args += [s.value for s in ACTIVE]
        return [job_from(r) for r in await self._fetch(sql + " ORDER BY created", args)]

    async def count_jobs(self, scope: Scope | None = None, requested_by: str | None = None) -> int:
        """Queued or running jobs, in `scope` and/or of one requester."""
        sql, args = "SELECT COUNT(*) AS n FROM jobs WHERE status IN (?,?)", [s.value for s in ACTIVE]
        if scope is not None:
            sql += " AND scope=?"
            args.append(scope.key)
        if requested_by:
            sql += " AND requested_by=?"
            args.append(requested_by)
        return int((await self._fetch(sql, args))[0]["n"])

"""The durable ingest queue: its policy (leases, attempts, dead letters, who is dead); the rows and
their SQL live in the catalog (`core.store.catalog`), on SQLite or PostgreSQL.

vidrag keeps its own queue rather than procrastinate or pgqueuer: both are PostgreSQL-only, and
vidrag must run embedded on SQLite with no server. It takes their ideas: a job is leased by one
worker for `lease_s` seconds (PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED`, so racing workers skip
each other's rows; SQLite: one `BEGIN IMMEDIATE` transaction) and the lease is renewed while it
runs; queuing a job wakes the workers of every process (PostgreSQL `LISTEN/NOTIFY`; SQLite: the
in-process wake-up plus a timed poll); failures are retried up to `max_attempts`, then the job is
dead and its reason kept for the channel. Every later write of a running job names its worker, so
a worker that lost its lease cannot finish or fail a job another worker now holds.

A worker on another host that dies is detected by its lease: once it stops renewing, the lease
expires and another worker takes the job up again (`attempts` grows). A worker id is
`host:pid:nonce`; at start-up `recover` re-queues at once the jobs of workers on this host whose
process is gone (a SIGKILL, an OOM kill, a reboot) instead of waiting for their leases to expire.

Time comes from `clock` (default `time.time`), so tests move it instead of sleeping.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from enum import StrEnum

from core.models import Job, JobStatus, Scope, Stage
from core.store.catalog import Catalog

QUEUED, RUNNING, DONE, DEAD = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE, JobStatus.DEAD


class Failed(StrEnum):
    """What recording a failure did: the job is queued again, dead (no attempt left, or not
    worth retrying), or it was no longer this worker's and nothing was written."""

    QUEUED = "queued"
    DEAD = "dead"
    LOST = "lost"


LOST = Failed.LOST

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


class JobQueue:
    def __init__(self, catalog: Catalog, lease_s: float = 120.0, max_attempts: int = 3,
                 clock: Callable[[], float] = time.time) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.catalog = catalog
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.clock = clock

    async def enqueue(self, scope: Scope, video_id: str, source: str, needs_auth: bool = False,
                      requested_by: str = "") -> Job:
        """Queue a job. `needs_auth`: the source is a chat attachment that needs the platform's
        token when no in-memory headers are at hand (after a restart, on another host)."""
        job = Job(uuid.uuid4().hex[:12], video_id, scope, source, Stage.QUEUED, needs_auth=bool(needs_auth),
                  requested_by=requested_by)
        await self.catalog.insert_job(job, self.clock())
        return job

    async def lease(self, worker: str) -> Job | None:
        """Take the oldest queued job, or one whose lease expired with attempts left."""
        return await self.catalog.lease_job(worker, self.clock(), self.lease_s, self.max_attempts)

    async def release(self, job_id: str, worker: str) -> bool:
        """Hand a running job of `worker` back to the queue at once, its attempt not counted (a
        worker that is shutting down); False when it is no longer `worker`'s."""
        return await self.catalog.release_job(job_id, worker, self.clock())

    async def recover(self, me: str) -> tuple[list[Job], list[Job]]:
        """Re-queue the running jobs of dead workers on this host; dead-letter those out of
        attempts. Returns (re-queued, dead)."""
        requeued: list[Job] = []
        dead: list[Job] = []
        for job in await self.catalog.running_jobs():
            if not worker_gone(job.worker, me):
                continue
            after = await self._retire(job, requeue=True)
            if after is not None:
                (requeued if after.status == QUEUED else dead).append(after)
        return requeued, dead

    async def reap(self) -> list[Job]:
        """Dead-letter the jobs whose lease expired after their last allowed attempt (their worker
        crashed every time): without this a video that kills the indexer would be retried forever."""
        out = [await self._retire(j, requeue=False)
               for j in await self.catalog.running_jobs(lease_before=self.clock(), min_attempts=self.max_attempts)]
        return [j for j in out if j is not None]

    async def _retire(self, job: Job, requeue: bool) -> Job | None:
        again = requeue and job.attempts < self.max_attempts
        error = "" if again else CRASHED.format(n=job.attempts)
        if not await self.catalog.retire_job(job, QUEUED if again else DEAD, error, self.clock()):
            return None  # someone else moved it meanwhile
        return await self.get(job.id)

    async def live_videos(self, me: str) -> set[tuple[str, str]]:
        """(scope, video) of jobs that some live worker may be running right now."""
        return {(j.scope.key, j.video_id) for j in await self.catalog.running_jobs(lease_from=self.clock())
                if not worker_gone(j.worker, me)}

    async def renew(self, job_id: str, worker: str, attempt: int | None = None) -> bool:
        """Extend the lease; False when another worker (or, with `attempt`, another attempt) has
        taken the job over, or it is gone. With `attempt` it is the fence a worker passes before
        it stores anything (`core.jobs.lease`)."""
        now = self.clock()
        return await self.catalog.renew_job(job_id, worker, now + self.lease_s, now, attempt)

    async def stage(self, job_id: str, stage: Stage) -> None:
        await self.catalog.set_job_stage(job_id, stage, self.clock())

    async def complete(self, job: Job, worker: str, **video: object) -> bool:
        """Mark the job done and its video ready (with `video`'s fields) in one transaction, so a
        crash leaves either both or neither. False when the job is no longer this worker's (its
        lease was taken over, or the video was forgotten meanwhile): nothing is written then."""
        return await self.catalog.complete_job(job, worker, self.clock(), video)

    async def finish(self, job_id: str) -> None:
        """Mark a job done whatever its worker (its video was found ready already)."""
        await self.catalog.finish_job(job_id, self.clock())

    async def fail(self, job_id: str, worker: str, error: str, retry: bool) -> Failed:
        """Record a failure: QUEUED when `retry` and attempts remain, DEAD otherwise, LOST (and
        nothing written) when the job is no longer this worker's."""
        job = await self.catalog.job(job_id)
        again = retry and job is not None and job.attempts < self.max_attempts
        if again:
            error = ""
        elif retry:
            error = f"I tried {job.attempts if job else 1} times and couldn't index this video. {error}"
        status = QUEUED if again else DEAD
        if not await self.catalog.end_job(job_id, worker, status, Stage.QUEUED if again else Stage.FAILED, error,
                                          self.clock()):
            return Failed.LOST
        return Failed.QUEUED if again else Failed.DEAD

    async def get(self, job_id: str) -> Job | None:
        return await self.catalog.job(job_id)

    async def active(self, scope: Scope) -> list[Job]:
        return await self.catalog.jobs(scope)

    async def active_for_video(self, scope: Scope, video_id: str) -> Job | None:
        jobs = await self.catalog.jobs(scope, video_id)
        return jobs[-1] if jobs else None

    async def count_active(self, scope: Scope | None = None, requested_by: str | None = None) -> int:
        return await self.catalog.count_jobs(scope, requested_by)

    async def scopes(self) -> Sequence[str]:
        return await self.catalog.scopes()

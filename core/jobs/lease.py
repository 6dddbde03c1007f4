"""One attempt's hold on its job, and the fence every write of that attempt passes.

A job is leased for JOB_LEASE_SECONDS and renewed every third of it. The renewal used to die at its
first failure (a PostgreSQL restart); the lease then ran out while the work went on, another
worker took the job, and both stored the video. Now:

- `Lease.renew` retries through an unreachable catalog (or a full SQLite disk) until shortly
  before the lease ends; if it still cannot renew, or the catalog says the job is no longer this
  attempt's, the lease is lost (`LeaseLost`) and the worker cancels the attempt's work.
- Every write of the attempt goes through `FencedStore`, which first renews the lease fenced by
  the attempt number (`UPDATE … WHERE worker=? AND attempts=?`): a write happens only while this
  attempt holds a fresh lease, so nobody else can lease the job before the write is done, and an
  attempt that lost its lease writes nothing. A write that finds PostgreSQL or Milvus unreachable
  waits for them (renewing the lease) instead of failing the video, and a Milvus insert is never
  repeated on top of itself: the video's rows of that collection are removed before it is tried
  again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import Unavailable, disk_full
from core.jobs.queue import JobQueue
from core.models import Job, JobStatus
from core.store.scoped import ScopedStore

log = logging.getLogger(__name__)

STORE_PATIENCE_S = 300.0  # how long an attempt that is storing waits for PostgreSQL or Milvus to come back


class LeaseLost(Exception):
    """The attempt no longer holds its job: taken over, forgotten, or its lease ran out while the
    catalog could not be reached. `reason` is what stopped the renewals (None: the catalog said so)."""

    def __init__(self, job_id: str, reason: BaseException | None = None) -> None:
        super().__init__(f"job {job_id}: lease lost" + (f" ({reason})" if reason else ""))
        self.reason = reason


class Lease:
    """The lease of one attempt at `job` (its `attempts`-th), renewed by `renew`."""

    def __init__(self, queue: JobQueue, job: Job, worker: str) -> None:
        self.queue = queue
        self.job = job
        self.worker = worker
        self.until = job.lease_until  # the lease's end as last written, on the queue's clock
        self.lost: LeaseLost | None = None
        self._lock = asyncio.Lock()

    @property
    def margin(self) -> float:
        """Renewals stop this long before the lease ends: the attempt's last write (fenced just
        before) and its cancellation must be over before another worker may lease the job."""
        return self.queue.lease_s / 4

    async def renew(self) -> None:
        """Extend the lease now, fenced by the attempt number. Retries while the catalog is
        unreachable (or, on SQLite, cannot commit for want of disk) until `margin` before the end;
        raises `LeaseLost` when it cannot, or when the job is no longer this attempt's."""
        async with self._lock:
            if self.lost is not None:
                raise self.lost
            delay = 0.25
            while True:
                try:
                    held = await self.queue.renew(self.job.id, self.worker, attempt=self.job.attempts)
                except Exception as e:
                    if not (isinstance(e, Unavailable) or disk_full(e)):
                        raise
                    if self.queue.clock() + delay >= self.until - self.margin:
                        self.lost = LeaseLost(self.job.id, e)
                        raise self.lost from e
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if not held:
                    self.lost = LeaseLost(self.job.id)
                    raise self.lost
                self.until = self.queue.clock() + self.queue.lease_s
                return

    async def complete(self, **video: object) -> bool:
        """Mark the job done and its video ready, fenced by this lease; waits for a catalog that
        went away. False when the job is no longer this attempt's (nothing written then)."""
        delay = 1.0
        while True:
            try:
                await self.renew()
                return await self.queue.complete(self.job, self.worker, **video)
            except LeaseLost:
                return False
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
            # The reply of a commit may be what was lost: then the job is done already, by us.
            with contextlib.suppress(Unavailable):
                now = await self.queue.get(self.job.id)
                if now is not None and now.status == JobStatus.DONE and now.worker == self.worker \
                        and now.attempts == self.job.attempts:
                    return True

    async def keep(self, work: asyncio.Task[Any]) -> None:
        """Renew every third of the lease while `work` runs; cancel `work` when the lease is lost."""
        while True:
            await asyncio.sleep(self.queue.lease_s / 3)
            try:
                await self.renew()
            except LeaseLost as e:
                if e.reason is None:
                    log.warning("job %s is no longer this worker's (taken over or forgotten): its work stops",
                                self.job.id)
                else:
                    log.warning("could not renew the lease of job %s before it ran out (%s): its work stops "
                                "and nothing of it is stored; another worker takes it up", self.job.id, e.reason)
                work.cancel()
                return


class FencedStore(ScopedStore):
    """An attempt's view of its channel: each write is fenced by the lease (see the module), and
    waits up to STORE_PATIENCE_S for servers that went away."""

    def __init__(self, store: ScopedStore, lease: Lease, patience: float = STORE_PATIENCE_S) -> None:
        super().__init__(store.scope, store.vectors, store.catalog, store.files)
        self.lease = lease
        self.patience = patience

    async def _fenced(self, write: Callable[[], Awaitable[None]],
                      undo: Callable[[], Awaitable[None]] | None = None) -> None:
        """`write()` while holding the lease; after a failure for an unreachable server, wait
        (1, 2, 4, … s, renewing the lease), `undo()` what it may have half written, and write again."""
        deadline = time.monotonic() + self.patience
        delay, dirty = 1.0, False
        while True:
            await self.lease.renew()
            try:
                if dirty and undo is not None:
                    await undo()
                await write()
                return
            except Unavailable as e:
                dirty = True
                if time.monotonic() + delay > deadline:
                    raise
                log.info("job %s waits for %s before it stores again", self.lease.job.id, e.server)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    async def _drop(self, collection: str | None, video_id: str) -> None:
        if collection:
            await self._milvus(self.vectors.delete, collection, self.partition, [video_id])

    # Each write takes ScopedStore's own arguments, passed through as they are.
    async def update_video(self, video_id: str, *args: Any, **kw: Any) -> None:
        await self._fenced(lambda: ScopedStore.update_video(self, video_id, *args, **kw))

    async def drop_vectors(self, *args: Any, **kw: Any) -> None:
        await self._fenced(lambda: ScopedStore.drop_vectors(self, *args, **kw))

    async def put_text(self, video_id: str, *args: Any, **kw: Any) -> None:
        await self._fenced(lambda: ScopedStore.put_text(self, video_id, *args, **kw),
                           undo=lambda: self._drop(self.vectors.text, video_id))

    async def put_window(self, video_id: str, since: float, *args: Any, **kw: Any) -> None:
        await self._fenced(lambda: ScopedStore.put_window(self, video_id, since, *args, **kw),
                           undo=lambda: self._drop_from(video_id, since))

    async def drop_after(self, video_id: str, since: float) -> None:
        await self._fenced(lambda: ScopedStore.drop_after(self, video_id, since))

    async def _drop_from(self, video_id: str, since: float) -> None:
        for c in filter(None, (self.vectors.text, self.vectors.frames)):
            await self._milvus(self.vectors.delete, c, self.partition, [video_id], since)

    async def put_frames(self, video_id: str, *args: Any, **kw: Any) -> None:
        await self._fenced(lambda: ScopedStore.put_frames(self, video_id, *args, **kw),
                           undo=lambda: self._drop(self.vectors.frames, video_id))

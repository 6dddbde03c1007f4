"""What this process holds of its jobs in memory, one `JobHandle` per job, for as long as it
matters: the submitter's download headers (never written to disk), the callbacks that follow its
progress, the future its waiters wait on, and its running ingest. Only core/jobs writes them; the
service and the adapters go through `JobHandles`' methods.

A handle is dropped when its job ends in this process (resolved, failed, removed), so a bot that
runs for weeks holds handles only for the jobs in flight. A waiter that comes after the end reads
the outcome from the catalog (`Service.wait`), not from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import UserFacingError
from core.models import Progress, Video

ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass
class JobHandle:
    job_id: str
    headers: dict[str, str] | None = None
    listeners: list[ProgressCallback] = field(default_factory=list)
    outcome: asyncio.Future[Video] | None = None
    task: asyncio.Task[Any] | None = None
    ended: asyncio.Event | None = None

    def idle(self) -> bool:
        return self.task is None and not self.listeners and self.headers is None \
            and (self.outcome is None or self.outcome.done())


class JobHandles:
    def __init__(self) -> None:
        self._by_id: dict[str, JobHandle] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def _get(self, job_id: str) -> JobHandle:
        return self._by_id.setdefault(job_id, JobHandle(job_id))

    def _drop_if_idle(self, job_id: str) -> None:
        handle = self._by_id.get(job_id)
        if handle is not None and handle.idle():
            del self._by_id[job_id]

    # ---- the submitter's side ----------------------------------------------------------------------
    def give_headers(self, job_id: str, headers: dict[str, str]) -> None:
        """Headers for the job's download (a chat attachment's token), kept in memory only."""
        self._get(job_id).headers = headers

    def follow(self, job_id: str, callback: ProgressCallback) -> None:
        self._get(job_id).listeners.append(callback)

    def outcome(self, job_id: str) -> asyncio.Future[Video]:
        """The future the job's end resolves (the video) or fails (its user-facing error)."""
        handle = self._get(job_id)
        if handle.outcome is None or handle.outcome.done():
            handle.outcome = asyncio.get_running_loop().create_future()
        return handle.outcome

    def done_waiting(self, job_id: str) -> None:
        """A waiter gave up or got its answer: the handle goes if nothing else holds it."""
        self._drop_if_idle(job_id)

    # ---- the worker's side -----------------------------------------------------------------------
    def take_headers(self, job_id: str) -> dict[str, str] | None:
        handle = self._by_id.get(job_id)
        if handle is None:
            return None
        headers, handle.headers = handle.headers, None
        return headers

    def listeners(self, job_id: str) -> list[ProgressCallback]:
        handle = self._by_id.get(job_id)
        return list(handle.listeners) if handle is not None else []

    def running(self, job_id: str, task: asyncio.Task[Any]) -> asyncio.Event:
        handle = self._get(job_id)
        handle.task, handle.ended = task, asyncio.Event()
        return handle.ended

    def finished(self, job_id: str) -> None:
        handle = self._by_id.get(job_id)
        if handle is None:
            return
        if handle.ended is not None:
            handle.ended.set()
        handle.task = handle.ended = None
        self._drop_if_idle(job_id)

    def tasks(self, job_ids: set[str]) -> list[tuple[asyncio.Task[Any], asyncio.Event]]:
        """The running ingests of `job_ids` in this process, with the event each sets once cleaned up."""
        return [(h.task, h.ended) for j in job_ids if (h := self._by_id.get(j)) is not None
                and h.task is not None and h.ended is not None]

    def resolve(self, job_id: str, video: Video | None) -> None:
        """The job ended with `video` indexed: waiters get it, followers are let go."""
        handle = self._by_id.get(job_id)
        if handle is None:
            return
        if handle.outcome is not None and not handle.outcome.done() and video is not None:
            handle.outcome.set_result(video)
        handle.listeners.clear()
        self._drop_if_idle(job_id)

    def reject(self, job_id: str, error: Exception | str, final: bool = True) -> None:
        """Waiters get `error`. `final`: the job ended without a video (failed, removed), and its
        followers are let go; otherwise only this attempt did (the disk is full: the job waits in
        the queue), its followers keep following and a later wait waits for the next attempt."""
        handle = self._by_id.get(job_id)
        if handle is None:
            return
        if handle.outcome is not None and not handle.outcome.done():
            handle.outcome.set_exception(error if isinstance(error, Exception) else UserFacingError(error))
            handle.outcome.exception()  # retrieved: nobody may be waiting
        handle.outcome = None
        if final:
            handle.listeners.clear()
        self._drop_if_idle(job_id)

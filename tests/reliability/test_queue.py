"""The durable queue, on SQLite and on PostgreSQL: two workers on one catalog never run a job twice
(several processes racing on the real database, and two services ingesting for real), an expired
lease is taken over and the old worker can no longer finish the job, and a job that crashes its
worker every time is dead-lettered. Time moves by the queue's injected clock, not by sleeping."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.config import Settings
from core.jobs.queue import DEAD, LOST, QUEUED, RUNNING, JobQueue, new_worker_id
from core.models import Scope, Stage
from core.service import JobEvent, Service
from core.store.catalog import Catalog, open_catalog
from tests.backends import BACKENDS
from tests.reliability.conftest import console, two_workers

pytestmark = pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)

REPO = Path(__file__).resolve().parents[2]
RACER = """
import asyncio, json, pathlib, sys
from core.store.catalog import open_catalog
from core.config import Settings
from core.jobs.queue import JobQueue, new_worker_id
async def main():
    cat = await open_catalog(Settings(data_dir=pathlib.Path(sys.argv[1]), database_url=sys.argv[2]))
    q, me, got = JobQueue(cat), new_worker_id(), []
    while (job := await q.lease(me)) is not None:
        got.append(job.id)
        assert await q.complete(job, me)
    print(json.dumps(got))
    await cat.close()
asyncio.run(main())
"""


class Clock:
    """The queue's time, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_processes_racing_on_one_catalog_never_take_a_job_twice(catalog: Catalog, database_url: str,
                                                                     tmp_path: Path) -> None:
    q = JobQueue(catalog)
    sc = Scope("slack", "T", "C")
    ids = {(await q.enqueue(sc, f"v{i}", f"https://videos.example/{i}")).id for i in range(150)}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", RACER, str(tmp_path / "data"), database_url,
                                                  stdout=asyncio.subprocess.PIPE, env=env) for _ in range(3)]
    outs = [json.loads((await p.communicate())[0]) for p in procs]
    taken = Counter(j for out in outs for j in out)
    assert set(taken) == ids and max(taken.values()) == 1
    rows = await catalog.rows("SELECT status, attempts FROM jobs")
    assert {(r["status"], r["attempts"]) for r in rows} == {("done", 1)}
    if catalog.backend == "sqlite":
        assert (await catalog.rows("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await catalog.rows("PRAGMA busy_timeout"))[0][0] >= 5000


@pytest.mark.timeout(240)  # three ingests by two services on a busy two-core machine
async def test_two_services_on_one_catalog_index_each_video_once(rel_settings, models, short_lectures) -> None:
    async with two_workers(rel_settings, models) as (a, b, _):
        ready: Counter[str] = Counter()

        async def hook(e: JobEvent) -> None:
            if e.progress.stage == Stage.DONE:
                ready[e.job.id] += 1

        a.on_job_event(hook)
        b.on_job_event(hook)
        subs = [await a.submit(console(f"two-{n}"), str(p)) for n, p in list(short_lectures.items())[:3]]
        a.start_workers(1)
        b.start_workers(1)
        for s in subs:
            await asyncio.wait_for(a.wait(s.job.id), 180)
        rows = await a.catalog.rows("SELECT status, attempts FROM jobs")
    assert {(r["status"], r["attempts"]) for r in rows} == {("done", 1)}
    assert ready == Counter({s.job.id: 1 for s in subs})


async def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(catalog: Catalog) -> None:
    clock = Clock()
    q = JobQueue(catalog, lease_s=10, max_attempts=3, clock=clock)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1")
    first, second = "otherhost:1:a", "otherhost:2:b"
    assert (await q.lease(first)).id == job.id  # type: ignore[union-attr]
    clock.now += 9
    assert await q.lease(second) is None  # leased: nobody else gets it
    clock.now += 2
    again = await q.lease(second)
    assert again is not None and again.id == job.id and again.attempts == 2 and again.worker == second
    assert not await q.renew(job.id, first)
    assert not await q.complete(job, first)
    assert await q.fail(job.id, first, "boom", retry=True) == LOST
    assert await q.complete(job, second)


async def test_renewed_lease_is_not_taken_over(catalog: Catalog) -> None:
    clock = Clock()
    q = JobQueue(catalog, lease_s=10, clock=clock)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1")
    assert (await q.lease("otherhost:1:a")).id == job.id  # type: ignore[union-attr]
    for _ in range(5):  # 40 s of work, renewed every 8 s
        clock.now += 8
        assert await q.renew(job.id, "otherhost:1:a")
        assert await q.lease("otherhost:2:b") is None
    got = await q.get(job.id)
    assert got is not None and got.lease_until == clock.now + 10 and got.attempts == 1


async def test_job_that_keeps_crashing_is_dead_lettered_with_a_reason(catalog: Catalog) -> None:
    clock = Clock()
    q = JobQueue(catalog, lease_s=5, max_attempts=2, clock=clock)
    sc = Scope("slack", "T", "C")
    await catalog.add_video(sc, "v1", "https://videos.example/1", "", "one")
    job = await q.enqueue(sc, "v1", "https://videos.example/1")
    for i in range(2):
        assert await q.lease(f"otherhost:{i}:x") is not None
        clock.now += 6  # the worker "crashed": no renewal
    assert await q.lease("otherhost:9:x") is None  # out of attempts: not leased a third time
    dead = await q.reap()
    assert [d.id for d in dead] == [job.id] and dead[0].status == DEAD
    assert "tried to index this video 2 times" in dead[0].error
    video = await catalog.video(sc, "v1")
    assert video is not None and video.status == "failed" and video.error == dead[0].error


async def test_released_job_goes_back_at_once_without_an_attempt(catalog: Catalog) -> None:
    q = JobQueue(catalog, lease_s=3600)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1")
    assert (await q.lease("otherhost:1:a")).attempts == 1  # type: ignore[union-attr]
    assert not await q.release(job.id, "otherhost:2:b")  # not its job
    assert await q.release(job.id, "otherhost:1:a")
    again = await q.lease("otherhost:2:b")
    assert again is not None and again.id == job.id and again.attempts == 1


async def test_a_lease_cancelled_anywhere_leaves_the_catalog_writable(catalog: Catalog, database_url: str,
                                                                     tmp_path: Path) -> None:
    """A stopping worker cancels its idle loop wherever it is, inside the lease's transaction too
    (CI once caught it awaiting SQLite's BEGIN: the statement ran on aiosqlite's thread, nothing
    rolled it back, and the other worker's next write waited out the busy timeout and failed)."""
    other = await open_catalog(Settings(data_dir=tmp_path / "data", database_url=database_url))
    try:
        mine, theirs = JobQueue(catalog), JobQueue(other)
        sc = Scope("slack", "T", "C")
        for i in range(60):
            task = asyncio.create_task(mine.lease(f"thishost:1:{i}"))
            for _ in range(i % 6):  # cancelled after 0..5 turns of the loop: before, in and after BEGIN
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.wait_for(theirs.enqueue(sc, f"v{i}", f"https://videos.example/{i}"), 10)
            await asyncio.wait_for(mine.enqueue(sc, f"w{i}", f"https://videos.example/w{i}"), 10)
    finally:
        await other.close()


async def test_attachment_jobs_keep_a_flag_not_their_headers(catalog: Catalog) -> None:
    q = JobQueue(catalog)
    sc = Scope("slack", "T", "C")
    plain = await q.enqueue(sc, "v1", "https://videos.example/1", requested_by="U1")
    upload = await q.enqueue(sc, "v2", "https://files.slack.example/2", needs_auth=True, requested_by="U2")
    got = {j.id: j for j in await q.active(sc)}
    assert (got[plain.id].needs_auth, got[plain.id].requested_by, got[plain.id].status) == (False, "U1", QUEUED)
    assert (got[upload.id].needs_auth, got[upload.id].requested_by) == (True, "U2")
    assert await q.count_active(sc) == 2 and await q.count_active(requested_by="U2") == 1


async def test_restart_requeues_jobs_of_a_dead_local_worker_at_once(catalog: Catalog) -> None:
    clock = Clock()
    q = JobQueue(catalog, lease_s=3600, clock=clock)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()  # a pid that has exited
    dead_worker = new_worker_id().split(":")[0] + f":{proc.pid}:gone"
    await q.lease(dead_worker)
    live_remote = await q.enqueue(Scope("slack", "T", "C"), "v2", "https://videos.example/2")
    await q.lease("elsewhere:123:abc")  # another host's worker: its lease is respected
    requeued, dead = await q.recover(new_worker_id())
    assert [j.id for j in requeued] == [job.id] and dead == []
    remote = await q.get(live_remote.id)
    assert remote is not None and remote.status == RUNNING and remote.lease_until == clock.now + 3600


async def test_another_hosts_dead_worker_is_detected_by_its_lease(catalog: Catalog) -> None:
    clock = Clock()
    q = JobQueue(catalog, lease_s=60, clock=clock)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1")
    await q.lease("elsewhere:123:abc")
    assert await q.recover(new_worker_id()) == ([], [])  # no PID to check on another host
    assert (await q.live_videos(new_worker_id())) == {("slack:T:C", "v1")}
    clock.now += 61  # it stopped renewing
    assert await q.live_videos(new_worker_id()) == set()
    taken = await q.lease(new_worker_id())
    assert taken is not None and taken.id == job.id and taken.attempts == 2


async def test_renewal_fenced_by_the_attempt_fails_once_a_later_attempt_holds_the_job(catalog: Catalog) -> None:
    """Two slots of one process share a worker id: the attempt number tells their leases apart."""
    clock = Clock()
    q = JobQueue(catalog, lease_s=10, clock=clock)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1")
    first = await q.lease("host:1:a")
    assert first is not None and await q.renew(job.id, "host:1:a", attempt=first.attempts)
    clock.now += 11  # its lease ran out; the same process leases the job again
    second = await q.lease("host:1:a")
    assert second is not None and second.attempts == first.attempts + 1
    assert await q.renew(job.id, "host:1:a")  # by worker alone, the old attempt would pass
    assert not await q.renew(job.id, "host:1:a", attempt=first.attempts)
    assert await q.renew(job.id, "host:1:a", attempt=second.attempts)


async def test_an_attempt_whose_lease_was_taken_over_stores_nothing(rel_settings, models) -> None:
    from core.jobs.lease import FencedStore, Lease, LeaseLost
    from core.models import Segment

    clock = Clock()
    async with Service.open(rel_settings, models=models, chat=None) as svc:  # no worker of its own
        q = JobQueue(svc.catalog, lease_s=10, clock=clock)
        sc = console("fenced")
        await svc.catalog.add_video(sc, "v1", "/v1.mp4", "", "one")
        await q.enqueue(sc, "v1", "/v1.mp4")
        mine = await q.lease("host:1:a")
        assert mine is not None
        store = FencedStore(svc.store(sc), Lease(q, mine, "host:1:a"))
        clock.now += 11
        assert await q.lease("host:2:b") is not None  # the lease ran out and another worker took the job
        seg, dim = Segment(0.0, 5.0, "magma rises"), int(svc.models.text.dim)
        with pytest.raises(LeaseLost):
            await store.put_text("v1", [seg], np.ones((1, dim), np.float32), [seg], [seg], np.ones((1, dim), np.float32))
        with pytest.raises(LeaseLost):  # and every later write, without asking again
            await store.update_video("v1", title="two")
        counts = await svc.catalog.counts(sc, "v1")
        video = await svc.video(sc, "v1")
        vs = svc.vectors
        vectors = await asyncio.get_running_loop().run_in_executor(vs.executor, vs.count, vs.text, sc.partition)
    assert counts == {"videos": 1, "jobs": 1, "segments": 0, "units": 0, "frames": 0, "summaries": 0, "media": 0}
    assert video is not None and video.title == "one" and vectors == 0

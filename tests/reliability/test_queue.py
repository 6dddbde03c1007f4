"""The durable queue: two workers on one catalog never run a job twice (several processes racing
on real SQLite, and two services ingesting for real), an expired lease is taken over and the old
worker can no longer finish the job, and a job that crashes its worker every time is dead-lettered."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from core.jobs import DEAD, LOST, JobQueue, new_worker_id
from core.models import Scope
from core.service import JobEvent, Service
from core.store import Catalog
from tests.reliability.conftest import console

REPO = Path(__file__).resolve().parents[2]
RACER = """
import asyncio, json, sys
from core.jobs import JobQueue, new_worker_id
from core.store import Catalog
async def main():
    cat = await Catalog.open(__import__('pathlib').Path(sys.argv[1]))
    q, me, got = JobQueue(cat), new_worker_id(), []
    while (job := await q.lease(me)) is not None:
        got.append(job.id)
        assert await q.complete(job, me)
    print(json.dumps(got))
    await cat.close()
asyncio.run(main())
"""


async def test_processes_racing_on_one_catalog_never_take_a_job_twice(tmp_path: Path) -> None:
    cat = await Catalog.open(tmp_path / "catalog.db")
    q = JobQueue(cat)
    sc = Scope("slack", "T", "C")
    ids = {(await q.enqueue(sc, f"v{i}", f"https://videos.example/{i}", None)).id for i in range(150)}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", RACER, str(tmp_path / "catalog.db"),
                                                  stdout=asyncio.subprocess.PIPE, env=env) for _ in range(3)]
    outs = [json.loads((await p.communicate())[0]) for p in procs]
    taken = Counter(j for out in outs for j in out)
    assert set(taken) == ids and max(taken.values()) == 1
    rows = await cat.rows("SELECT status, attempts FROM jobs")
    assert {(r["status"], r["attempts"]) for r in rows} == {("done", 1)}
    assert (await cat.rows("PRAGMA journal_mode"))[0][0] == "wal"
    assert (await cat.rows("PRAGMA busy_timeout"))[0][0] >= 5000
    await cat.close()


async def test_two_services_on_one_catalog_index_each_video_once(rel_settings, models, short_lectures) -> None:
    async with Service.open(rel_settings, models=models, chat=None) as a:
        b = Service(rel_settings, await Catalog.open(rel_settings.catalog_path), a.vectors, models, None)
        ready: Counter[str] = Counter()

        async def hook(e: JobEvent) -> None:
            if e.progress.stage.value == "ready":
                ready[e.job.id] += 1

        a.on_job_event(hook)
        b.on_job_event(hook)
        subs = [await a.submit(console(f"two-{n}"), str(p)) for n, p in list(short_lectures.items())[:3]]
        a.start_workers(1)
        b.start_workers(1)
        try:
            for s in subs:
                await asyncio.wait_for(a.wait(s.job.id), 180)
            rows = await a.catalog.rows("SELECT status, attempts FROM jobs")
        finally:
            await b.stop_workers()
            await b.catalog.close()
    assert {(r["status"], r["attempts"]) for r in rows} == {("done", 1)}
    assert ready == Counter({s.job.id: 1 for s in subs})


async def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(tmp_path: Path) -> None:
    cat = await Catalog.open(tmp_path / "catalog.db")
    q = JobQueue(cat, lease_s=0.2, max_attempts=3)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1", None)
    first, second = "otherhost:1:a", "otherhost:2:b"
    assert (await q.lease(first)).id == job.id  # type: ignore[union-attr]
    assert await q.lease(second) is None  # leased: nobody else gets it
    await asyncio.sleep(0.3)
    again = await q.lease(second)
    assert again is not None and again.id == job.id and again.attempts == 2
    assert not await q.renew(job.id, first)
    assert not await q.complete(job, first)
    assert await q.fail(job.id, first, "boom", retry=True) == LOST
    assert await q.complete(job, second)
    await cat.close()


async def test_job_that_keeps_crashing_is_dead_lettered_with_a_reason(tmp_path: Path) -> None:
    cat = await Catalog.open(tmp_path / "catalog.db")
    q = JobQueue(cat, lease_s=0.05, max_attempts=2)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1", None)
    for i in range(2):
        assert await q.lease(f"otherhost:{i}:x") is not None
        await asyncio.sleep(0.1)  # the worker "crashed": no renewal
    assert await q.lease("otherhost:9:x") is None  # out of attempts: not leased a third time
    dead = await q.reap()
    assert [d.id for d in dead] == [job.id] and dead[0].extra["status"] == DEAD
    assert "tried to index this video 2 times" in dead[0].error
    await cat.close()


async def test_restart_requeues_jobs_of_a_dead_local_worker_at_once(tmp_path: Path) -> None:
    cat = await Catalog.open(tmp_path / "catalog.db")
    q = JobQueue(cat, lease_s=3600)
    job = await q.enqueue(Scope("slack", "T", "C"), "v1", "https://videos.example/1", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()  # a pid that has exited
    dead_worker = new_worker_id().split(":")[0] + f":{proc.pid}:gone"
    await q.lease(dead_worker)
    live_remote = await q.enqueue(Scope("slack", "T", "C"), "v2", "https://videos.example/2", None)
    await q.lease("elsewhere:123:abc")  # another host's worker: its lease is respected
    requeued, dead = await q.recover(new_worker_id())
    assert [j.id for j in requeued] == [job.id] and dead == []
    assert (await q.get(live_remote.id)).extra["status"] == "running"  # type: ignore[union-attr]
    assert time.time() < (await cat.rows("SELECT lease_until FROM jobs WHERE id=?", (live_remote.id,)))[0][0]
    await cat.close()

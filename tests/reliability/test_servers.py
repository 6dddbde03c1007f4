"""PostgreSQL and Milvus servers that restart or go away, as an operator's weeks bring them (issue
23). A restart costs no question and no lease; a server that stays down is one sentence in the log,
naming it and its setting, and "the index is unavailable right now" in the channel, within
seconds; the bot answers again as soon as it is back; and an attempt that could not renew its
lease stops and stores nothing, so the video is indexed once.

The servers that go down are the test's own (`tests/reliability/servers.py`): the shared ones
serve every other test at once. A cluster of its own needs root (it belongs to `postgres`).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import UNAVAILABLE, Unavailable
from core.models import Answer, Scope
from core.service import Service
from tests.backends import fresh_database
from tests.reliability.conftest import console, two_workers
from tests.reliability.servers import REPO, LiteServer, PrivatePostgres, free_port, is_root

QUESTION = "Why does magma rise?"
root_only = pytest.mark.skipif(not is_root(), reason="a PostgreSQL cluster of the test's own needs root")


@pytest.fixture(scope="module")
def private_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    if not is_root():
        pytest.skip("a PostgreSQL cluster of the test's own needs root")
    pg = PrivatePostgres(tmp_path_factory.mktemp("pg"))
    pg.start()
    yield pg
    pg.destroy()


@pytest.fixture
def pg_url(private_pg: PrivatePostgres) -> Iterator[str]:
    with fresh_database(private_pg.url) as url:
        yield url


def pg_settings(tmp_path: Path, url: str, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url, clip_pretrained="random", ocr=False,
                    server_timeout_seconds=2.0, **kw)  # type: ignore[arg-type]


async def index(svc: Service, scope: Scope, video: Path) -> str:
    return (await svc.wait((await svc.submit(scope, str(video))).job.id)).id


async def vector_ids(svc: Service, scope: Scope) -> dict[str, list[str]]:
    vs = svc.vectors

    def read() -> dict[str, list[str]]:
        return {c: [r["id"] for r in vs.rows(c, scope.partition, "", ["id"])] for c in filter(None, (vs.text, vs.frames))}

    return await asyncio.get_running_loop().run_in_executor(vs.executor, read)


async def ask_until_answered(svc: Service, scope: Scope, within: float = 30.0) -> tuple[Answer, float]:
    """Ask until a question is answered (the server just came back); the answer and how long it took."""
    t0 = time.monotonic()
    while True:
        try:
            return await svc.ask(scope, QUESTION), time.monotonic() - t0
        except Unavailable:
            assert time.monotonic() - t0 < within, f"still unavailable after {within} s"
            await asyncio.sleep(0.2)


# ---- a restart ----------------------------------------------------------------------------------
@root_only
@pytest.mark.timeout(120)  # an ingest, a server taken away and back, the session's first models
async def test_questions_right_after_a_postgres_restart_are_answered(private_pg, pg_url, tmp_path, models,
                                                                     short_lectures) -> None:
    async with Service.open(pg_settings(tmp_path, pg_url, database_pool_size=4), models=models, chat=None) as svc:
        svc.start_workers(1)
        sc = console("restart")
        await index(svc, sc, short_lectures["volcano"])
        await svc.stop_workers()  # only questions use the pool from here on
        await asyncio.gather(*(svc.ask(sc, QUESTION) for _ in range(4)))  # the pool's connections all in use once
        await asyncio.to_thread(private_pg.restart)  # every one of them is dead now
        t0 = time.monotonic()
        answers = [await svc.ask(sc, QUESTION) for _ in range(6)]
        print(f"\nPG_RESTART first six questions answered in {time.monotonic() - t0:.3f} s")
    assert all(a.citations for a in answers)


@root_only
@pytest.mark.timeout(120)  # an ingest, a server taken away and back, the session's first models
async def test_a_lease_outlives_a_postgres_restart_and_the_video_is_indexed_once(private_pg, pg_url, tmp_path,
                                                                                 models, short_lectures) -> None:
    """The renewal of the running job's lease meets the restart; the job is not taken over by the
    other worker waiting beside it, and the video is stored once."""
    settings = pg_settings(tmp_path, pg_url, job_lease_seconds=2.0)
    async with two_workers(settings, models, slow_s=5.0) as (a, b, slow):
        sc = console("lease")
        sub = await a.submit(sc, str(short_lectures["volcano"]))
        a.start_workers(1)
        assert await asyncio.to_thread(slow.started.wait, 60)
        b.start_workers(1)  # takes the job over if the lease is lost
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_pg.restart)
        await asyncio.wait_for(a.wait(sub.job.id), 60)
        job = await a.queue.get(sub.job.id)
        ids = await vector_ids(a, sc)
    assert job is not None and (job.status, job.attempts, job.worker) == ("done", 1, a.worker_id)
    for coll, got in ids.items():
        assert got and len(got) == len(set(got)), (coll, sorted(got))


@root_only
@pytest.mark.timeout(120)  # an ingest, a server taken away and back, the session's first models
async def test_an_attempt_that_cannot_renew_its_lease_stops_and_stores_nothing(private_pg, pg_url, tmp_path, models,
                                                                               short_lectures, caplog) -> None:
    """PostgreSQL is away for longer than the lease while the video is transcribed: that attempt
    stops; once the server is back another worker takes the job and the video is stored once,
    without blaming it."""
    caplog.set_level(logging.INFO)
    settings = pg_settings(tmp_path, pg_url, job_lease_seconds=3.0)
    async with two_workers(settings, models, slow_s=8.0) as (a, b, slow):
        sc = console("lost")
        sub = await a.submit(sc, str(short_lectures["volcano"]))
        a.start_workers(1)
        assert await asyncio.to_thread(slow.started.wait, 60)
        await asyncio.to_thread(private_pg.stop)
        for _ in range(150):  # the attempt gives up within the lease (3 s) and one renewal's wait
            if "could not renew the lease" in caplog.text:
                break
            await asyncio.sleep(0.1)
        stopped = "could not renew the lease" in caplog.text
        # `a` goes away once its attempt gave up, so that "another worker" is `b` (otherwise `a`'s
        # loop, retrying the catalog, may lease the job again first on a loaded machine)
        await a.stop_workers()
        await asyncio.to_thread(private_pg.resume)
        b.start_workers(1)
        video = await asyncio.wait_for(b.wait(sub.job.id), 90)
        job = await b.queue.get(sub.job.id)
        ids = await vector_ids(a, sc)
    assert stopped, caplog.text[-3000:]
    assert job is not None and job.status == "done" and job.error == "" and video.error == ""
    assert job.worker == b.worker_id and job.attempts == 2
    for coll, got in ids.items():
        assert got and len(got) == len(set(got)), (coll, sorted(got))


# ---- a server that stays down -------------------------------------------------------------------
async def answered_unavailable(svc: Service, sc: Scope, label: str) -> None:
    """Three questions while a server is down: each told the index is unavailable; how long each took."""
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as e:
            await svc.ask(sc, QUESTION)
        took.append(time.monotonic() - t0)
        assert e.value.message == UNAVAILABLE
    print(f"\n{label} questions answered 'unavailable' in {', '.join(f'{t:.2f}' for t in took)} s")


@root_only
@pytest.mark.timeout(120)  # an ingest, a server taken away and back, the session's first models
async def test_chat_answers_unavailable_while_postgres_is_down_and_again_once_it_is_back(
        private_pg, pg_url, tmp_path, models, short_lectures, caplog) -> None:
    async with Service.open(pg_settings(tmp_path, pg_url), models=models, chat=None) as svc:
        svc.start_workers(1)
        sc = console("down")
        await index(svc, sc, short_lectures["volcano"])
        await svc.stop_workers()
        caplog.clear()
        await asyncio.to_thread(private_pg.stop)
        try:
            await answered_unavailable(svc, sc, "PG_DOWN")
        finally:
            await asyncio.to_thread(private_pg.resume)
        answer = await svc.ask(sc, QUESTION)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1, said  # one sentence for the outage, not one per question
    assert "DATABASE_URL" in said[0] and "unreachable" in said[0] and f":{private_pg.port}/" in said[0]
    assert answer.citations


@pytest.mark.timeout(120)  # an ingest, a server taken away and back, the session's first models
async def test_chat_answers_unavailable_while_milvus_is_down_and_again_once_it_is_back(tmp_path, models,
                                                                                       short_lectures, caplog) -> None:
    """Milvus Lite's own server (`milvus-lite server`) plays the Milvus server that goes away: it
    speaks the same protocol and starts in a second."""
    server = LiteServer(tmp_path / "milvus")
    await asyncio.to_thread(server.start)
    try:
        settings = Settings(data_dir=tmp_path / "data", milvus_uri=server.uri, clip_pretrained="random", ocr=False,
                            server_timeout_seconds=2.0)
        async with Service.open(settings, models=models, chat=None) as svc:
            svc.start_workers(1)
            sc = console("milvus-down")
            await index(svc, sc, short_lectures["volcano"])
            await svc.stop_workers()
            caplog.clear()
            await asyncio.to_thread(server.kill)
            await answered_unavailable(svc, sc, "MILVUS_DOWN")
            await asyncio.to_thread(server.start)
            answer, back = await ask_until_answered(svc, sc)
            print(f"MILVUS_BACK questions answered again {back:.2f} s after the server listens")
    finally:
        await asyncio.to_thread(server.kill)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1, said
    assert "MILVUS_URI" in said[0] and "unreachable" in said[0] and server.uri in said[0]
    assert answer.citations


# ---- the command line, told which server is missing --------------------------------------------
CLI = [sys.executable, "-m", "adapters.console"]


@pytest.mark.parametrize(("setting", "value", "server"), [
    ("DATABASE_URL", "postgresql://vidrag:secret@127.0.0.1:{port}/vidrag", "PostgreSQL at 127.0.0.1:{port}/vidrag"),
    ("MILVUS_URI", "http://127.0.0.1:{port}", "The Milvus server at http://127.0.0.1:{port}"),
], ids=["postgres", "milvus"])
def test_ask_with_a_server_down_says_which_in_one_sentence(tmp_path: Path, setting: str, value: str,
                                                           server: str) -> None:
    port = free_port()  # nothing listens there
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "DATA_DIR": str(tmp_path / "data"),
           setting: value.format(port=port)}
    t0 = time.monotonic()
    p = subprocess.run([*CLI, "ask", "what is this?"], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=55, check=False)
    print(f"\n{setting} down: `vidrag ask` answered in {time.monotonic() - t0:.1f} s")
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith(server.format(port=port)) and f"({setting}) is unreachable" in lines[0], lines[0]
    assert "secret" not in p.stderr and "Traceback" not in p.stderr


"""The shared catalog: PostgreSQL (`DATABASE_URL=postgresql://…`), for chat and worker processes on
several machines.

psycopg 3's async driver with a connection pool (autocommit; a transaction where several
statements must hold together). Leasing takes `SELECT … FOR UPDATE SKIP LOCKED`: workers racing
for jobs skip each other's locked rows instead of waiting on them. Queuing a job sends
`NOTIFY vidrag_jobs` in its transaction; every process that runs workers LISTENs on one
dedicated connection and wakes its workers at once instead of waiting for their next poll.

A server restart (`pg_ctl restart -m fast`, a minor upgrade) leaves every pooled connection dead:
the next statement on each failed with `AdminShutdown`, one failed question per stale connection.
So a statement that fails on its connection clears the pool's dead connections (`pool.check()`)
and runs once more, and a transaction starts on a connection checked with an empty statement (a
transaction cannot be replayed from here). psycopg's own `check=` callback was tried first: it
backs off between the dead connections it finds, 1 + 2 + 4 s, and a pool of 5 timed out.
A server that is down answers `Unavailable` within SERVER_TIMEOUT_SECONDS (the pool's wait was
30 s), logged once per outage, naming the server and DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core.errors import Outage, Unavailable
from core.models import Hit, Scope
from core.store.catalog.base import Catalog, Row
from core.store.catalog.migrations import POSTGRES

log = logging.getLogger(__name__)

CHANNEL = "vidrag_jobs"
MIGRATION_LOCK = 0x76696472  # pg_advisory_xact_lock key: one start-up migrates at a time


# SQLSTATEs of a connection that is gone: class 08 (connection exception), and the server shutting
# down or starting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now)
GONE = ("57P01", "57P02", "57P03")


def _pg(sql: str) -> str:
    """The shared dialect's `?` placeholders as psycopg's `%s` (no statement here holds a `%`)."""
    return sql.replace("?", "%s")


def connection_lost(e: BaseException) -> bool:
    """Did `e` come from the connection or the server going away, rather than from the statement?
    A client-side failure ("consuming input failed", "the connection is closed", a pool that found
    no connection in time) has no SQLSTATE."""
    if not isinstance(e, psycopg.OperationalError):
        return False
    state = e.sqlstate
    return state is None or state.startswith("08") or state in GONE


def server_name(url: str) -> str:
    """The server of `url` for the log, without user or password: `PostgreSQL at host:port/db`."""
    parts = urlsplit(url)
    return f"PostgreSQL at {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class _PgTx:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        cur = await self.conn.execute(_pg(sql), args)
        return list(await cur.fetchall()) if cur.description else []

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(_pg(sql), args)
        return cur.rowcount

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:  # psycopg pipelines executemany: one round trip for all rows, not one each
            async with self.conn.cursor() as cur:
                await cur.executemany(_pg(sql), rows)


class PostgresCatalog(Catalog):
    backend = "postgres"
    migrations = POSTGRES
    lock_clause = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, pool: AsyncConnectionPool, timeout: float = 5.0) -> None:
        self.url = url
        self.pool = pool
        self.timeout = timeout
        self.outage = Outage(log, server_name(url))
        self._listener: asyncio.Task[None] | None = None
        self._wakers: list[Callable[[], None]] = []

    @classmethod
    async def open(cls, url: str, pool_size: int = 10, wait_s: float = 5.0) -> PostgresCatalog:
        """Connect, or raise `Unavailable` within about `wait_s` seconds (SERVER_TIMEOUT_SECONDS)."""
        timeout = wait_s
        # The pool logs every failed connection attempt of an outage (several a second at first);
        # the outage is reported once, by `Outage`.
        logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
        # reconnect_timeout: the pool retries a failed connection with a growing delay (1, 2, 4, …
        # s) for this long, then gives up until a statement asks again. Its default of 5 minutes
        # meant that after a 10-second outage the next question waited for the pool's next try.
        pool = AsyncConnectionPool(url, min_size=1, max_size=max(2, pool_size), open=False, timeout=timeout,
                                   reconnect_timeout=timeout,
                                   kwargs={"autocommit": True, "row_factory": dict_row,
                                           "connect_timeout": max(1, round(timeout))})
        try:  # one connection by hand first: a refused one says so at once (the pool would wait)
            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=max(1, round(timeout)))
        except psycopg.OperationalError as e:
            raise Unavailable(server_name(url), "DATABASE_URL", first_line(e)) from e
        await probe.close()
        try:
            await pool.open(wait=True, timeout=timeout)
        except PoolTimeout as e:
            await pool.close()
            raise Unavailable(server_name(url), "DATABASE_URL", await cls._why(url, timeout, e)) from e
        return await cls(url, pool, timeout)._started()

    @staticmethod
    async def _why(url: str, wait_s: float, e: Exception) -> str:
        """Why the pool found no connection: one connection tried by hand says it (the pool's own
        error is only "pool initialization incomplete")."""
        try:
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=max(1, round(wait_s)))
        except Exception as why:  # noqa: BLE001 - its message is the answer
            return first_line(why)
        await conn.close()
        return first_line(e)

    def _wait(self) -> float:
        """How long a statement waits for a connection: SERVER_TIMEOUT_SECONDS, or one second while
        the server is known to be down (the pool tries to connect at once when asked, so a server
        that came back is found within that second)."""
        return min(1.0, self.timeout) if self.outage.down else self.timeout

    async def _unavailable(self, e: Exception) -> Unavailable:
        """The error for an outage, logged once: the first time with the server's own reason."""
        why = first_line(e) if self.outage.down else await self._why(self.url, self.timeout, e)
        err = Unavailable(server_name(self.url), "DATABASE_URL", why)
        self.outage.failed(err.detail)
        return err

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self.pool.close()

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await self._once_more(lambda tx: tx.fetch(sql, args))

    async def _run(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self._once_more(lambda tx: tx.run(sql, args))

    async def _once_more(self, statement: Callable[[_PgTx], Awaitable[Any]]) -> Any:
        """Run one statement; if its connection was dead, clear the pool's dead connections and run
        it once more. A single statement in autocommit is safe to repeat: a connection that died
        under it rolled it back (only one that died after the commit and before the reply would
        repeat it, and vidrag's statements set values rather than add to them, but for a turn)."""
        for attempt in (1, 2):
            try:
                async with self.pool.connection(self._wait()) as conn:
                    out = await statement(_PgTx(conn))
            except Exception as e:
                if not connection_lost(e):
                    raise
                if attempt == 2 or isinstance(e, PoolTimeout):  # the pool waited `timeout` already
                    raise await self._unavailable(e) from e
                await self.pool.check()  # a restart killed every idle connection, not only this one
                continue
            self.outage.ok()
            return out
        raise AssertionError("unreachable")

    async def _checked(self) -> psycopg.AsyncConnection[Any]:
        """A pooled connection that answered an empty statement (one round trip)."""
        for attempt in (1, 2):
            conn = await self.pool.getconn(self._wait())
            try:
                await conn.execute("")
                return conn
            except BaseException as e:  # a cancelled task's too: the pool would lose the connection
                await self.pool.putconn(conn)
                if attempt == 2 or not isinstance(e, Exception) or not connection_lost(e):
                    raise
                await self.pool.check()
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[_PgTx]:
        try:
            conn = await self._checked()
        except Exception as e:
            if connection_lost(e):
                raise await self._unavailable(e) from e
            raise
        try:
            async with conn.transaction():
                yield _PgTx(conn)
        except Exception as e:
            if connection_lost(e):  # rolled back with its connection: nothing of it was written
                raise await self._unavailable(e) from e
            raise
        finally:
            await self.pool.putconn(conn)
        self.outage.ok()

    async def _lock_migrations(self, tx: Any) -> None:
        await tx.run("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    async def _notify(self, tx: Any) -> None:
        await tx.run(f"NOTIFY {CHANNEL}")

    def listen(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="catalog-listen")

    async def _listen(self) -> None:
        """LISTEN on a connection of its own (outside the pool); reconnect after a failure, waking
        the workers then too (a notification may have been missed meanwhile)."""
        delay = 0.5
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                             connect_timeout=max(1, round(self.timeout)))
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if lost:
                        log.info("catalog: LISTEN connection back")
                    delay, lost = 0.5, False
                    self._wake()
                    async for _ in conn.notifies():
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the server restarted, the network dropped: retry
                # once per outage: its retries (every 10 s at most) would fill the log
                (log.debug if lost else log.warning)("catalog: LISTEN connection lost (%s); reconnecting",
                                                     first_line(e))
                lost = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _wake(self) -> None:
        for w in self._wakers:
            w()

    async def _count_matches(self, scope: Scope, terms: list[str], most: int) -> list[int]:
        rows = await self._fetch(" UNION ALL ".join(
            f"SELECT {i} AS i, COUNT(*) AS n FROM (SELECT 1 FROM segments WHERE scope=? "
            f"AND tsv @@ to_tsquery('simple', ?) LIMIT ?) m{i}" for i in range(len(terms))),
            [a for t in terms for a in (scope.key, t, most)])
        n = {int(r["i"]): int(r["n"]) for r in rows}
        return [n[i] for i in range(len(terms))]

    async def _lexical(self, scope: Scope, terms: list[str], limit: int,
                       video_id: str | None = None) -> list[Hit]:
        one = " AND video_id=?" if video_id is not None else ""
        rows = await self._fetch(
            'SELECT video_id, start, "end", kind, text, ts_rank(tsv, q) AS score '
            f"FROM segments, to_tsquery('simple', ?) q WHERE scope=? AND tsv @@ q{one} ORDER BY score DESC LIMIT ?",
            (" | ".join(terms), scope.key, *([video_id] if video_id is not None else []), limit))
        return [Hit(r["video_id"], float(r["start"]), float(r["end"]), r["text"], str(r["kind"]), float(r["score"]))
                for r in rows]

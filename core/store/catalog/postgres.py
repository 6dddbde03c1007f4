"""The shared catalog: PostgreSQL (`DATABASE_URL=postgresql://…`), for chat and worker processes on
several machines.

psycopg 3's async driver with a connection pool (autocommit; a transaction where several
statements must hold together). Leasing takes `SELECT … FOR UPDATE SKIP LOCKED`: workers racing
for jobs skip each other's locked rows instead of waiting on them. Queuing a job sends
`NOTIFY vidrag_jobs` in its transaction; every process that runs workers LISTENs on one
dedicated connection and wakes its workers at once instead of waiting for their next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.models import Kind, Scope
from core.store.catalog.base import Catalog, LexicalHit, Row
from core.store.catalog.migrations import POSTGRES

log = logging.getLogger(__name__)

CHANNEL = "vidrag_jobs"
MIGRATION_LOCK = 0x76696472  # pg_advisory_xact_lock key: one start-up migrates at a time


def _pg(sql: str) -> str:
    """The shared dialect's `?` placeholders as psycopg's `%s` (no statement here holds a `%`)."""
    return sql.replace("?", "%s")


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

    def __init__(self, url: str, pool: AsyncConnectionPool) -> None:
        self.url = url
        self.pool = pool
        self._listener: asyncio.Task[None] | None = None
        self._wakers: list[Callable[[], None]] = []

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> PostgresCatalog:
        pool = AsyncConnectionPool(url, min_size=1, max_size=max(2, pool_size), open=False,
                                   kwargs={"autocommit": True, "row_factory": dict_row})
        await pool.open(wait=True, timeout=30)
        return await cls(url, pool)._started()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self.pool.close()

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self.pool.connection() as conn:
            return await _PgTx(conn).fetch(sql, args)

    async def _run(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self.pool.connection() as conn:
            return await _PgTx(conn).run(sql, args)

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[_PgTx]:
        async with self.pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

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
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    self._wake()
                    async for _ in conn.notifies():
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the server restarted, the network dropped: retry
                log.warning("catalog: LISTEN connection lost (%s); reconnecting in %.1f s", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _wake(self) -> None:
        for w in self._wakers:
            w()

    async def _count_matches(self, scope: Scope, term: str, most: int) -> int:
        rows = await self._fetch(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM segments WHERE scope=? AND tsv @@ to_tsquery('simple', ?) "
            "LIMIT ?) m", (scope.key, term, most))
        return int(rows[0]["n"])

    async def _lexical(self, scope: Scope, terms: list[str], limit: int) -> list[LexicalHit]:
        rows = await self._fetch(
            'SELECT video_id, start, "end", kind, text, ts_rank(tsv, q) AS score '
            "FROM segments, to_tsquery('simple', ?) q WHERE scope=? AND tsv @@ q ORDER BY score DESC LIMIT ?",
            (" | ".join(terms), scope.key, limit))
        return [(r["video_id"], float(r["start"]), float(r["end"]), Kind(r["kind"]), r["text"], float(r["score"]))
                for r in rows]

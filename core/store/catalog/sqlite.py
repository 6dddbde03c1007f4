"""The embedded catalog: one SQLite file (WAL, busy timeout) under DATA_DIR, the default.

One aiosqlite connection per process; writes go through one lock, and a transaction is
`BEGIN IMMEDIATE` (the write lock taken at once), so two processes never both lease one job.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite

from core.models import Hit, Scope
from core.store.catalog.base import Catalog, Row
from core.store.catalog.migrations import SQLITE


async def _fetch_all(db: aiosqlite.Connection, sql: str, args: Sequence[Any]) -> list[Row]:
    """A query run and read to its end in one call on aiosqlite's thread. Not `execute` then
    `fetchall`: a task cancelled between the two (every stopping worker's) left the statement
    open, its read snapshot with it, and the next `BEGIN IMMEDIATE` on this connection failed at once
    with "database is locked" once another process had written."""
    # sqlite3.Row reads like a Mapping (row["col"]), though typeshed does not declare it one
    return cast(list[Row], list(await db.execute_fetchall(sql, args)))


class _SqliteTx:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await _fetch_all(self.db, sql, args)

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = await self.db.execute(sql, args)
        return cur.rowcount

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self.db.executemany(sql, rows)


class SqliteCatalog(Catalog):
    backend = "sqlite"
    migrations = SQLITE

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self.lock = asyncio.Lock()  # one writer transaction at a time on this connection

    @classmethod
    async def open(cls, path: Path) -> SqliteCatalog:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), timeout=30, isolation_level=None)
        db.row_factory = aiosqlite.Row
        try:
            await db.execute("PRAGMA busy_timeout=30000")
            await db.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            await db.close()
            raise
        return await cls(db, path)._started()

    async def close(self) -> None:
        await self.db.close()

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await _fetch_all(self.db, sql, args)

    async def _run(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self.lock:
            cur = await self.db.execute(sql, args)
            return cur.rowcount

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[_SqliteTx]:
        async with self.lock:
            try:
                # inside the try: a task cancelled while awaiting BEGIN leaves the statement running
                # on aiosqlite's thread, and without the ROLLBACK below this connection would hold
                # the write lock until it closed (every other process's write "database is locked")
                await self.db.execute("BEGIN IMMEDIATE")
                yield _SqliteTx(self.db)
                await self.db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # a cancelled BEGIN or COMMIT may have run
                    await self.db.execute("ROLLBACK")
                raise

    @staticmethod
    def _in_scope(scope: Scope, expr: str) -> str:
        """An FTS5 query: `expr` within the channel. The channel is matched inside FTS5 (migration
        3: the index holds each segment's scope), so only this channel's matches are ranked; the
        join's `s.scope=?` stays the exact check (the anchored phrase also matches a longer key
        that starts with this one's words)."""
        if not re.search(r"\w", scope.key):
            return expr
        return f'scope : ^"{scope.key.replace(chr(34), chr(34) * 2)}" AND ({expr})'

    async def _count_matches(self, scope: Scope, terms: list[str], most: int) -> list[int]:
        rows = await self._fetch(" UNION ALL ".join(
            f"SELECT {i} AS i, COUNT(*) AS n FROM (SELECT 1 FROM segments_fts WHERE segments_fts MATCH ? LIMIT ?)"
            for i in range(len(terms))), [a for t in terms for a in (self._in_scope(scope, f'terms : "{t}"'), most)])
        n = {int(r["i"]): int(r["n"]) for r in rows}
        return [n[i] for i in range(len(terms))]

    async def _lexical(self, scope: Scope, terms: list[str], limit: int,
                       video_id: str | None = None) -> list[Hit]:
        match = self._in_scope(scope, "terms : (" + " OR ".join(f'"{t}"' for t in terms) + ")")
        one = " AND s.video_id=?" if video_id is not None else ""
        rows = await self._fetch(
            'SELECT s.video_id, s.start, s."end", s.kind, s.text, -bm25(segments_fts) AS score '
            "FROM segments_fts JOIN segments s ON s.id = segments_fts.rowid "
            f"WHERE segments_fts MATCH ? AND s.scope=?{one} ORDER BY bm25(segments_fts) LIMIT ?",
            (match, scope.key, *([video_id] if video_id is not None else []), limit))
        return [Hit(r["video_id"], float(r["start"]), float(r["end"]), r["text"], str(r["kind"]), float(r["score"]))
                for r in rows]

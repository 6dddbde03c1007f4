"""The SQLite catalog and `ScopedStore`, the only way in to a channel's vectors and rows.

`ScopedStore` always passes its own partition to `core.vectors.VectorStore` (re-exported here):
a search or delete without a scope cannot be written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import numpy as np

from .models import Frame, Job, Kind, Scope, Segment, Stage, Turn, Video, VideoStatus
from .vectors import VectorHit, VectorStore, _pymilvus_client  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS videos (
  id TEXT NOT NULL, scope TEXT NOT NULL, source TEXT NOT NULL, url TEXT NOT NULL DEFAULT '',
  title TEXT NOT NULL DEFAULT '', duration REAL NOT NULL DEFAULT 0, status TEXT NOT NULL,
  error TEXT NOT NULL DEFAULT '', created REAL NOT NULL, PRIMARY KEY (scope, id));
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, video_id TEXT NOT NULL, scope TEXT NOT NULL, source TEXT NOT NULL,
  headers TEXT NOT NULL DEFAULT '{}', stage TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL NOT NULL DEFAULT 0, worker TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '', requested_by TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
  updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created);
CREATE TABLE IF NOT EXISTS segments (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
  kind TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS segments_video ON segments(scope, video_id, start);
CREATE TABLE IF NOT EXISTS units (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
  kind TEXT NOT NULL, text TEXT NOT NULL, vec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS units_video ON units(scope, video_id, start);
CREATE TABLE IF NOT EXISTS frames (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, time REAL NOT NULL, path TEXT NOT NULL,
  ocr TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS frames_video ON frames(scope, video_id, time);
CREATE TABLE IF NOT EXISTS turns (
  scope TEXT NOT NULL, thread TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
  created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS turns_thread ON turns(scope, thread, created);
"""


class Catalog:
    """SQLite (WAL) catalog of videos, jobs, timed text, frames and thread turns."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.lock = asyncio.Lock()  # one writer transaction at a time on this connection

    @classmethod
    async def open(cls, path: Path) -> Catalog:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), timeout=30, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA busy_timeout=30000")
        await db.executescript(SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def write(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self.lock:
            cur = await self.db.execute(sql, args)
            return cur.rowcount

    async def rows(self, sql: str, args: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self.db.execute(sql, args) as cur:
            return list(await cur.fetchall())

    async def transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        async with self.lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    await self.db.execute(sql, args)
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise


def _video(row: aiosqlite.Row, scope: Scope) -> Video:
    return Video(id=row["id"], scope=scope, source=row["source"], title=row["title"],
                 duration=row["duration"], status=VideoStatus(row["status"]), url=row["url"],
                 error=row["error"])


def job_from_row(row: aiosqlite.Row, scope: Scope) -> Job:
    return Job(id=row["id"], video_id=row["video_id"], scope=scope, source=row["source"],
               stage=Stage(row["stage"]), attempts=row["attempts"], error=row["error"],
               extra={"status": row["status"], "headers": json.loads(row["headers"] or "{}"),
                      "requested_by": row["requested_by"]})


class ScopedStore:
    """Everything vidrag keeps about one channel. Every query below is bound to `self.scope`."""

    def __init__(self, scope: Scope, vectors: VectorStore, catalog: Catalog) -> None:
        self.scope = scope
        self.vectors = vectors
        self.catalog = catalog
        self.key = scope.key
        self.partition = scope.partition

    async def _milvus(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.vectors.executor, fn, *args)

    # catalog: videos
    async def videos(self) -> list[Video]:
        rows = await self.catalog.rows("SELECT * FROM videos WHERE scope=? ORDER BY created", (self.key,))
        return [_video(r, self.scope) for r in rows]

    async def video(self, video_id: str) -> Video | None:
        rows = await self.catalog.rows("SELECT * FROM videos WHERE scope=? AND id=?", (self.key, video_id))
        return _video(rows[0], self.scope) if rows else None

    async def add_video(self, video_id: str, source: str, url: str, title: str) -> None:
        await self.catalog.write(
            "INSERT OR IGNORE INTO videos (id, scope, source, url, title, status, created) "
            "VALUES (?,?,?,?,?,?,?)", (video_id, self.key, source, url, title, VideoStatus.QUEUED, time.time()))

    async def update_video(self, video_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        await self.catalog.write(f"UPDATE videos SET {cols} WHERE scope=? AND id=?",  # noqa: S608 - keys are ours
                                 (*fields.values(), self.key, video_id))

    async def titles(self) -> dict[str, Video]:
        return {v.id: v for v in await self.videos()}

    # vectors and timed text
    async def put_text(self, video_id: str, chunks: list[Segment], vectors: np.ndarray,
                       segments: list[Segment], units: list[Segment] = (), unit_vectors: np.ndarray | None = None) -> None:  # type: ignore[assignment]
        """Chunks go to Milvus (what a question searches); segments (the evidence quoted in answers)
        and units with their vectors (what a hit is narrowed to) to the catalog."""
        rows = [{"id": f"{video_id}:t{i}", "vector": v.tolist(), "video_id": video_id,
                 "start": c.start, "end": c.end, "kind": str(c.kind), "text": c.text[:8000]}
                for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))]
        await self._milvus(self.vectors.insert, self.vectors.text, self.partition, rows)
        uv = unit_vectors if unit_vectors is not None else np.zeros((0, 0), np.float32)
        await self.catalog.transaction(
            [(f"DELETE FROM {t} WHERE scope=? AND video_id=?", (self.key, video_id)) for t in ("segments", "units")]  # noqa: S608
            + [("INSERT INTO segments VALUES (?,?,?,?,?,?)",
                (self.key, video_id, s.start, s.end, str(s.kind), s.text)) for s in segments]
            + [("INSERT INTO units VALUES (?,?,?,?,?,?,?)",
                (self.key, video_id, u.start, u.end, str(u.kind), u.text, v.astype(np.float32).tobytes()))
               for u, v in zip(units, uv, strict=True)])

    async def units(self, video_id: str, start: float, end: float, kind: str) -> list[tuple[Segment, np.ndarray]]:
        """Units of `kind` lying within [start, end], each with its stored vector."""
        rows = await self.catalog.rows(
            "SELECT * FROM units WHERE scope=? AND video_id=? AND kind=? AND start>=? AND end<=? ORDER BY start",
            (self.key, video_id, kind, start - 0.01, end + 0.01))
        return [(Segment(r["start"], r["end"], r["text"], Kind(r["kind"])), np.frombuffer(r["vec"], np.float32))
                for r in rows]

    async def put_frames(self, video_id: str, frames: list[Frame], ocr: dict[float, str],
                         vectors: np.ndarray | None) -> None:
        if vectors is not None and self.vectors.frames:
            rows = [{"id": f"{video_id}:f{i}", "vector": v.tolist(), "video_id": video_id,
                     "start": f.time, "end": f.time, "kind": "frame", "path": f.path}
                    for i, (f, v) in enumerate(zip(frames, vectors, strict=True))]
            await self._milvus(self.vectors.insert, self.vectors.frames, self.partition, rows)
        await self.catalog.transaction(
            [("DELETE FROM frames WHERE scope=? AND video_id=?", (self.key, video_id))]
            + [("INSERT INTO frames VALUES (?,?,?,?,?)",
                (self.key, video_id, f.time, f.path, ocr.get(f.time, ""))) for f in frames])

    async def search_text(self, vector: np.ndarray, limit: int) -> list[VectorHit]:
        return await self._milvus(self.vectors.search, self.vectors.text, self.partition, vector, limit, "text")

    async def search_frames(self, vector: np.ndarray, limit: int) -> list[VectorHit]:
        if not self.vectors.frames:
            return []
        return await self._milvus(self.vectors.search, self.vectors.frames, self.partition, vector,
                                  limit, "path")

    async def segments(self, video_id: str, start: float, end: float) -> list[Segment]:
        rows = await self.catalog.rows(
            "SELECT * FROM segments WHERE scope=? AND video_id=? AND end>? AND start<? ORDER BY start",
            (self.key, video_id, start, end))
        return [Segment(r["start"], r["end"], r["text"], Kind(r["kind"])) for r in rows]

    async def frames(self, video_id: str) -> list[tuple[float, str, str]]:
        rows = await self.catalog.rows(
            "SELECT time, path, ocr FROM frames WHERE scope=? AND video_id=? ORDER BY time",
            (self.key, video_id))
        return [(r["time"], r["path"], r["ocr"]) for r in rows]

    async def drop_vectors(self, video_ids: Sequence[str]) -> None:
        for c in filter(None, (self.vectors.text, self.vectors.frames)):
            await self._milvus(self.vectors.delete, c, self.partition, list(video_ids))

    async def vector_video_ids(self) -> set[str]:
        ids: set[str] = set()
        for c in filter(None, (self.vectors.text, self.vectors.frames)):
            ids |= await self._milvus(self.vectors.video_ids, c, self.partition)
        return ids

    async def delete_video(self, video_id: str, keep_jobs: bool = False) -> None:
        """Vectors first, then rows: a crash in between leaves a catalog row the reconciler sees.
        `keep_jobs` keeps the job rows (a failed job's reason, for /status)."""
        await self.drop_vectors([video_id])
        tables = ("segments", "units", "frames") if keep_jobs else ("segments", "units", "frames", "jobs")
        await self.catalog.transaction([
            (f"DELETE FROM {t} WHERE scope=? AND video_id=?", (self.key, video_id))  # noqa: S608
            for t in tables] + [
            ("DELETE FROM videos WHERE scope=? AND id=?", (self.key, video_id))])

    # threads
    async def turns(self, thread: str, limit: int = 6) -> list[Turn]:
        rows = await self.catalog.rows(
            "SELECT question, answer FROM turns WHERE scope=? AND thread=? ORDER BY created DESC LIMIT ?",
            (self.key, thread, limit))
        return [Turn(r["question"], r["answer"]) for r in reversed(rows)]

    async def add_turn(self, thread: str, question: str, answer: str) -> None:
        await self.catalog.write("INSERT INTO turns VALUES (?,?,?,?,?)",
                                 (self.key, thread, question, answer, time.time()))

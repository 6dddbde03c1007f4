"""A channel's videos and what each holds in the catalog: the `videos` row, its timed text
(segments, and units with their vectors), its frames (with their JPEG bytes), the channel's thread
turns, and deleting a video or a whole channel from every table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.models import FRAME, Hit, Kind, Scope, Segment, Turn, Video, VideoStatus
from core.store.catalog.sql import Primitives, Row, Tx
from core.text.words import terms

VIDEO_FIELDS = frozenset({"status", "title", "duration", "url", "error", "language", "indexed_to"})
TABLES = ("videos", "jobs", "segments", "units", "frames", "turns", "summaries", "media")  # every table with a scope
# Rows of one read of a list that grows with use (a channel's videos): a long list is read a page
# at a time, so other channels' queries run between the pages instead of waiting behind one long
# read (SQLite has one connection per process).
PAGE = 500
# Reads of one statement (`units_within`): a UNION ALL of this many bounded reads at most, far
# under SQLite's 500 terms of a compound SELECT.
READS_PER_STATEMENT = 64
_KINDS = {str(k): k for k in Kind}  # a dict lookup: Kind(...) per row cost more than the rest of the row


def _limit(limit: int | None) -> str:
    """A LIMIT clause (an int, never text from outside), or none."""
    return "" if limit is None else f" LIMIT {int(limit)}"


def video_from(row: Row, scope: Scope) -> Video:
    return Video(id=row["id"], scope=scope, source=row["source"], title=row["title"],
                 duration=float(row["duration"]), status=VideoStatus(row["status"]), url=row["url"],
                 error=row["error"], language=row["language"], requested_by=row["requested_by"],
                 created=float(row["created"]), indexed_to=float(row["indexed_to"]))


async def insert_text(tx: Tx, scope: Scope, video_id: str, segments: Sequence[Segment], units: Sequence[Segment],
                      unit_vectors: np.ndarray, language: str) -> None:
    """Insert segments (their full-text `terms` stemmed in `language`) and units with their vectors,
    in `tx`: a whole video's (`put_text`) or one window's (`put_window`). One executemany per table,
    not one statement per row: a 10-minute lecture has ~300 units, and a statement each cost a round
    trip to PostgreSQL (or a hop to aiosqlite's thread); bench/scale.py loads 6,000 videos this way."""
    await tx.many('INSERT INTO segments (scope, video_id, start, "end", kind, text, terms) VALUES (?,?,?,?,?,?,?)',
                  [(scope.key, video_id, s.start, s.end, str(s.kind), s.text, terms(s.text, language)) for s in segments])
    await tx.many('INSERT INTO units (scope, video_id, start, "end", kind, text, vec) VALUES (?,?,?,?,?,?,?)',
                  [(scope.key, video_id, u.start, u.end, str(u.kind), u.text, np.asarray(v, np.float32).tobytes())
                   for u, v in zip(units, unit_vectors, strict=True)])


class VideoRows(Primitives):
    """The SQL of videos, timed text, frames, turns and deleting, mixed into `Catalog`."""

    # ---- videos ---------------------------------------------------------------------------------
    async def videos(self, scope: Scope, limit: int | None = None) -> list[Video]:
        """The channel's videos, oldest first (the first `limit` of them), read PAGE rows at a time."""
        out: list[Video] = []
        after: tuple[float, str] | None = None
        while limit is None or len(out) < limit:
            n = PAGE if limit is None else min(PAGE, limit - len(out))
            if after is None:
                rows = await self._fetch("SELECT * FROM videos WHERE scope=? ORDER BY created, id LIMIT ?",
                                         (scope.key, n))
            else:
                rows = await self._fetch(
                    "SELECT * FROM videos WHERE scope=? AND (created>? OR (created=? AND id>?)) "
                    "ORDER BY created, id LIMIT ?", (scope.key, after[0], after[0], after[1], n))
            out += [video_from(r, scope) for r in rows]
            if len(rows) < n:
                break
            after = (float(rows[-1]["created"]), rows[-1]["id"])
        return out

    async def count_videos(self, scope: Scope, status: VideoStatus | None = None) -> int:
        sql, args = "SELECT COUNT(*) AS n FROM videos WHERE scope=?", [scope.key]
        if status is not None:
            sql += " AND status=?"
            args.append(status.value)
        return int((await self._fetch(sql, args))[0]["n"])

    async def video(self, scope: Scope, video_id: str) -> Video | None:
        rows = await self._fetch("SELECT * FROM videos WHERE scope=? AND id=?", (scope.key, video_id))
        return video_from(rows[0], scope) if rows else None

    async def videos_with_prefix(self, scope: Scope, prefix: str, limit: int = 2) -> list[Video]:
        """The channel's videos whose id starts with `prefix` (at most `limit`)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._fetch("SELECT * FROM videos WHERE scope=? AND id LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
                                 (scope.key, pattern, limit))
        return [video_from(r, scope) for r in rows]

    async def add_video(self, scope: Scope, video_id: str, source: str, url: str, title: str,
                        requested_by: str = "") -> None:
        """File a video (nothing if the channel has it already: it keeps who posted it first). Who
        posted it is written only when someone did, so that a catalog at a schema from before the
        column (the migration tests build one) takes the operator's videos as before."""
        async with self._tx() as tx:
            n = await tx.run("INSERT INTO videos (id, scope, source, url, title, status, created) VALUES (?,?,?,?,?,?,?) "
                             "ON CONFLICT DO NOTHING",
                             (video_id, scope.key, source, url, title, VideoStatus.QUEUED, time.time()))
            if n == 1 and requested_by:
                await tx.run("UPDATE videos SET requested_by=? WHERE scope=? AND id=?", (requested_by, scope.key, video_id))

    async def update_video(self, scope: Scope, video_id: str, **fields: Any) -> None:
        if not fields:
            return
        unknown = set(fields) - VIDEO_FIELDS
        if unknown:
            raise ValueError(f"not video fields: {sorted(unknown)}")
        cols = ", ".join(f"{k}=?" for k in fields)
        await self._run(f"UPDATE videos SET {cols} WHERE scope=? AND id=?",  # noqa: S608 - names checked above
                        (*(str(v) if isinstance(v, VideoStatus) else v for v in fields.values()), scope.key, video_id))

    async def scopes(self) -> list[str]:
        """Every scope key with a video or a job."""
        rows = await self._fetch("SELECT DISTINCT scope FROM videos UNION SELECT DISTINCT scope FROM jobs")
        return [r["scope"] for r in rows]

    # ---- timed text -----------------------------------------------------------------------------
    async def put_text(self, scope: Scope, video_id: str, segments: Sequence[Segment],
                       units: Sequence[Segment], unit_vectors: np.ndarray, language: str = "") -> None:
        """Replace a video's segments and units (with their vectors) in one transaction. Each
        segment's full-text `terms` are its words stemmed in `language`, the video's."""
        async with self._tx() as tx:
            for t in ("segments", "units"):
                await tx.run(f"DELETE FROM {t} WHERE scope=? AND video_id=?", (scope.key, video_id))  # noqa: S608
            await insert_text(tx, scope, video_id, segments, units, unit_vectors, language)

    async def segments(self, scope: Scope, video_id: str, start: float, end: float,
                       limit: int | None = None) -> list[Segment]:
        """Segments overlapping [start, end], in time order; the first `limit` of them if given."""
        rows = await self._fetch(
            'SELECT start, "end", kind, text FROM segments WHERE scope=? AND video_id=? AND "end">? AND start<? '
            "ORDER BY start" + _limit(limit), (scope.key, video_id, start, end))
        return [Segment(float(r["start"]), float(r["end"]), r["text"], Kind(r["kind"])) for r in rows]

    async def units(self, scope: Scope, video_id: str, start: float, end: float,
                    kind: str | None, limit: int | None = None) -> list[tuple[Segment, np.ndarray]]:
        """Units of `kind` (None: every kind) lying within [start, end], in time order, each with its
        vector; the first `limit` of them if given (what one question reads is bounded:
        core.answer.retrieve)."""
        sql = 'SELECT start, "end", kind, text, vec FROM units WHERE scope=? AND video_id=? AND start>=? AND "end"<=?'
        args: list[Any] = [scope.key, video_id, start - 0.01, end + 0.01]
        if kind is not None:
            sql += " AND kind=?"
            args.append(kind)
        rows = await self._fetch(sql + " ORDER BY start" + _limit(limit), args)
        return [(Segment(float(r["start"]), float(r["end"]), r["text"], _KINDS[r["kind"]]),
                 np.frombuffer(bytes(r["vec"]), np.float32)) for r in rows]

    async def units_within(self, scope: Scope, wanted: Sequence[tuple[str, float, float, str | None, int]]
                           ) -> list[list[tuple[Segment, np.ndarray]]]:
        """`units` for each (video id, start, end, kind or None, limit) of `wanted`, in one statement
        (a UNION ALL of one bounded read each, READS_PER_STATEMENT at a time) instead of one each:
        a question reads the units of ~16 candidates, and each statement is a round trip to
        PostgreSQL or a hop to aiosqlite's thread."""
        out: list[list[tuple[Segment, np.ndarray]]] = [[] for _ in wanted]
        cols = 'start, "end", kind, text, vec'
        for first in range(0, len(wanted), READS_PER_STATEMENT):
            parts, args = [], []
            for i, (video_id, start, end, kind, limit) in enumerate(wanted[first:first + READS_PER_STATEMENT], first):
                one = " AND kind=?" if kind is not None else ""
                parts.append(f"SELECT {int(i)} AS i, {cols} FROM (SELECT {cols} FROM units WHERE scope=? AND video_id=? "
                             f'AND start>=? AND "end"<=?{one} ORDER BY start{_limit(limit)}) AS w{int(i)}')
                args += [scope.key, video_id, start - 0.01, end + 0.01, *([kind] if kind is not None else [])]
            for r in await self._fetch(" UNION ALL ".join(parts), args):  # noqa: S608 - ints and column names only
                out[int(r["i"])].append((Segment(float(r["start"]), float(r["end"]), r["text"], _KINDS[r["kind"]]),
                                         np.frombuffer(bytes(r["vec"]), np.float32)))
        for found in out:
            found.sort(key=lambda sv: sv[0].start)  # each read's rows in time order, whatever the union's
        return out

    async def on_screen(self, scope: Scope, video_ids: Sequence[str], limit: int) -> list[list[Segment]]:
        """Each video's first `limit` on-screen text spans, in time order, in one statement. Read
        from `segments`, which holds them as `units` does but without a vector a row: an index scan
        of a video there reads ~5x fewer pages (what a video's cover is found from)."""
        out: list[list[Segment]] = [[] for _ in video_ids]
        for first in range(0, len(video_ids), READS_PER_STATEMENT):
            ids = video_ids[first:first + READS_PER_STATEMENT]
            sql = " UNION ALL ".join(
                f'SELECT {int(i)} AS i, start, "end", text FROM (SELECT start, "end", text FROM segments '
                f"WHERE scope=? AND video_id=? AND kind=? ORDER BY start{_limit(limit)}) AS w{int(i)}"
                for i in range(first, first + len(ids)))
            for r in await self._fetch(sql, [a for v in ids for a in (scope.key, v, str(Kind.OCR))]):  # noqa: S608
                out[int(r["i"])].append(Segment(float(r["start"]), float(r["end"]), r["text"], Kind.OCR))
        for found in out:
            found.sort(key=lambda s: s.start)
        return out

    # ---- frames ---------------------------------------------------------------------------------
    async def put_frames(self, scope: Scope, video_id: str,
                         frames: Sequence[tuple[Any, ...]]) -> None:
        """Replace a video's frames: (time, path where it was written, OCR text, JPEG bytes[, perceptual hash])."""
        async with self._tx() as tx:
            await tx.run("DELETE FROM frames WHERE scope=? AND video_id=?", (scope.key, video_id))
            await tx.many('INSERT INTO frames (scope, video_id, "time", path, ocr, jpeg, phash) VALUES (?,?,?,?,?,?,?)',
                          [(scope.key, video_id, *f[:4], f[4] if len(f) > 4 else None) for f in frames])

    async def frame_hashes(self, scope: Scope) -> list[tuple[str, float, int]]:
        """(video id, time, perceptual hash) of every hashed frame of `scope`."""
        rows = await self._fetch('SELECT video_id, "time", phash FROM frames WHERE scope=? AND phash IS NOT NULL',
                                 (scope.key,))
        return [(r["video_id"], float(r["time"]), int(r["phash"])) for r in rows]

    async def frames(self, scope: Scope, video_id: str) -> list[Hit]:
        """The video's frames in time order, each a `Hit` of kind "frame" (its time, the text read on
        it, and its `path`)."""
        rows = await self._fetch('SELECT "time", path, ocr FROM frames WHERE scope=? AND video_id=? ORDER BY "time"',
                                 (scope.key, video_id))
        return [Hit(video_id, float(r["time"]), float(r["time"]), r["ocr"], FRAME, path=r["path"]) for r in rows]

    async def frame_jpeg(self, scope: Scope, video_id: str, at: float) -> bytes | None:
        rows = await self._fetch(
            'SELECT jpeg FROM frames WHERE scope=? AND video_id=? AND "time">=? AND "time"<=? ORDER BY "time" LIMIT 1',
            (scope.key, video_id, at - 1e-6, at + 1e-6))
        return bytes(rows[0]["jpeg"]) if rows and rows[0]["jpeg"] is not None else None

    # ---- threads --------------------------------------------------------------------------------
    async def turns(self, scope: Scope, thread: str, limit: int = 6) -> list[Turn]:
        rows = await self._fetch(
            "SELECT question, answer FROM turns WHERE scope=? AND thread=? ORDER BY created DESC LIMIT ?",
            (scope.key, thread, limit))
        return [Turn(r["question"], r["answer"]) for r in reversed(rows)]

    async def add_turn(self, scope: Scope, thread: str, question: str, answer: str) -> None:
        await self._run("INSERT INTO turns (scope, thread, question, answer, created) VALUES (?,?,?,?,?)",
                        (scope.key, thread, question, answer, time.time()))

    # ---- deleting -------------------------------------------------------------------------------
    async def delete_video(self, scope: Scope, video_id: str, keep_jobs: bool = False) -> None:
        """A video's rows in every table (its jobs too, unless `keep_jobs`: a failed job's reason
        stays for /status), in one transaction. The video's row goes first: a write that checks it is
        there (`put_summary`, on PostgreSQL with a share lock) waits for this transaction, then finds
        it gone, instead of adding a row behind it."""
        async with self._tx() as tx:
            await tx.run("DELETE FROM videos WHERE scope=? AND id=?", (scope.key, video_id))
            for t in ("segments", "units", "frames", "summaries", "media") + (() if keep_jobs else ("jobs",)):
                await tx.run(f"DELETE FROM {t} WHERE scope=? AND video_id=?", (scope.key, video_id))  # noqa: S608

    async def wipe(self, scope: Scope) -> None:
        """Every row of `scope`, in every table, in one transaction."""
        async with self._tx() as tx:
            for t in (*TABLES, "moments"):  # a thread's moment outlives its video (`forget`), not its channel
                await tx.run(f"DELETE FROM {t} WHERE scope=?", (scope.key,))  # noqa: S608

    async def counts(self, scope: Scope, video_id: str | None = None) -> dict[str, int]:
        """Rows of `scope` (or of one of its videos) in each table: what a deletion must bring to 0."""
        out = {}
        for t in TABLES:
            col = "id" if t == "videos" else "video_id"
            if video_id is None:
                rows = await self._fetch(f"SELECT COUNT(*) AS n FROM {t} WHERE scope=?", (scope.key,))  # noqa: S608
            elif t == "turns":
                continue
            else:
                rows = await self._fetch(f"SELECT COUNT(*) AS n FROM {t} WHERE scope=? AND {col}=?",  # noqa: S608
                                         (scope.key, video_id))
            out[t] = int(rows[0]["n"])
        return out

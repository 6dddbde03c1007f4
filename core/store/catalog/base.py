"""The catalog interface and the SQL both backends share.

`Catalog` is everything vidrag keeps besides vectors: videos, jobs, timed text (segments, and units
with their vectors), frames (with their JPEG bytes, so any process can attach one), thread turns,
and a full-text index over the timed text. Its methods speak in vidrag's records (`Video`, `Job`,
`Segment`, `StoredFrame`); no SQL leaves this package.

The statements are written once, in the dialect SQLite and PostgreSQL share (`?` placeholders,
which the PostgreSQL backend turns into `%s`; `ON CONFLICT DO NOTHING`; `RETURNING`; quoted
`"end"` and `"time"`). A backend supplies four primitives (`_fetch`, `_run`, `_tx`, `close`), its
migrations, the full-text query, the leasing lock clause and, where it has one, a wake-up channel.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, Self

import numpy as np

from core.models import Job, JobStatus, Kind, Scope, Segment, Stage, StoredFrame, Turn, Video, VideoStatus
from core.store.catalog.migrations import Migration
from core.store.catalog.summaries import SummaryRows
from core.text.words import query_terms, terms

log = logging.getLogger(__name__)

Row = Mapping[str, Any]
LexicalHit = tuple[str, float, float, Kind, str, float]  # video_id, start, end, kind, text, score
RANK_CAP = 200  # a word in more segments of one channel is left out of the full-text search (`lexical`)
VIDEO_FIELDS = frozenset({"status", "title", "duration", "url", "error", "language"})
TABLES = ("videos", "jobs", "segments", "units", "frames", "turns", "summaries")  # every table with a scope
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
# Rows of one read of a list that grows with use (a channel's videos): a long list is read a page
# at a time, so other channels' queries run between the pages instead of waiting behind one long
# read (SQLite has one connection per process).
PAGE = 500


class Tx(Protocol):
    """One open transaction."""

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int: ...

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`sql` once per row of arguments, in one call to the driver (executemany)."""
        ...


def words(query: str, languages: Sequence[str] = ("en",), limit: int = 32) -> list[str]:
    """The distinct content words of a question, for a full-text query (OR of words: BM25/ts_rank
    weigh them; nothing of the user's text reaches the query syntax but word characters), each
    stemmed in every language of `languages` as the index's `terms` are (core.text.words). Stop
    words are left out: "what", "the", "of" matched nearly every segment of a channel, which
    were all ranked to keep 8."""
    return query_terms(query, tuple(languages), limit)


def _limit(limit: int | None) -> str:
    """A LIMIT clause (an int, never text from outside), or none."""
    return "" if limit is None else f" LIMIT {int(limit)}"


def video_from(row: Row, scope: Scope) -> Video:
    return Video(id=row["id"], scope=scope, source=row["source"], title=row["title"],
                 duration=float(row["duration"]), status=VideoStatus(row["status"]), url=row["url"],
                 error=row["error"], language=row["language"], requested_by=row["requested_by"])


def job_from(row: Row) -> Job:
    return Job(id=row["id"], video_id=row["video_id"], scope=Scope.parse(row["scope"]), source=row["source"],
               stage=Stage(row["stage"]), attempts=int(row["attempts"]), error=row["error"],
               status=JobStatus(row["status"]), needs_auth=bool(row["needs_auth"]),
               requested_by=row["requested_by"], worker=row["worker"], lease_until=float(row["lease_until"]))


class Catalog(SummaryRows, ABC):
    """One backend of the catalog. Open one with `core.store.catalog.open_catalog(settings)`."""

    backend: str = ""
    migrations: Sequence[Migration] = ()
    lock_clause = ""  # appended to the lease's SELECT (PostgreSQL: FOR UPDATE SKIP LOCKED)

    # ---- the backend's primitives ---------------------------------------------------------------
    @abstractmethod
    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    async def _run(self, sql: str, args: Sequence[Any] = ()) -> int: ...

    @abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction that takes the write lock at once (SQLite BEGIN IMMEDIATE)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def lexical(self, scope: Scope, query: str, limit: int, video_id: str | None = None) -> list[LexicalHit]:
        """Segments of `scope` matching words of `query`, best first: (video_id, start, end, kind,
        text, score), score higher is better (SQLite: -bm25; PostgreSQL: ts_rank).

        Only the words that at most RANK_CAP segments of the channel contain are searched. Ranking
        is what costs: every match is scored before the best few are kept, and in a channel of
        1,000 lectures a question's ordinary words matched tens of thousands of segments (this
        search alone: p50 140-250 ms on SQLite, 70-80 ms on PostgreSQL; with the cap 5-10 ms and
        ~40 ms, on a loaded 2-core machine; bench/scale.py). A word that common cannot single out a
        moment anyway (the dense search ranks those); the rare word spoken once, which the
        full-text search is there for, is always kept. Counting stops at RANK_CAP + 1.
        `video_id` keeps the matches of one video only."""
        rows = await self._fetch("SELECT DISTINCT language FROM videos WHERE scope=?", (scope.key,))
        languages = ("en", *sorted({r["language"] for r in rows} - {""}))  # the words as each video's stemmer has them
        wanted = [t for t in words(query, languages) if await self._count_matches(scope, t, RANK_CAP + 1) <= RANK_CAP]
        return await self._lexical(scope, wanted, limit, video_id) if wanted else []

    @abstractmethod
    async def _count_matches(self, scope: Scope, term: str, most: int) -> int:
        """Segments of `scope` whose text has `term`, counted up to `most`."""

    @abstractmethod
    async def _lexical(self, scope: Scope, terms: list[str], limit: int,
                       video_id: str | None = None) -> list[LexicalHit]:
        """`lexical` for these words (any of them), best first; of one video when `video_id` is given."""

    async def _notify(self, tx: Tx) -> None:  # noqa: B027 - a no-op where there is no channel
        """Wake the workers of other processes after this transaction commits (PostgreSQL)."""

    def listen(self, wake: Callable[[], None]) -> None:  # noqa: B027 - a no-op on SQLite
        """Call `wake` when any process queues a job. SQLite has no channel between processes: its
        workers rely on the in-process wake-up and their timed poll."""

    # ---- migrations -----------------------------------------------------------------------------
    async def _lock_migrations(self, tx: Tx) -> None:  # noqa: B027 - SQLite's BEGIN IMMEDIATE locks
        """Serialise concurrent start-ups (SQLite: BEGIN IMMEDIATE did already)."""

    async def _started(self) -> Self:
        """Migrate a catalog just opened, or close it if that fails: what each backend's `open`
        returns."""
        try:
            await self.migrate()
        except BaseException:
            await self.close()
            raise
        return self

    async def migrate(self) -> int:
        """Apply the migrations newer than the recorded version; returns the version now."""
        # Under the lock too: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against itself, and
        # processes starting at once on a fresh database failed with a duplicate pg_type row.
        async with self._tx() as tx:
            await self._lock_migrations(tx)
            await tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                         "applied DOUBLE PRECISION NOT NULL)")
        current = 0
        for version, statements in self.migrations:
            async with self._tx() as tx:
                await self._lock_migrations(tx)
                rows = await tx.fetch("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
                current = int(rows[0]["v"])
                if version <= current:
                    continue
                for step in statements:
                    await (tx.run(step) if isinstance(step, str) else step(tx))
                await tx.run("INSERT INTO schema_version (version, applied) VALUES (?, ?)", (version, time.time()))
                log.info("catalog (%s): schema migrated to version %d", self.backend, version)
                current = version
        return current

    async def schema_version(self) -> int:
        return int((await self._fetch("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version"))[0]["v"])

    async def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Run a read-only query as written (`?` placeholders): for tests and an operator's
        inspection only; vidrag itself calls the methods below."""
        return await self._fetch(sql, args)

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
            # One executemany per table, not one statement per row: a 10-minute lecture has ~300
            # units, and a statement each cost a round trip to PostgreSQL (or a hop to aiosqlite's
            # thread); bench/scale.py loads 6,000 videos this way.
            await tx.many('INSERT INTO segments (scope, video_id, start, "end", kind, text, terms) VALUES (?,?,?,?,?,?,?)',
                          [(scope.key, video_id, s.start, s.end, str(s.kind), s.text, terms(s.text, language))
                           for s in segments])
            await tx.many('INSERT INTO units (scope, video_id, start, "end", kind, text, vec) VALUES (?,?,?,?,?,?,?)',
                          [(scope.key, video_id, u.start, u.end, str(u.kind), u.text, np.asarray(v, np.float32).tobytes())
                           for u, v in zip(units, unit_vectors, strict=True)])

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
        return [(Segment(float(r["start"]), float(r["end"]), r["text"], Kind(r["kind"])),
                 np.frombuffer(bytes(r["vec"]), np.float32)) for r in rows]

    # ---- frames ---------------------------------------------------------------------------------
    async def put_frames(self, scope: Scope, video_id: str,
                         frames: Sequence[tuple[float, str, str, bytes | None]]) -> None:
        """Replace a video's frames: (time, path where it was written, OCR text, JPEG bytes)."""
        async with self._tx() as tx:
            await tx.run("DELETE FROM frames WHERE scope=? AND video_id=?", (scope.key, video_id))
            await tx.many('INSERT INTO frames (scope, video_id, "time", path, ocr, jpeg) VALUES (?,?,?,?,?,?)',
                          [(scope.key, video_id, t, path, ocr, jpeg) for t, path, ocr, jpeg in frames])

    async def frames(self, scope: Scope, video_id: str) -> list[StoredFrame]:
        rows = await self._fetch('SELECT "time", path, ocr FROM frames WHERE scope=? AND video_id=? ORDER BY "time"',
                                 (scope.key, video_id))
        return [StoredFrame(float(r["time"]), r["path"], r["ocr"]) for r in rows]

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
        stays for /status), in one transaction."""
        async with self._tx() as tx:
            for t in ("segments", "units", "frames", "summaries") + (() if keep_jobs else ("jobs",)):
                await tx.run(f"DELETE FROM {t} WHERE scope=? AND video_id=?", (scope.key, video_id))  # noqa: S608
            await tx.run("DELETE FROM videos WHERE scope=? AND id=?", (scope.key, video_id))

    async def wipe(self, scope: Scope) -> None:
        """Every row of `scope`, in every table, in one transaction."""
        async with self._tx() as tx:
            for t in TABLES:
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

    # ---- jobs -----------------------------------------------------------------------------------
    async def insert_job(self, job: Job, now: float) -> None:
        async with self._tx() as tx:
            await tx.run(
                "INSERT INTO jobs (id, video_id, scope, source, needs_auth, stage, status, requested_by, created, "
                "updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.video_id, job.scope.key, job.source, int(job.needs_auth), str(job.stage),
                 str(job.status), job.requested_by, now, now))
            await self._notify(tx)

    async def lease_job(self, worker: str, now: float, lease_s: float, max_attempts: int) -> Job | None:
        """Take the oldest queued job, or one whose lease expired with attempts left."""
        async with self._tx() as tx:
            rows = await tx.fetch(
                "SELECT id FROM jobs WHERE status=? OR (status=? AND lease_until<? AND attempts<?) "
                "ORDER BY created LIMIT 1" + self.lock_clause,
                (JobStatus.QUEUED.value, JobStatus.RUNNING.value, now, max_attempts))
            if not rows:
                return None
            got = await tx.fetch(
                "UPDATE jobs SET status=?, worker=?, lease_until=?, attempts=attempts+1, error='', updated=? "
                "WHERE id=? RETURNING *", (JobStatus.RUNNING.value, worker, now + lease_s, now, rows[0]["id"]))
        return job_from(got[0])

    async def release_job(self, job_id: str, worker: str, now: float) -> bool:
        """Hand a running job back to the queue, its attempt not counted (a worker shutting down)."""
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, attempts=attempts-1, lease_until=0, worker='', "
                             "updated=? WHERE id=? AND worker=? AND status=?",
                             (JobStatus.QUEUED.value, Stage.QUEUED.value, now, job_id, worker, JobStatus.RUNNING.value))
            if n == 1:
                await self._notify(tx)
        return n == 1

    async def renew_job(self, job_id: str, worker: str, until: float, now: float, attempt: int | None = None) -> bool:
        """Extend the lease of a running job of `worker` (of its `attempt`-th lease, when given: the
        fencing token, so an attempt whose lease another attempt of the same worker took over
        cannot renew it)."""
        fence, args = ("", ()) if attempt is None else (" AND attempts=?", (attempt,))
        n = await self._run("UPDATE jobs SET lease_until=?, updated=? WHERE id=? AND worker=? AND status=?" + fence,
                            (until, now, job_id, worker, JobStatus.RUNNING.value, *args))
        return n == 1

    async def set_job_stage(self, job_id: str, stage: Stage, now: float) -> None:
        await self._run("UPDATE jobs SET stage=?, updated=? WHERE id=?", (stage.value, now, job_id))

    async def finish_job(self, job_id: str, now: float) -> None:
        await self._run("UPDATE jobs SET status=?, stage=?, updated=? WHERE id=?",
                        (JobStatus.DONE.value, Stage.DONE.value, now, job_id))

    async def complete_job(self, job: Job, worker: str, now: float, video: Mapping[str, Any]) -> bool:
        """The job done and its video ready (with `video`'s fields) in one transaction; False, with
        nothing written, when the job is no longer `worker`'s."""
        unknown = set(video) - VIDEO_FIELDS
        if unknown:
            raise ValueError(f"not video fields: {sorted(unknown)}")
        cols = "".join(f", {k}=?" for k in video)
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, updated=? WHERE id=? AND worker=? AND status=?",
                             (JobStatus.DONE.value, Stage.DONE.value, now, job.id, worker, JobStatus.RUNNING.value))
            if n != 1:
                return False
            await tx.run(f"UPDATE videos SET status=?{cols} WHERE scope=? AND id=?",  # noqa: S608 - names checked
                         (VideoStatus.READY.value, *video.values(), job.scope.key, job.video_id))
        return True

    async def end_job(self, job_id: str, worker: str, status: JobStatus, stage: Stage, error: str,
                      now: float) -> bool:
        """Re-queue or dead-letter a running job of `worker`; False when it is no longer its."""
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, error=?, lease_until=0, updated=? "
                             "WHERE id=? AND worker=? AND status=?",
                             (status.value, stage.value, error, now, job_id, worker, JobStatus.RUNNING.value))
            if n == 1 and status == JobStatus.QUEUED:
                await self._notify(tx)
        return n == 1

    async def retire_job(self, job: Job, status: JobStatus, error: str, now: float) -> bool:
        """Re-queue or dead-letter a job whose worker crashed, if nobody moved it since `job` was
        read (same worker, same lease); a dead job fails its video in the same transaction."""
        stage = Stage.QUEUED if status == JobStatus.QUEUED else Stage.FAILED
        async with self._tx() as tx:
            n = await tx.run("UPDATE jobs SET status=?, stage=?, lease_until=0, error=?, updated=? "
                             "WHERE id=? AND status=? AND worker=? AND lease_until=?",
                             (status.value, stage.value, error, now, job.id, JobStatus.RUNNING.value, job.worker,
                              job.lease_until))
            if n == 1 and status == JobStatus.DEAD:
                await tx.run("UPDATE videos SET status=?, error=? WHERE scope=? AND id=?",
                             (VideoStatus.FAILED.value, error, job.scope.key, job.video_id))
            if n == 1 and status == JobStatus.QUEUED:
                await self._notify(tx)
        return n == 1

    async def job(self, job_id: str) -> Job | None:
        rows = await self._fetch("SELECT * FROM jobs WHERE id=?", (job_id,))
        return job_from(rows[0]) if rows else None

    async def running_jobs(self, lease_before: float | None = None, min_attempts: int = 0,
                           lease_from: float | None = None) -> list[Job]:
        """Running jobs, optionally only those whose lease ended before `lease_before` after at
        least `min_attempts`, or whose lease lasts until `lease_from` or later."""
        sql, args = "SELECT * FROM jobs WHERE status=? AND attempts>=?", [JobStatus.RUNNING.value, min_attempts]
        if lease_before is not None:
            sql += " AND lease_until<?"
            args.append(lease_before)
        if lease_from is not None:
            sql += " AND lease_until>=?"
            args.append(lease_from)
        return [job_from(r) for r in await self._fetch(sql + " ORDER BY created", args)]

    async def jobs(self, scope: Scope, video_id: str | None = None, active_only: bool = True) -> list[Job]:
        """The jobs of `scope` (of one video), oldest first; queued or running ones only by default."""
        sql, args = "SELECT * FROM jobs WHERE scope=?", [scope.key]
        if video_id is not None:
            sql += " AND video_id=?"
            args.append(video_id)
        if active_only:
            sql += " AND status IN (?,?)"
            args += [s.value for s in ACTIVE]
        return [job_from(r) for r in await self._fetch(sql + " ORDER BY created", args)]

    async def count_jobs(self, scope: Scope | None = None, requested_by: str | None = None) -> int:
        """Queued or running jobs, in `scope` and/or of one requester."""
        sql, args = "SELECT COUNT(*) AS n FROM jobs WHERE status IN (?,?)", [s.value for s in ACTIVE]
        if scope is not None:
            sql += " AND scope=?"
            args.append(scope.key)
        if requested_by:
            sql += " AND requested_by=?"
            args.append(requested_by)
        return int((await self._fetch(sql, args))[0]["n"])

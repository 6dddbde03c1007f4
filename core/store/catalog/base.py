"""The catalog interface and the SQL both backends share.

`Catalog` is everything vidrag keeps besides vectors: videos, jobs, timed text (segments, and units
with their vectors), frames (with their JPEG bytes, so any process can attach one), thread turns,
and a full-text index over the timed text. Its methods speak in vidrag's records (`Video`, `Job`,
`Segment`, `Hit`); no SQL leaves this package.

The statements are written once, in the dialect SQLite and PostgreSQL share (`?` placeholders,
which the PostgreSQL backend turns into `%s`; `ON CONFLICT DO NOTHING`; `RETURNING`; quoted
`"end"` and `"time"`). A backend supplies four primitives (`_fetch`, `_run`, `_tx`, `close`), its
migrations, the full-text query, the leasing lock clause and, where it has one, a wake-up channel.

The tables' SQL is mixed in by part: videos, timed text, frames, turns and deleting
(`videos.py`), the job queue (`jobs.py`), summaries (`summaries.py`); this module keeps the
full-text search and the migrations.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Self

from core.models import Hit, Scope
from core.store.catalog.jobs import JobRows
from core.store.catalog.media import MediaRows
from core.store.catalog.migrations import Migration
from core.store.catalog.sql import Row, Tx
from core.store.catalog.summaries import SummaryRows
from core.store.catalog.videos import VideoRows
from core.store.catalog.windows import WindowRows
from core.text.words import query_terms

__all__ = ["Catalog", "Row", "Tx", "words"]

log = logging.getLogger(__name__)

RANK_CAP = 200  # a word in more segments of one channel is left out of the full-text search (`lexical`)


def words(query: str, languages: Sequence[str] = ("en",), limit: int = 32) -> list[str]:
    """The distinct content words of a question, for a full-text query (OR of words: BM25/ts_rank
    weigh them; nothing of the user's text reaches the query syntax but word characters), each
    stemmed in every language of `languages` as the index's `terms` are (core.text.words). Stop
    words are left out: "what", "the", "of" matched nearly every segment of a channel, which
    were all ranked to keep 8."""
    return query_terms(query, tuple(languages), limit)


class Catalog(VideoRows, JobRows, SummaryRows, WindowRows, MediaRows):
    """One backend of the catalog. Open one with `core.store.catalog.open_catalog(settings)`."""

    migrations: Sequence[Migration] = ()

    @abstractmethod
    async def close(self) -> None: ...

    async def lexical(self, scope: Scope, query: str, limit: int, video_id: str | None = None) -> list[Hit]:
        """Segments of `scope` matching words of `query`, best first, each a `Hit` whose score is
        higher the better (SQLite: -bm25; PostgreSQL: ts_rank).

        Only the words that at most RANK_CAP segments of the channel contain are searched. Ranking
        is what costs: every match is scored before the best few are kept, and in a channel of
        1,000 lectures a question's ordinary words matched tens of thousands of segments (the cap
        makes this search an order of magnitude faster: bench/scale.py, docs/benchmarks.md "Design
        figures"). A word that common cannot single out a
        moment anyway (the dense search ranks those); the rare word spoken once, which the
        full-text search is there for, is always kept. Counting stops at RANK_CAP + 1.
        `video_id` keeps the matches of one video only."""
        rows = await self._fetch("SELECT DISTINCT language FROM videos WHERE scope=?", (scope.key,))
        languages = ("en", *sorted({r["language"] for r in rows} - {""}))  # the words as each video's stemmer has them
        terms = words(query, languages)
        counts = await self._count_matches(scope, terms, RANK_CAP + 1) if terms else []
        wanted = [t for t, n in zip(terms, counts, strict=True) if n <= RANK_CAP]
        return await self._lexical(scope, wanted, limit, video_id) if wanted else []

    @abstractmethod
    async def _count_matches(self, scope: Scope, terms: list[str], most: int) -> list[int]:
        """For each of `terms`, the segments of `scope` whose text has it, counted up to `most`: in
        one statement (a question has ~4 words, and a statement each cost a round trip)."""

    @abstractmethod
    async def _lexical(self, scope: Scope, terms: list[str], limit: int,
                       video_id: str | None = None) -> list[Hit]:
        """`lexical` for these words (any of them), best first; of one video when `video_id` is given."""

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

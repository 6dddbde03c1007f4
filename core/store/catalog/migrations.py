"""The catalog's schema, as numbered migrations per backend, applied in order at start-up.

Each migration is `(version, steps)`; `Catalog.migrate` runs the ones newer than the highest
row of `schema_version` in one transaction each, and records them there. A step is a statement,
or a coroutine function given the transaction where SQL cannot do the work (stemming the text
already stored in each video's language: `fill_terms`). Never edit a released
migration: add the next number. SQLite's version 1 is the schema from before versions existed
(`CREATE … IF NOT EXISTS`), so a catalog.db written by an earlier vidrag upgrades in place.

Column names `end` and `time` are quoted everywhere: `end` is reserved in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.store.phash import fill_phash
from core.text.words import terms

Step = str | Callable[[Any], Awaitable[None]]  # a statement, or a step in Python given the open transaction
Migration = tuple[int, tuple[Step, ...]]


async def _add_terms_sqlite(tx: Any) -> None:
    """The `terms` column, unless it is there already (SQLite has no ADD COLUMN IF NOT EXISTS):
    the migration may run again over a catalog that has it, as its steps all may."""
    if not any(c["name"] == "terms" for c in await tx.fetch("PRAGMA table_info(segments)")):
        await tx.run("ALTER TABLE segments ADD COLUMN terms TEXT NOT NULL DEFAULT ''")


async def fill_terms(tx: Any, batch: int = 5000) -> None:
    """Every stored segment's `terms`: its words stemmed in its video's language (core.text.words),
    `batch` segments at a time (a channel of 1,000 lectures holds ~300,000)."""
    last = -1
    while True:
        rows = await tx.fetch("SELECT s.id, s.text, COALESCE(v.language, '') AS language FROM segments s "
                              "LEFT JOIN videos v ON v.scope = s.scope AND v.id = s.video_id "
                              "WHERE s.id > ? ORDER BY s.id LIMIT ?", (last, batch))
        if not rows:
            return
        await tx.many("UPDATE segments SET terms=? WHERE id=?", [(terms(r["text"], r["language"]), r["id"]) for r in rows])
        last = rows[-1]["id"]


async def _add_requested_by_sqlite(tx: Any) -> None:
    """`videos.requested_by`, unless it is there already (as `_add_terms_sqlite`)."""
    if not any(c["name"] == "requested_by" for c in await tx.fetch("PRAGMA table_info(videos)")):
        await tx.run("ALTER TABLE videos ADD COLUMN requested_by TEXT NOT NULL DEFAULT ''")


async def _add_phash_sqlite(tx: Any) -> None:
    """`frames.phash`, unless it is there already (as `_add_terms_sqlite`)."""
    if not any(c["name"] == "phash" for c in await tx.fetch("PRAGMA table_info(frames)")):
        await tx.run("ALTER TABLE frames ADD COLUMN phash INTEGER")


async def _add_indexed_to_sqlite(tx: Any) -> None:
    """`videos.indexed_to`, unless it is there already (as `_add_terms_sqlite`)."""
    if not any(c["name"] == "indexed_to" for c in await tx.fetch("PRAGMA table_info(videos)")):
        await tx.run("ALTER TABLE videos ADD COLUMN indexed_to REAL NOT NULL DEFAULT 0")


# How far into each video its committed windows reach (core/ingest/pipeline.py commits a long
# video window by window): questions search that part while the rest is indexed, and a killed
# ingest resumes after it. A video indexed before the column is whole: its duration.
_INDEXED_TO = "UPDATE videos SET indexed_to = duration WHERE status = 'ready'"

# Who posted each video (the chat user id; "" for the operator's command line): `forget` is allowed
# to that person and to the channel's admins (core.service.Service.forget). Videos indexed before
# the column existed take the requester of their first job, which the jobs table kept; an index
# on (scope, created, id) serves the paged read of a channel's videos (Catalog.videos).
_BACKFILL = (
    """UPDATE videos SET requested_by = COALESCE((SELECT j.requested_by FROM jobs j
  WHERE j.scope = videos.scope AND j.video_id = videos.id AND j.requested_by <> ''
  ORDER BY j.created LIMIT 1), '')""",
    "CREATE INDEX IF NOT EXISTS videos_listed ON videos(scope, created, id)",
)

SQLITE: list[Migration] = [
    (1, (
        """CREATE TABLE IF NOT EXISTS videos (
  id TEXT NOT NULL, scope TEXT NOT NULL, source TEXT NOT NULL, url TEXT NOT NULL DEFAULT '',
  title TEXT NOT NULL DEFAULT '', duration REAL NOT NULL DEFAULT 0, status TEXT NOT NULL,
  error TEXT NOT NULL DEFAULT '', created REAL NOT NULL, PRIMARY KEY (scope, id))""",
        """CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, video_id TEXT NOT NULL, scope TEXT NOT NULL, source TEXT NOT NULL,
  headers TEXT NOT NULL DEFAULT '{}', stage TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL NOT NULL DEFAULT 0, worker TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '', requested_by TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
  updated REAL NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created)",
        """CREATE TABLE IF NOT EXISTS segments (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
  kind TEXT NOT NULL, text TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS segments_video ON segments(scope, video_id, start)",
        """CREATE TABLE IF NOT EXISTS units (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
  kind TEXT NOT NULL, text TEXT NOT NULL, vec BLOB NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS units_video ON units(scope, video_id, start)",
        """CREATE TABLE IF NOT EXISTS frames (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, "time" REAL NOT NULL, path TEXT NOT NULL,
  ocr TEXT NOT NULL DEFAULT '')""",
        """CREATE INDEX IF NOT EXISTS frames_video ON frames(scope, video_id, "time")""",
        """CREATE TABLE IF NOT EXISTS turns (
  scope TEXT NOT NULL, thread TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
  created REAL NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS turns_thread ON turns(scope, thread, created)",
    )),
    # Typed jobs (a flag instead of a JSON null), frames readable by every process (their JPEG in
    # the row), and a full-text index over the timed text. Segments get an explicit integer key:
    # the external-content FTS table points at it, and an implicit rowid may change on VACUUM.
    (2, (
        "ALTER TABLE jobs ADD COLUMN needs_auth INTEGER NOT NULL DEFAULT 0",
        "UPDATE jobs SET needs_auth = CASE WHEN headers = 'null' THEN 0 ELSE 1 END",
        "ALTER TABLE jobs DROP COLUMN headers",
        "CREATE INDEX jobs_scope ON jobs(scope, video_id)",
        "ALTER TABLE frames ADD COLUMN jpeg BLOB",
        """CREATE TABLE segments_v2 (
  id INTEGER PRIMARY KEY, scope TEXT NOT NULL, video_id TEXT NOT NULL, start REAL NOT NULL,
  "end" REAL NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL)""",
        """INSERT INTO segments_v2 (scope, video_id, start, "end", kind, text)
  SELECT scope, video_id, start, "end", kind, text FROM segments""",
        "DROP TABLE segments",
        "ALTER TABLE segments_v2 RENAME TO segments",
        "CREATE INDEX segments_video ON segments(scope, video_id, start)",
        """CREATE VIRTUAL TABLE segments_fts USING fts5(
  text, content='segments', content_rowid='id', tokenize='porter unicode61')""",
        "INSERT INTO segments_fts(segments_fts) VALUES ('rebuild')",
        """CREATE TRIGGER segments_fts_insert AFTER INSERT ON segments BEGIN
  INSERT INTO segments_fts(rowid, text) VALUES (new.id, new.text); END""",
        """CREATE TRIGGER segments_fts_delete AFTER DELETE ON segments BEGIN
  INSERT INTO segments_fts(segments_fts, rowid, text) VALUES ('delete', old.id, old.text); END""",
    )),
    # The full-text index also holds each segment's channel, so a search is narrowed to one channel
    # inside FTS5 (`scope:^"…" AND (…)`) instead of matching every channel's segments, ranking
    # them all by BM25, and keeping this channel's after the join (with stop words also left out
    # of the query, catalog.base.words; bench/scale.py, docs/benchmarks.md "Design figures").
    (3, (
        "DROP TRIGGER segments_fts_insert",
        "DROP TRIGGER segments_fts_delete",
        "DROP TABLE segments_fts",
        """CREATE VIRTUAL TABLE segments_fts USING fts5(
  text, scope, content='segments', content_rowid='id', tokenize='porter unicode61')""",
        "INSERT INTO segments_fts(segments_fts) VALUES ('rebuild')",
        """CREATE TRIGGER segments_fts_insert AFTER INSERT ON segments BEGIN
  INSERT INTO segments_fts(rowid, text, scope) VALUES (new.id, new.text, new.scope); END""",
        """CREATE TRIGGER segments_fts_delete AFTER DELETE ON segments BEGIN
  INSERT INTO segments_fts(segments_fts, rowid, text, scope) VALUES ('delete', old.id, old.text, old.scope); END""",
    )),
    # The language Whisper detected in a video ("" when none was: subtitles, no speech). A channel
    # whose videos are all English asks with MiniLM alone: the multilingual half of the question's
    # vector only meets passages in other languages (core.engines.text.BilingualEmbedder).
    (4, ("ALTER TABLE videos ADD COLUMN language TEXT NOT NULL DEFAULT ''",)),
    # Job stages are stable ids; their words moved to core/chat/present.py (STAGE_WORDS).
    (5, ("UPDATE jobs SET stage = CASE stage WHEN 'downloading' THEN 'fetch' WHEN 'probing' THEN 'probe' "
         "WHEN 'extracting frames' THEN 'frames' WHEN 'transcribing' THEN 'transcribe' "
         "WHEN 'reading the screen' THEN 'ocr' WHEN 'indexing' THEN 'embed' WHEN 'ready' THEN 'done' "
         "ELSE stage END",)),
    # The full-text index holds each segment's words stemmed in its video's language (`terms`,
    # written beside the text by the catalog; core.text.words) instead of FTS5's English Porter
    # stemmer over every language: an Italian or Spanish video's words were stemmed as English.
    # PostgreSQL's index gets the same terms (its migration 5), so both backends match alike.
    (6, (
        "DROP TRIGGER IF EXISTS segments_fts_insert",
        "DROP TRIGGER IF EXISTS segments_fts_delete",
        "DROP TABLE IF EXISTS segments_fts",
        _add_terms_sqlite,
        fill_terms,
        """CREATE VIRTUAL TABLE segments_fts USING fts5(
  terms, scope, content='segments', content_rowid='id', tokenize='unicode61 remove_diacritics 2')""",
        "INSERT INTO segments_fts(segments_fts) VALUES ('rebuild')",
        """CREATE TRIGGER segments_fts_insert AFTER INSERT ON segments BEGIN
  INSERT INTO segments_fts(rowid, terms, scope) VALUES (new.id, new.terms, new.scope); END""",
        """CREATE TRIGGER segments_fts_delete AFTER DELETE ON segments BEGIN
  INSERT INTO segments_fts(segments_fts, rowid, terms, scope) VALUES ('delete', old.id, old.terms, old.scope); END""",
    )),
    # A video's chapters and summary, made once after indexing (core/answer/summary.py).
    (7, ("""CREATE TABLE IF NOT EXISTS summaries (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, text TEXT NOT NULL, chapters TEXT NOT NULL,
  moments TEXT NOT NULL, method TEXT NOT NULL, indexed_to REAL NOT NULL DEFAULT 0, created REAL NOT NULL,
  PRIMARY KEY (scope, video_id))""",)),
    # Who posted each video, and the index of a channel's paged list (see _BACKFILL above).
    (8, (_add_requested_by_sqlite, *_BACKFILL)),
    # Each frame's perceptual hash (core/store/phash.py), what a posted screenshot is matched
    # against; the frames stored before it are hashed from their JPEG bytes here.
    (9, (_add_phash_sqlite, fill_phash)),
    # How far each video is indexed (see _INDEXED_TO above).
    (10, (_add_indexed_to_sqlite, _INDEXED_TO)),
    # The video files kept after indexing for clips (core/store/media_keep.py): one row per video,
    # its file relative to MEDIA_DIR, read oldest first when MEDIA_KEEP_GB needs room; and the
    # moment each answer's thread cites, what `clip` in that thread cuts (core/ingest/cut.py).
    (11, (
        """CREATE TABLE IF NOT EXISTS media (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, path TEXT NOT NULL, format TEXT NOT NULL,
  bytes INTEGER NOT NULL, duration REAL NOT NULL, created REAL NOT NULL, PRIMARY KEY (scope, video_id))""",
        "CREATE INDEX IF NOT EXISTS media_created ON media(created)",
        """CREATE TABLE IF NOT EXISTS moments (
  scope TEXT NOT NULL, thread TEXT NOT NULL, video_id TEXT NOT NULL, start REAL NOT NULL,
  "end" REAL NOT NULL, created REAL NOT NULL, PRIMARY KEY (scope, thread))""",
    )),
]

POSTGRES: list[Migration] = [
    (1, (
        """CREATE TABLE videos (
  id TEXT NOT NULL, scope TEXT NOT NULL, source TEXT NOT NULL, url TEXT NOT NULL DEFAULT '',
  title TEXT NOT NULL DEFAULT '', duration DOUBLE PRECISION NOT NULL DEFAULT 0, status TEXT NOT NULL,
  error TEXT NOT NULL DEFAULT '', created DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, id))""",
        """CREATE TABLE jobs (
  id TEXT PRIMARY KEY, video_id TEXT NOT NULL, scope TEXT NOT NULL, source TEXT NOT NULL,
  stage TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  lease_until DOUBLE PRECISION NOT NULL DEFAULT 0, worker TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '', requested_by TEXT NOT NULL DEFAULT '',
  needs_auth INTEGER NOT NULL DEFAULT 0, created DOUBLE PRECISION NOT NULL,
  updated DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX jobs_status ON jobs(status, created)",
        "CREATE INDEX jobs_scope ON jobs(scope, video_id)",
        """CREATE TABLE segments (
  id BIGSERIAL PRIMARY KEY, scope TEXT NOT NULL, video_id TEXT NOT NULL,
  start DOUBLE PRECISION NOT NULL, "end" DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
  tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED)""",
        "CREATE INDEX segments_video ON segments(scope, video_id, start)",
        "CREATE INDEX segments_tsv ON segments USING GIN (tsv)",
        """CREATE TABLE units (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, start DOUBLE PRECISION NOT NULL,
  "end" DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, vec BYTEA NOT NULL)""",
        "CREATE INDEX units_video ON units(scope, video_id, start)",
        """CREATE TABLE frames (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, "time" DOUBLE PRECISION NOT NULL, path TEXT NOT NULL,
  ocr TEXT NOT NULL DEFAULT '', jpeg BYTEA)""",
        """CREATE INDEX frames_video ON frames(scope, video_id, "time")""",
        """CREATE TABLE turns (
  scope TEXT NOT NULL, thread TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX turns_thread ON turns(scope, thread, created)",
    )),
    # Full-text search within one channel from one index: GIN over (scope, tsv) (btree_gin, a
    # trusted contrib extension) instead of the words' index alone, whose matches in every other
    # channel were fetched and filtered out first, which made counting a common word in a big
    # channel (catalog.base.RANK_CAP) slow (bench/scale.py, docs/benchmarks.md "Design figures").
    (2, (
        "CREATE EXTENSION IF NOT EXISTS btree_gin",
        "CREATE INDEX segments_scope_tsv ON segments USING GIN (scope, tsv)",
        "DROP INDEX segments_tsv",
    )),
    # The language Whisper detected in a video ("" when none was: subtitles, no speech). A channel
    # whose videos are all English asks with MiniLM alone: the multilingual half of the question's
    # vector only meets passages in other languages (core.engines.text.BilingualEmbedder).
    (3, ("ALTER TABLE videos ADD COLUMN language TEXT NOT NULL DEFAULT ''",)),
    # Job stages are stable ids; their words moved to core/chat/present.py (STAGE_WORDS).
    (4, ("UPDATE jobs SET stage = CASE stage WHEN 'downloading' THEN 'fetch' WHEN 'probing' THEN 'probe' "
         "WHEN 'extracting frames' THEN 'frames' WHEN 'transcribing' THEN 'transcribe' "
         "WHEN 'reading the screen' THEN 'ocr' WHEN 'indexing' THEN 'embed' WHEN 'ready' THEN 'done' "
         "ELSE stage END",)),
    # The words' index over `terms`, each segment's words stemmed in its video's language (see
    # SQLite's migration 6), with the 'simple' configuration (lower case, no stemming of its own)
    # instead of 'english' over the raw text.
    (5, (
        "DROP INDEX IF EXISTS segments_scope_tsv",
        "ALTER TABLE segments DROP COLUMN IF EXISTS tsv",
        "ALTER TABLE segments ADD COLUMN IF NOT EXISTS terms TEXT NOT NULL DEFAULT ''",
        fill_terms,
        "ALTER TABLE segments ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', terms)) STORED",
        "CREATE INDEX segments_scope_tsv ON segments USING GIN (scope, tsv)",
    )),
    # A video's chapters and summary, made once after indexing (core/answer/summary.py).
    (6, ("""CREATE TABLE IF NOT EXISTS summaries (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, text TEXT NOT NULL, chapters TEXT NOT NULL,
  moments TEXT NOT NULL, method TEXT NOT NULL, indexed_to DOUBLE PRECISION NOT NULL DEFAULT 0,
  created DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, video_id))""",)),
    # Who posted each video, and the index of a channel's paged list (see _BACKFILL above).
    (7, ("ALTER TABLE videos ADD COLUMN IF NOT EXISTS requested_by TEXT NOT NULL DEFAULT ''", *_BACKFILL)),
    # Each frame's perceptual hash (see SQLite's migration 9).
    (8, ("ALTER TABLE frames ADD COLUMN IF NOT EXISTS phash BIGINT", fill_phash)),
    # How far each video is indexed (see _INDEXED_TO above).
    (9, ("ALTER TABLE videos ADD COLUMN IF NOT EXISTS indexed_to DOUBLE PRECISION NOT NULL DEFAULT 0", _INDEXED_TO)),
    # The kept video files and the moment each thread cites (see SQLite's migration 11).
    (10, (
        """CREATE TABLE IF NOT EXISTS media (
  scope TEXT NOT NULL, video_id TEXT NOT NULL, path TEXT NOT NULL, format TEXT NOT NULL,
  bytes BIGINT NOT NULL, duration DOUBLE PRECISION NOT NULL, created DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (scope, video_id))""",
        "CREATE INDEX IF NOT EXISTS media_created ON media(created)",
        """CREATE TABLE IF NOT EXISTS moments (
  scope TEXT NOT NULL, thread TEXT NOT NULL, video_id TEXT NOT NULL, start DOUBLE PRECISION NOT NULL,
  "end" DOUBLE PRECISION NOT NULL, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, thread))""",
    )),
]

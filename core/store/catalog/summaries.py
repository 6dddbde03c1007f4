"""A video's chapters and summary in the catalog (table `summaries`, one row per video): made once
after indexing (`core.answer.summary`), read by every `summary` request, removed with the video
by `delete_video` and with the channel by `wipe`.

The chapters and cited moments are JSON in their row: they are always read and written whole,
and a chapter list is tens of entries, not thousands.
"""

from __future__ import annotations

import json
import logging
import time

from core.models import Chapter, Scope, StoredSummary
from core.store.catalog.sql import Primitives, video_still_there

log = logging.getLogger(__name__)


class SummaryRows(Primitives):
    """The `summaries` table's SQL, mixed into `Catalog` (which supplies `_fetch` and `_run`)."""

    async def put_summary(self, scope: Scope, video_id: str, summary: StoredSummary) -> None:
        """Write (or replace) one video's summary, if the video is still there: a summary made as
        the video was indexed may finish after someone forgot it, and must not outlive it."""
        chapters = json.dumps([[c.start, c.end, c.title] for c in summary.chapters])
        moments = json.dumps([list(m) for m in summary.moments])
        await self._run(
            "INSERT INTO summaries (scope, video_id, text, chapters, moments, method, indexed_to, created) "
            f"SELECT ?,?,?,?,?,?,?,? WHERE {video_still_there(self.backend)} "
            "ON CONFLICT (scope, video_id) DO UPDATE SET text=excluded.text, "
            "chapters=excluded.chapters, moments=excluded.moments, method=excluded.method, "
            "indexed_to=excluded.indexed_to, created=excluded.created",
            (scope.key, video_id, summary.text, chapters, moments, summary.method, summary.indexed_to, time.time(),
             scope.key, video_id))

    async def summary(self, scope: Scope, video_id: str) -> StoredSummary | None:
        rows = await self._fetch("SELECT text, chapters, moments, method, indexed_to FROM summaries "
                                 "WHERE scope=? AND video_id=?", (scope.key, video_id))
        if not rows:
            return None
        r = rows[0]
        try:
            chapters = tuple(Chapter(float(s), float(e), str(t)) for s, e, t in json.loads(r["chapters"]))
            moments = tuple((float(s), float(e)) for s, e in json.loads(r["moments"]))
        except (ValueError, TypeError):  # a row this code did not write: made again by the caller
            log.warning("unreadable summary of %s in %s: ignored", video_id, scope.key)
            return None
        return StoredSummary(r["text"], chapters, moments, r["method"], float(r["indexed_to"]))

    async def drop_summary(self, scope: Scope, video_id: str) -> None:
        await self._run("DELETE FROM summaries WHERE scope=? AND video_id=?", (scope.key, video_id))

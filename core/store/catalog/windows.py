"""A long video's rows, committed window by window (core/ingest/pipeline.py): each window's
segments, units (with their vectors) and frames, and how far the video is indexed
(`videos.indexed_to`), in one transaction; and what lies past the last committed window, dropped
before an attempt stores again.

A window's rows all start inside it (`since` ≤ start): a transcript segment at or after the
window's first second, an on-screen text span at its first frame, a frame at its time. So
"everything of the video from `since` on" is exactly the windows not committed yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.models import Scope, Segment
from core.store.catalog.sql import Primitives, Tx
from core.store.catalog.videos import insert_text

FrameRow = tuple[float, str, str, bytes | None, int | None]  # time, path, OCR text, JPEG bytes, perceptual hash


class WindowRows(Primitives):
    """Window commits' SQL, mixed into `Catalog`."""

    async def put_window(self, scope: Scope, video_id: str, since: float, until: float,
                         segments: Sequence[Segment], units: Sequence[Segment], unit_vectors: np.ndarray,
                         frames: Sequence[FrameRow], language: str = "") -> None:
        """One window of a video, [since, until): its rows replace any of the video's rows from
        `since` on, and the video is indexed up to `until` (its `language` recorded with it, so
        the full-text search of the indexed part stems its words right)."""
        async with self._tx() as tx:
            await self._drop_from(tx, scope, video_id, since)
            await insert_text(tx, scope, video_id, segments, units, unit_vectors, language)
            await tx.many('INSERT INTO frames (scope, video_id, "time", path, ocr, jpeg, phash) VALUES (?,?,?,?,?,?,?)',
                          [(scope.key, video_id, *f) for f in frames])
            await tx.run("UPDATE videos SET indexed_to=?, language=? WHERE scope=? AND id=?",
                         (until, language, scope.key, video_id))

    async def drop_after(self, scope: Scope, video_id: str, since: float) -> None:
        """A video's rows from `since` on (all of them from 0), and its `indexed_to` back to
        `since`: what an attempt that stopped part-way may have left past its last window."""
        async with self._tx() as tx:
            await self._drop_from(tx, scope, video_id, since)
            await tx.run("UPDATE videos SET indexed_to=? WHERE scope=? AND id=? AND indexed_to>?",
                         (since, scope.key, video_id, since))

    @staticmethod
    async def _drop_from(tx: Tx, scope: Scope, video_id: str, since: float) -> None:
        since = since if since > 0 else -1e18  # from the start: every row, whatever its time
        for table, column in (("segments", "start"), ("units", "start"), ("frames", '"time"')):
            await tx.run(f"DELETE FROM {table} WHERE scope=? AND video_id=? AND {column}>=?",  # noqa: S608 - fixed names
                         (scope.key, video_id, since))

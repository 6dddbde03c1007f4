"""Kept video files and the moments threads cite, in the catalog.

`media`: one row per kept file (core/store/media_keep.py): whose video it is (channel and id), where
it is under MEDIA_DIR, the container the ingest's probe found (forced again when a clip is cut),
its size and when it was kept, read oldest first when MEDIA_KEEP_GB needs room. Removed with the
video by `delete_video` and with the channel by `wipe`.

`moments`: the moment the latest answer of each thread cites (its first citation), what `clip`
in that thread cuts. A row outlives its video (`forget`): a clip asked later is told the video
was removed, rather than that the thread has no answer. `wipe` removes the channel's rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.models import Scope
from core.store.catalog.sql import Primitives, video_still_there


@dataclass(frozen=True)
class KeptRow:
    scope: str  # the channel's key
    video_id: str
    path: str  # relative to MEDIA_DIR
    format: str
    bytes: int
    duration: float
    created: float


@dataclass(frozen=True)
class Moment:
    video_id: str
    start: float
    end: float


class MediaRows(Primitives):
    """The `media` and `moments` tables' SQL, mixed into `Catalog` (which supplies `_fetch` and `_run`)."""

    async def put_media(self, scope: Scope, video_id: str, path: str, fmt: str, size: int, duration: float) -> bool:
        """Record a kept file, if its video is still there (a `forget` may have overtaken the keep):
        whether it was recorded."""
        return bool(await self._run(
            "INSERT INTO media (scope, video_id, path, format, bytes, duration, created) "
            f"SELECT ?,?,?,?,?,?,? WHERE {video_still_there(self.backend)} "
            "ON CONFLICT (scope, video_id) DO UPDATE SET path=excluded.path, format=excluded.format, "
            "bytes=excluded.bytes, duration=excluded.duration, created=excluded.created",
            (scope.key, video_id, path, fmt, int(size), float(duration), time.time(), scope.key, video_id)))

    async def media(self, scope: Scope, video_id: str) -> KeptRow | None:
        rows = await self._fetch("SELECT scope, video_id, path, format, bytes, duration, created FROM media "
                                 "WHERE scope=? AND video_id=?", (scope.key, video_id))
        return _kept(rows[0]) if rows else None

    async def media_bytes(self) -> int:
        """Bytes of every kept file, every channel's (MEDIA_KEEP_GB is one budget for the bot)."""
        rows = await self._fetch("SELECT COALESCE(SUM(bytes), 0) AS n FROM media")
        return int(rows[0]["n"])

    async def oldest_media(self, limit: int = 16) -> list[KeptRow]:
        rows = await self._fetch("SELECT scope, video_id, path, format, bytes, duration, created FROM media "
                                 "ORDER BY created, scope, video_id LIMIT ?", (limit,))
        return [_kept(r) for r in rows]

    async def drop_media(self, scope_key: str, video_id: str) -> None:
        await self._run("DELETE FROM media WHERE scope=? AND video_id=?", (scope_key, video_id))

    async def put_moment(self, scope: Scope, thread: str, video_id: str, start: float, end: float) -> None:
        await self._run(
            'INSERT INTO moments (scope, thread, video_id, start, "end", created) VALUES (?,?,?,?,?,?) '
            'ON CONFLICT (scope, thread) DO UPDATE SET video_id=excluded.video_id, start=excluded.start, '
            '"end"=excluded."end", created=excluded.created',
            (scope.key, thread, video_id, float(start), float(end), time.time()))

    async def moment(self, scope: Scope, thread: str) -> Moment | None:
        rows = await self._fetch('SELECT video_id, start, "end" FROM moments WHERE scope=? AND thread=?',
                                 (scope.key, thread))
        return Moment(rows[0]["video_id"], float(rows[0]["start"]), float(rows[0]["end"])) if rows else None


def _kept(r: Any) -> KeptRow:
    return KeptRow(r["scope"], r["video_id"], r["path"], r["format"], int(r["bytes"]), float(r["duration"]),
                   float(r["created"]))

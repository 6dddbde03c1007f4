"""`ScopedStore`, the only way in to a channel's vectors and rows: every method is bound to one
`Scope`, so a search, read or delete without a scope cannot be written.

The rows live in the catalog (`core.store.catalog`: SQLite or PostgreSQL, which holds all the SQL); the
vectors in `core.store.vectors.VectorStore` (re-exported here), always called with this scope's partition.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.models import Frame, Hit, Scope, Segment, StoredSummary, Turn, Video, VideoStatus
from core.store.catalog import Catalog
from core.store.phash import hash_jpegs
from core.store.vectors import VectorStore, _pymilvus_client  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


class Memo:
    """Values derived from a ready video's rows that every question about its channel would read
    and compute again (its cover spans: up to 200 on-screen spans a video, for each candidate
    video of each question), kept between questions in this process.

    A key holds the video's version (`Video.created`: a video forgotten and posted again is filed
    anew), so a process that did not see a forget never serves the old value; this process drops
    a video's values when it forgets the video or wipes its channel. At most `size` values, the
    least recently used leave first."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.values: OrderedDict[tuple[str, str, float, Any], Any] = OrderedDict()

    def get(self, key: tuple[str, str, float, Any]) -> Any | None:
        value = self.values.get(key)
        if value is not None:
            self.values.move_to_end(key)
        return value

    def put(self, key: tuple[str, str, float, Any], value: Any) -> None:
        self.values[key] = value
        self.values.move_to_end(key)
        while len(self.values) > self.size:
            self.values.popitem(last=False)

    def drop(self, scope_key: str, video_ids: Sequence[str] | None = None) -> None:
        """Every value of these videos of the channel (None: of the whole channel)."""
        for key in [k for k in self.values if k[0] == scope_key and (video_ids is None or k[1] in video_ids)]:
            del self.values[key]


_MEMOS: weakref.WeakKeyDictionary[Catalog, Memo] = weakref.WeakKeyDictionary()  # one per open catalog


class ScopedStore:
    """Everything vidrag keeps about one channel. Every call below passes `self.scope`.

    `files` is DATA_DIR/videos: where a frame indexed on another host is written from its catalog
    bytes before an adapter attaches it (`frame_file`)."""

    def __init__(self, scope: Scope, vectors: VectorStore, catalog: Catalog, files: Path | None = None) -> None:
        self.scope = scope
        self.vectors = vectors
        self.catalog = catalog
        self.files = files
        self.key = scope.key
        self.partition = scope.partition
        self.memo = _MEMOS.setdefault(catalog, Memo())

    async def _milvus(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.vectors.executor, fn, *args)

    # catalog: videos
    async def videos(self, limit: int | None = None) -> list[Video]:
        return await self.catalog.videos(self.scope, limit)

    async def count_videos(self, status: VideoStatus | None = None) -> int:
        return await self.catalog.count_videos(self.scope, status)

    async def videos_with_prefix(self, prefix: str, limit: int = 2) -> list[Video]:
        return await self.catalog.videos_with_prefix(self.scope, prefix, limit)

    async def video(self, video_id: str) -> Video | None:
        return await self.catalog.video(self.scope, video_id)

    async def add_video(self, video_id: str, source: str, url: str, title: str, requested_by: str = "") -> None:
        await self.catalog.add_video(self.scope, video_id, source, url, title, requested_by)

    async def update_video(self, video_id: str, **fields: Any) -> None:
        await self.catalog.update_video(self.scope, video_id, **fields)

    # vectors and timed text
    async def put_text(self, video_id: str, chunks: list[Segment], vectors: np.ndarray,
                       segments: list[Segment], units: list[Segment] = (), unit_vectors: np.ndarray | None = None,  # type: ignore[assignment]
                       language: str = "") -> None:
        """Chunks go to Milvus (what a question searches); segments (the evidence quoted in answers,
        and the full-text index, stemmed in `language`, the video's) and units with their vectors
        (what a hit is narrowed to) to the catalog."""
        rows = [{"id": f"{video_id}:t{i}", "vector": v.tolist(), "video_id": video_id,
                 "start": c.start, "end": c.end, "kind": str(c.kind), "text": c.text[:8000]}
                for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))]
        await self._milvus(self.vectors.insert, self.vectors.text, self.partition, rows)
        uv = unit_vectors if unit_vectors is not None else np.zeros((0, 0), np.float32)
        await self.catalog.put_text(self.scope, video_id, segments, units, uv, language)

    async def units(self, video_id: str, start: float, end: float, kind: str | None,
                    limit: int | None = None) -> list[tuple[Segment, np.ndarray]]:
        """Units of `kind` (None: any) lying within [start, end], each with its stored vector; the
        first `limit` in time order if given."""
        return await self.catalog.units(self.scope, video_id, start, end, kind, limit)

    async def units_within(self, wanted: Sequence[tuple[str, float, float, str | None, int]]
                           ) -> list[list[tuple[Segment, np.ndarray]]]:
        """`units` for each (video id, start, end, kind or None, limit) of `wanted`, read in one statement."""
        return await self.catalog.units_within(self.scope, wanted)

    async def on_screen(self, video_ids: Sequence[str], limit: int) -> list[list[Segment]]:
        """Each video's first `limit` on-screen text spans, read in one statement."""
        return await self.catalog.on_screen(self.scope, video_ids, limit)

    async def put_frames(self, video_id: str, frames: list[Frame], ocr: dict[float, str],
                         vectors: np.ndarray | None) -> None:
        """Frame vectors to Milvus; each frame's time, path, text and JPEG bytes to the catalog,
        so that a process on another host can attach it."""
        if vectors is not None and self.vectors.frames:
            rows = [{"id": f"{video_id}:f{i}", "vector": v.tolist(), "video_id": video_id,
                     "start": f.time, "end": f.time, "kind": "frame", "path": f.path}
                    for i, (f, v) in enumerate(zip(frames, vectors, strict=True))]
            await self._milvus(self.vectors.insert, self.vectors.frames, self.partition, rows)
        jpegs = await asyncio.to_thread(lambda: [_read(f.path) for f in frames])
        hashes = await asyncio.to_thread(hash_jpegs, jpegs)  # what a posted screenshot is matched by
        await self.catalog.put_frames(self.scope, video_id, [(f.time, f.path, ocr.get(f.time, ""), b, h)
                                                             for f, b, h in zip(frames, jpegs, hashes, strict=True)])

    async def put_window(self, video_id: str, since: float, until: float, chunks: list[Segment], vectors: np.ndarray,
                         segments: list[Segment], units: list[Segment], unit_vectors: np.ndarray, frames: list[Frame],
                         ocr: dict[float, str], image_vectors: np.ndarray | None, language: str = "") -> None:
        """One window [since, until) of a video being indexed (core/ingest/pipeline.py): its text
        chunks' and frames' vectors to Milvus, then its rows to the catalog with the video's
        `indexed_to` moved to `until`, in one transaction. The catalog commits last: vectors of a
        window whose commit never came lie past `indexed_to`, where searches ignore them and the
        next attempt drops them (`drop_after`). Row ids carry the window's start, so windows never
        share one."""
        tag = f"{video_id}:{since:.2f}"
        await self._insert_text(video_id, [{"id": f"{tag}t{i}", "vector": v.tolist(), "video_id": video_id,
                                            "start": c.start, "end": c.end, "kind": str(c.kind), "text": c.text[:8000]}
                                           for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))])
        if image_vectors is not None and self.vectors.frames:
            await self._insert_frames(video_id, [{"id": f"{tag}f{i}", "vector": v.tolist(), "video_id": video_id,
                                                  "start": f.time, "end": f.time, "kind": "frame", "path": f.path}
                                                 for i, (f, v) in enumerate(zip(frames, image_vectors, strict=True))])
        jpegs = await asyncio.to_thread(lambda: [_read(f.path) for f in frames])
        hashes = await asyncio.to_thread(hash_jpegs, jpegs)  # what a posted screenshot is matched by
        await self.catalog.put_window(self.scope, video_id, since, until, segments, units, unit_vectors,
                                      [(f.time, f.path, ocr.get(f.time, ""), b, h)
                                       for f, b, h in zip(frames, jpegs, hashes, strict=True)], language)

    async def _insert_text(self, video_id: str, rows: list[dict[str, Any]]) -> None:
        await self._milvus(self.vectors.insert, self.vectors.text, self.partition, rows)

    async def _insert_frames(self, video_id: str, rows: list[dict[str, Any]]) -> None:
        await self._milvus(self.vectors.insert, self.vectors.frames, self.partition, rows)

    async def drop_after(self, video_id: str, since: float) -> None:
        """A video's vectors and rows from `since` on (everything from 0): what lies past its last
        committed window. Vectors first, as `delete_video` does."""
        for c in filter(None, (self.vectors.text, self.vectors.frames)):
            await self._milvus(self.vectors.delete, c, self.partition, [video_id], since)
        await self.catalog.drop_after(self.scope, video_id, since)

    async def search_text(self, vector: np.ndarray, limit: int, video_id: str | None = None) -> list[Hit]:
        return await self._milvus(self.vectors.search, self.vectors.text, self.partition, vector, limit, "text",
                                  video_id)

    async def search_frames(self, vector: np.ndarray, limit: int) -> list[Hit]:
        if not self.vectors.frames:
            return []
        return await self._milvus(self.vectors.search, self.vectors.frames, self.partition, vector,
                                  limit, "path")

    async def lexical(self, query: str, limit: int, video_id: str | None = None) -> list[Hit]:
        """Full-text search of this channel's segments (of one video when `video_id` is given), best
        first (BM25 on SQLite, ts_rank on PostgreSQL): first-stage candidates for
        `core.answer.retrieve`, each matching segment a hit."""
        return await self.catalog.lexical(self.scope, query, limit, video_id)

    async def segments(self, video_id: str, start: float, end: float, limit: int | None = None) -> list[Segment]:
        return await self.catalog.segments(self.scope, video_id, start, end, limit)

    async def frame_hashes(self) -> list[tuple[str, float, int]]:
        """(video id, time, perceptual hash) of every hashed frame of this channel."""
        return await self.catalog.frame_hashes(self.scope)

    async def frames(self, video_id: str) -> list[Hit]:
        return await self.catalog.frames(self.scope, video_id)

    async def frame_jpeg(self, video_id: str, time: float) -> bytes | None:
        """The stored JPEG bytes of the frame at `time`, or None."""
        return await self.catalog.frame_jpeg(self.scope, video_id, time)

    async def frame_file(self, video_id: str, time: float, path: str) -> Path | None:
        """A local file of the frame at `time`: `path` when this host wrote it, else a copy written
        from the catalog's bytes under DATA_DIR/videos (kept for the next answer; a forget or wipe
        removes it with the video's folder). None when neither exists."""
        if await asyncio.to_thread(os.path.isfile, path):
            return Path(path)
        if self.files is None:
            return None
        local = self.files / self.partition / video_id / "frames-cache" / f"{time:.3f}.jpg"
        if await asyncio.to_thread(local.is_file):
            return local
        data = await self.catalog.frame_jpeg(self.scope, video_id, time)
        if data is None:
            return None
        await asyncio.to_thread(_write, local, data)
        return local

    async def drop_vectors(self, video_ids: Sequence[str]) -> None:
        for c in filter(None, (self.vectors.text, self.vectors.frames)):
            await self._milvus(self.vectors.delete, c, self.partition, list(video_ids))

    async def vector_video_ids(self) -> set[str]:
        ids: set[str] = set()
        for c in filter(None, (self.vectors.text, self.vectors.frames)):
            ids |= await self._milvus(self.vectors.video_ids, c, self.partition)
        return ids

    async def delete_video(self, video_id: str, keep_jobs: bool = False) -> None:
        """Vectors first, then rows (frames and their bytes included): a crash in between leaves a
        catalog row the reconciler sees. `keep_jobs` keeps the job rows (a failed job's reason, for
        /status)."""
        self.memo.drop(self.key, [video_id])
        await self.drop_vectors([video_id])
        await self.catalog.delete_video(self.scope, video_id, keep_jobs)

    async def wipe(self) -> list[Video]:
        """Every vector and row of this channel (then `drop_partition`, once its running ingests
        have stopped). Returns the videos that were there."""
        self.memo.drop(self.key)
        videos = await self.videos()
        await self.drop_vectors([v.id for v in videos])
        await self.catalog.wipe(self.scope)
        return videos

    async def drop_partition(self) -> None:
        await self._milvus(self.vectors.drop_partition, self.partition)

    # chapters and summary
    async def summary(self, video_id: str) -> StoredSummary | None:
        return await self.catalog.summary(self.scope, video_id)

    async def put_summary(self, video_id: str, summary: StoredSummary) -> None:
        await self.catalog.put_summary(self.scope, video_id, summary)

    # threads
    async def turns(self, thread: str, limit: int = 6) -> list[Turn]:
        return await self.catalog.turns(self.scope, thread, limit)

    async def add_turn(self, thread: str, question: str, answer: str) -> None:
        await self.catalog.add_turn(self.scope, thread, question, answer)


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _write(path: Path, data: bytes) -> None:
    """Write-then-rename: two answers racing for the same frame never attach half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

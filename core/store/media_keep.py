"""The video files kept after indexing, for clips: under MEDIA_DIR, one folder per channel and
video (`<channel's partition>/<video id>/video.<ext>`), catalogued in the `media` table, all of them
together within MEDIA_KEEP_GB (the oldest removed first to make room; `0` keeps none).

What is kept is the file the ingest read, as it was downloaded (yt-dlp already asks for ≤360p),
not a compact re-encoded copy, which would add an encode of the whole video to every ingest
(both measured by `make bench`: media_mb_per_hour, compact_mb_per_hour, compact_s_per_hour). It
is the posted file, hostile bytes: nothing here reads it; only the jailed clip task does
(core/ingest/cut.py).

A kept file belongs to one channel's video: it is found by (channel, video id) in the catalog and
lives under that channel's folder, removed by `forget` and `wipe` with the rest of the video.
Past one machine MEDIA_DIR is a volume every process mounts (the catalog row names the file
relative to it), so the chat process cuts a clip of a video a worker indexed (deploy/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path

from core.config import Settings
from core.models import Scope
from core.store.catalog import Catalog
from core.store.catalog.media import KeptRow

log = logging.getLogger(__name__)

ASIDE = "kept"  # the ingest's job folder holds the file here between the jail and `keep`


def set_aside(media: Path, workdir: Path, copy: bool) -> Path | None:
    """Move (or, for a local file the operator named, copy) the file an ingest read into its job
    folder, out of the download folder the ingest removes; the worker `keep`s it from there. None
    when it cannot be (a full disk): the video is indexed all the same, without clips."""
    aside = workdir / ASIDE
    shutil.rmtree(aside, ignore_errors=True)
    dest = aside / ("video" + "".join(c for c in media.suffix[:8] if c.isalnum() or c == "."))
    try:
        aside.mkdir(parents=True)
        if copy:
            shutil.copyfile(media, dest)
        else:
            os.replace(media, dest)
    except OSError as e:
        log.warning("the file of %s is not kept for clips: %s", workdir.name, e)
        shutil.rmtree(aside, ignore_errors=True)
        return None
    return dest


class MediaKeep:
    """The kept files of every channel (MEDIA_KEEP_GB is one budget for the bot)."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.root = settings.media_path
        self.budget = int(settings.media_keep_gb * 2**30)
        self.catalog = catalog

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def folder(self, scope: Scope, video_id: str) -> Path:
        return self.root / scope.partition / video_id

    async def keep(self, scope: Scope, video_id: str, file: Path, fmt: str, duration: float) -> Path | None:
        """File `file` (set aside by the ingest) as `scope`'s video `video_id`, then make room;
        None when nothing is kept (MEDIA_KEEP_GB=0, or the file alone is over the budget)."""
        if not self.enabled:
            await asyncio.to_thread(shutil.rmtree, file.parent, True)
            return None
        folder = self.folder(scope, video_id)
        dest = folder / file.name

        def move() -> int:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            shutil.move(file, dest)  # a rename on one disk, a copy onto a shared volume
            shutil.rmtree(file.parent, ignore_errors=True)
            return dest.stat().st_size

        size = await asyncio.to_thread(move)
        if not await self.catalog.put_media(scope, video_id, str(dest.relative_to(self.root)), fmt, size, duration):
            await asyncio.to_thread(shutil.rmtree, folder, True)  # forgotten meanwhile: nothing kept of it
            return None
        await self.make_room()
        return dest if await asyncio.to_thread(dest.is_file) else None

    async def make_room(self) -> list[KeptRow]:
        """Remove the oldest kept files until all fit in MEDIA_KEEP_GB; returns those removed."""
        total = await self.catalog.media_bytes()
        removed: list[KeptRow] = []
        while total > self.budget:
            rows = await self.catalog.oldest_media(16)
            if not rows:
                break
            for row in rows:
                if total <= self.budget:
                    break
                await self.catalog.drop_media(row.scope, row.video_id)
                await asyncio.to_thread(self._remove, row.path)
                log.info("kept file of %s in %s removed to stay within MEDIA_KEEP_GB (%d bytes)",
                         row.video_id, row.scope, row.bytes)
                total -= row.bytes
                removed.append(row)
        return removed

    async def find(self, scope: Scope, video_id: str) -> tuple[KeptRow | None, Path | None]:
        """The catalog's row of `scope`'s kept video and its file, if this process sees it (None
        beside a row: MEDIA_DIR is not shared with the process that kept it)."""
        row = await self.catalog.media(scope, video_id)
        if row is None:
            return None, None
        path = self.root / row.path
        inside = path.resolve().is_relative_to(self.folder(scope, video_id).resolve())  # the row's own folder only
        return row, path if inside and await asyncio.to_thread(path.is_file) else None

    async def drop(self, scope: Scope, video_id: str) -> None:
        """A video's kept file (`forget`; its row goes with the video's rows)."""
        await self.catalog.drop_media(scope.key, video_id)
        await asyncio.to_thread(shutil.rmtree, self.folder(scope, video_id), True)

    async def drop_channel(self, scope: Scope) -> None:
        """Every kept file of a channel (`wipe`; the rows go with the channel's rows)."""
        await asyncio.to_thread(shutil.rmtree, self.root / scope.partition, True)

    def _remove(self, rel: str) -> None:
        path = self.root / rel
        with contextlib.suppress(OSError):
            if path.resolve().is_relative_to(self.root.resolve()):
                shutil.rmtree(path.parent, ignore_errors=True)

"""A channel's videos as the service shows them: listed and counted, one found by the name a
member gives it, and removing one (with the rule of who may) or the whole channel. `Service`
(core/service.py) is made of this and its own indexing and answering.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from core.config import Settings
from core.errors import Forbidden, NotFound
from core.jobs.queue import JobQueue
from core.jobs.worker import JobRunner
from core.models import Job, Scope, Video, VideoStatus
from core.store.catalog import Catalog
from core.store.media_keep import MediaKeep
from core.store.scoped import ScopedStore, VectorStore
from core.text.safety import one_line


class Library:
    """The listing, finding and forgetting half of `Service`, over the stores and runner it holds."""

    settings: Settings
    catalog: Catalog
    vectors: VectorStore
    queue: JobQueue
    runner: JobRunner

    def store(self, scope: Scope) -> ScopedStore:
        return ScopedStore(scope, self.vectors, self.catalog, self.settings.data_dir / "videos")

    def workdir(self, scope: Scope, video_id: str) -> Path:
        return self.runner.workdir(scope, video_id)

    # ---- listing and deleting -------------------------------------------------------------------
    async def videos(self, scope: Scope, limit: int | None = None) -> list[Video]:
        """The channel's videos, oldest first (the first `limit`)."""
        return await self.store(scope).videos(limit)

    async def count_videos(self, scope: Scope, status: VideoStatus | None = None) -> int:
        return await self.store(scope).count_videos(status)

    async def video(self, scope: Scope, video_id: str) -> Video | None:
        return await self.store(scope).video(video_id)

    async def jobs(self, scope: Scope) -> list[Job]:
        return await self.queue.active(scope)

    async def find(self, scope: Scope, name: str) -> Video:
        """The one video of `scope` that `name` names: its id, its title (ignoring case), or the
        first characters (6 or more) of its id; `NotFound` otherwise. Old 10-character ids and
        new 20-character ones alike."""
        store = self.store(scope)
        name = name.strip()
        video = await store.video(name) if name else None
        if video is None and name:
            video = await store.video(name.lower())
        if video is None and name:
            low = name.lower()
            matches = [v for v in await store.videos() if v.title.lower() == low]  # read a page at a time
            if len(matches) == 1:
                video = matches[0]
            elif not matches and len(name) >= 6 and name.isalnum():
                prefixed = await store.videos_with_prefix(low, 2)
                video = prefixed[0] if len(prefixed) == 1 else None
        if video is None:
            shown = one_line(name.replace("`", "'"), 60)
            raise NotFound(f"There is no video `{shown}` in this channel." if shown
                           else "There is no such video in this channel.")
        return video

    async def may_forget(self, scope: Scope, name: str, *, user: str | None = None, admin: bool = False,
                         admins: str = "an admin") -> Video:
        """The video `name` names, if `user` may remove it (see `forget`, which asks this too):
        `NotFound` or `Forbidden` otherwise. The one place the rule is written."""
        video = await self.find(scope, name)
        if user is not None and not admin and not (video.requested_by and video.requested_by == user):
            raise Forbidden(f"Only the person who posted this video or {admins} can remove it; nothing was removed.")
        return video

    async def forget(self, scope: Scope, video_id: str, *, user: str | None = None, admin: bool = False,
                     admins: str = "an admin") -> Video:
        """Remove one video of `scope` (named as `find` reads names): vectors, frames, files and
        rows (its jobs too; a running ingest of it is stopped and what it writes afterwards
        removed).

        Who may: the operator (`user` None: the command line), the chat user who posted the
        video, and an admin (`admin`: each adapter knows what that is on its platform, and
        `admins` is how its refusal names them). The same in a direct message as in a channel.
        Anyone else gets `Forbidden`, and nothing is removed."""
        store = self.store(scope)
        video = await self.may_forget(scope, video_id, user=user, admin=admin, admins=admins)
        jobs = await self.catalog.jobs(scope, video.id, active_only=False)
        await store.delete_video(video.id)
        await self.runner.stop_jobs({j.id for j in jobs})
        await asyncio.to_thread(shutil.rmtree, self.workdir(scope, video.id), True)
        await MediaKeep(self.settings, self.catalog).drop(scope, video.id)
        return video

    async def wipe(self, scope: Scope) -> int:
        """Delete everything vidrag keeps about one channel; returns the number of videos removed."""
        store = self.store(scope)
        jobs = await self.catalog.jobs(scope, active_only=False)
        videos = await store.wipe()
        await self.runner.stop_jobs({j.id for j in jobs})
        await store.drop_partition()
        await asyncio.to_thread(shutil.rmtree, self.settings.data_dir / "videos" / scope.partition, True)
        await MediaKeep(self.settings, self.catalog).drop_channel(scope)
        return len(videos)

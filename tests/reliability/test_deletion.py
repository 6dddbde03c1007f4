"""Deletion leaves nothing behind: `forget` removes one video's vectors, frames, files and rows;
`vidrag wipe --channel X` removes a whole channel; a video forgotten while it is being indexed
does not come back. Each is checked by querying Milvus and SQLite directly and walking the files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.console import parser, run
from core.errors import UserFacingError
from core.service import JobEvent, Service
from tests.backends import BACKENDS
from tests.reliability.conftest import NOTHING, catalog_rows, console, milvus_rows

pytestmark = pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)


def files_of(svc: Service, channel: str) -> list[Path]:
    root = svc.settings.data_dir / "videos" / console(channel).partition
    return list(root.rglob("*")) if root.exists() else []


async def test_forget_leaves_nothing_of_the_video(rel_service: Service, short_lectures) -> None:
    sc = console("forget")
    a = await rel_service.wait((await rel_service.submit(sc, str(short_lectures["volcano"]))).job.id)
    b = await rel_service.wait((await rel_service.submit(sc, str(short_lectures["bread"]))).job.id)
    await rel_service.ask(sc, "Why does magma rise?", thread="t")
    assert milvus_rows(rel_service, sc, a.id) and (rel_service.workdir(sc, a.id) / "frames").is_dir()
    await rel_service.forget(sc, a.id)
    assert milvus_rows(rel_service, sc, a.id) == []
    for table in ("videos", "jobs", "segments", "frames"):
        col = "id" if table == "videos" else "video_id"
        rows = await rel_service.catalog.rows(f"SELECT COUNT(*) AS n FROM {table} WHERE {col}=?", (a.id,))  # noqa: S608
        assert rows[0]["n"] == 0, table
    assert not rel_service.workdir(sc, a.id).exists()
    assert {r["video_id"] for r in milvus_rows(rel_service, sc)} == {b.id}  # the other video is intact
    assert (await rel_service.ask(sc, "What does yeast release?")).citations[0].video_id == b.id


async def test_forget_during_indexing_leaves_nothing(rel_service: Service, short_lectures) -> None:
    sc = console("forget-live")
    reached = asyncio.Event()

    async def hook(e: JobEvent) -> None:
        if e.progress.stage.value == "transcribing":
            reached.set()

    rel_service.on_job_event(hook)
    sub = await rel_service.submit(sc, str(short_lectures["tides"]))
    await asyncio.wait_for(reached.wait(), 120)
    await rel_service.forget(sc, sub.job.video_id)
    try:
        await rel_service.wait(sub.job.id)
    except UserFacingError:
        pass
    await asyncio.sleep(0.5)
    assert milvus_rows(rel_service, sc) == []
    assert await catalog_rows(rel_service, sc) == NOTHING
    assert files_of(rel_service, "forget-live") == []


async def test_channel_wipe_command_leaves_nothing(rel_settings, models, short_lectures) -> None:
    gone, kept = console("wipe-me"), console("keep-me")
    async with Service.open(rel_settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        for sc, name in ((gone, "volcano"), (gone, "bread"), (kept, "tides")):
            await svc.wait((await svc.submit(sc, str(short_lectures[name]))).job.id)
        await svc.ask(gone, "Why does magma rise?", thread="t")
    await run(parser().parse_args(["wipe", "--channel", "wipe-me"]), rel_settings)  # `vidrag wipe --channel X`
    async with Service.open(rel_settings, models=models, chat=None) as svc:
        assert milvus_rows(svc, gone) == []
        for coll in filter(None, (svc.vectors.text, svc.vectors.frames)):
            assert gone.partition not in svc.vectors.client.list_partitions(coll)
        assert await catalog_rows(svc, gone) == NOTHING
        assert files_of(svc, "wipe-me") == []
        assert milvus_rows(svc, kept) and (await catalog_rows(svc, kept))["videos"] == 1

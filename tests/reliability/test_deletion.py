"""Deletion leaves nothing behind: `forget` removes one video's vectors, frames, files and rows;
`vidrag wipe --channel X` removes a whole channel; a video forgotten while it is being stored
does not come back. Each is checked where things are kept — every catalog table, the full-text
index, the text and frame vectors in Milvus, the file tree — and each check is first seen to find
something, so that an empty answer means deleted, not never written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.console import parser, run
from core.errors import UserFacingError
from core.service import Service
from core.store.scoped import ScopedStore
from tests.backends import BACKENDS
from tests.reliability.conftest import console, stored

pytestmark = pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)

# words said in each short lecture (tests/conftest.py TOPICS) and in no other
VOLCANO, BREAD, TIDES = "magma molten andesite", "yeast flour dough", "moon oceans tides"


def files_of(svc: Service, channel: str) -> list[Path]:
    root = svc.settings.data_dir / "videos" / console(channel).partition
    return list(root.rglob("*")) if root.exists() else []


async def test_forget_leaves_nothing_of_the_video(rel_service: Service, short_lectures) -> None:
    sc = console("forget")
    a = await rel_service.wait((await rel_service.submit(sc, str(short_lectures["volcano"]))).job.id)
    b = await rel_service.wait((await rel_service.submit(sc, str(short_lectures["bread"]))).job.id)
    await rel_service.ask(sc, "Why does magma rise?", thread="t")
    before = await stored(rel_service, sc, VOLCANO, a.id)
    assert all(before.values()), before  # a row in every table, index entries, both kinds of vector
    kept = await stored(rel_service, sc, BREAD, b.id)
    assert (rel_service.workdir(sc, a.id) / "frames").is_dir()

    await rel_service.forget(sc, a.id)
    assert await stored(rel_service, sc, VOLCANO, a.id) == dict.fromkeys(before, 0)
    assert not rel_service.workdir(sc, a.id).exists()
    assert await stored(rel_service, sc, BREAD, b.id) == kept  # the other video is intact
    assert (await rel_service.ask(sc, "What does yeast release?")).citations[0].video_id == b.id


async def test_forget_while_storing_leaves_nothing(rel_service: Service, short_lectures,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingest is held after its text is stored (rows, index, text vectors) and before its
    frames are: forgotten there, the job stops, whoever waits for it hears why, and what the
    ingest had written is gone with the rest."""
    sc = console("forget-live")
    storing = asyncio.Event()
    put_frames = ScopedStore.put_frames

    async def held(self: ScopedStore, *args, **kw):  # noqa: ANN002, ANN003
        if self.scope == sc:
            storing.set()
            await asyncio.Event().wait()  # until the forget cancels the ingest
        return await put_frames(self, *args, **kw)

    monkeypatch.setattr(ScopedStore, "put_frames", held)
    sub = await rel_service.submit(sc, str(short_lectures["tides"]))
    waiting = asyncio.ensure_future(rel_service.wait(sub.job.id))  # as an adapter waits to reply
    await asyncio.wait_for(storing.wait(), 120)
    half = await stored(rel_service, sc, TIDES, sub.job.video_id)
    assert half["segments"] and half["units"] and half["text index"] and half["text vectors"], half
    assert half["jobs"] == half["videos"] == 1 and half["frames"] == half["frame vectors"] == 0, half

    await rel_service.forget(sc, sub.job.video_id)
    # told it was removed ("no longer exists" when its poll of the catalog comes first)
    with pytest.raises(UserFacingError, match="removed before it was indexed|no longer exists"):
        await asyncio.wait_for(waiting, 30)
    assert await stored(rel_service, sc, TIDES) == dict.fromkeys((*half, "turns"), 0)
    assert files_of(rel_service, "forget-live") == []


async def test_channel_wipe_command_leaves_nothing(rel_settings, models, short_lectures) -> None:
    gone, kept = console("wipe-me"), console("keep-me")
    async with Service.open(rel_settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        for sc, name in ((gone, "volcano"), (gone, "bread"), (kept, "tides")):
            await svc.wait((await svc.submit(sc, str(short_lectures[name]))).job.id)
        await svc.ask(gone, "Why does magma rise?", thread="t")
        before = await stored(svc, gone, f"{VOLCANO} {BREAD}")
        assert all(before.values()) and before["videos"] == 2, before
        others = await stored(svc, kept, TIDES)
    await run(parser().parse_args(["wipe", "--channel", "wipe-me"]), rel_settings)  # `vidrag wipe --channel X`
    async with Service.open(rel_settings, models=models, chat=None) as svc:
        assert await stored(svc, gone, f"{VOLCANO} {BREAD}") == dict.fromkeys(before, 0)
        if svc.vectors.layout == "partition":
            for coll in filter(None, (svc.vectors.text, svc.vectors.frames)):
                assert gone.partition not in svc.vectors.client.list_partitions(coll)
        assert files_of(svc, "wipe-me") == []
        assert await stored(svc, kept, TIDES) == others

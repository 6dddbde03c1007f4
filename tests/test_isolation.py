"""Two channels never see each other's videos: not in answers, not in lists, not in deletes. The
read-only checks use the session's indexed channels; the one that deletes indexes its own."""

from __future__ import annotations

import pytest

from core.errors import NotFound, UserFacingError
from core.service import Service
from tests.conftest import Indexed, console


@pytest.fixture
async def two_channels(service: Service, short_lectures):
    """A volcano talk and a bread talk (the short ones) in two channels of a service of this test's own."""
    volcano, bread = console("geology"), console("kitchen")
    v1 = await service.wait((await service.submit(volcano, str(short_lectures["volcano"]))).job.id)
    v2 = await service.wait((await service.submit(bread, str(short_lectures["bread"]))).job.id)
    return service, volcano, bread, v1, v2


def shared(ix: Indexed) -> tuple:
    return ix.view(), ix.volcano, ix.bread, ix.volcano_video, ix.bread_video


async def test_ask_cites_only_own_channel(indexed_lectures: Indexed) -> None:
    service, volcano, bread, v1, v2 = shared(indexed_lectures)
    answer = await service.ask(bread, "Why do volcanoes erupt when gas comes out of the magma?")
    assert answer.citations and {c.video_id for c in answer.citations} == {v2.id}
    assert answer.frame is None or answer.frame.video_id == v2.id
    answer = await service.ask(volcano, "What does yeast release that makes the dough rise?")
    assert {c.video_id for c in answer.citations} == {v1.id}


async def test_videos_lists_only_own_channel(indexed_lectures: Indexed) -> None:
    service, volcano, bread, v1, v2 = shared(indexed_lectures)
    assert [v.id for v in await service.videos(volcano)] == [v1.id]
    assert [v.id for v in await service.videos(bread)] == [v2.id]
    assert await service.videos(console("elsewhere")) == []


async def test_forget_cannot_reach_another_channel(indexed_lectures: Indexed) -> None:
    service, volcano, bread, v1, v2 = shared(indexed_lectures)
    with pytest.raises(NotFound):
        await service.forget(volcano, v2.id)
    with pytest.raises(NotFound):
        await service.forget(volcano, "Baking bread")  # by title, too
    assert [v.id for v in await service.videos(bread)] == [v2.id]
    answer = await service.ask(bread, "What does kneading develop?")
    assert answer.citations[0].video_id == v2.id


async def test_forget_removes_vectors_rows_and_frames(two_channels) -> None:
    service, volcano, bread, v1, v2 = two_channels
    store = service.store(volcano)
    frames = await store.frames(v1.id)
    assert frames and await store.vector_video_ids() == {v1.id}
    await service.forget(volcano, v1.id)
    assert await store.vector_video_ids() == set()
    assert await store.frames(v1.id) == [] and await store.segments(v1.id, 0, 1e9) == []
    assert not service.workdir(volcano, v1.id).exists()
    with pytest.raises(UserFacingError, match="No videos"):
        await service.ask(volcano, "Why do volcanoes erupt?")
    # the other channel is untouched
    assert await service.store(bread).vector_video_ids() == {v2.id}


async def test_partitions_differ_per_channel_and_platform() -> None:
    from core.models import Scope

    names = {Scope(p, w, c).partition for p in ("slack", "discord") for w in ("T1", "T2") for c in ("C1", "C2")}
    assert len(names) == 8
    assert all(n[0].isalpha() and n.replace("_", "").isalnum() for n in names)

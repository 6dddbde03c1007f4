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


async def _file(service: Service, scope, video_id: str, source: str, title: str, said: list[str]) -> None:
    """A ready video written straight into the store, its sentences embedded for real."""
    from core.models import Segment, VideoStatus

    text = await service.models.call_query(lambda: service.models.text)
    segs = [Segment(9.0 * i, 9.0 * (i + 1), s) for i, s in enumerate(said)]
    vectors = await service.models.call_query(text.embed, said)
    store = service.store(scope)
    await store.add_video(video_id, source, source, title)
    await store.put_text(video_id, segs, vectors, segs, segs, vectors)
    await store.update_video(video_id, status=VideoStatus.READY, duration=9.0 * len(said))


async def test_video_ids_of_80_bits_and_the_40_bit_ones_filed_before_both_work(service: Service) -> None:
    """New ids are 20 hex characters (80 bits); a video filed by an earlier version under its
    10-character id is still that video when its link is posted again, is named by its id in a
    question, and is forgotten by it; a new id is also found by its first characters."""
    from core.service import video_id_for

    sc = console("ids")
    old_link, new_link = "https://example.org/old.mp4", "https://example.org/new.mp4"
    old_id, new_id = video_id_for(sc, old_link, 10), video_id_for(sc, new_link)
    assert len(old_id) == 10 and len(new_id) == 20 and new_id == video_id_for(sc, new_link)
    said = ["Magma rises because it is lighter than the rock around it.", "Lava cools into basalt."]
    await _file(service, sc, old_id, old_link, "First lecture", said)
    await _file(service, sc, new_id, new_link, "Second lecture", said)

    again = await service.submit(sc, old_link)  # the same link: the same video, not a new one
    assert again.already and again.job.video_id == old_id
    for vid in (old_id, new_id):
        answer = await service.ask(sc, f"In video {vid}, why does magma rise?")
        assert answer.citations[0].video_id == vid, (vid, answer.citations)
    assert (await service.forget(sc, new_id[:8])).id == new_id
    assert (await service.forget(sc, old_id.upper())).id == old_id
    assert await service.videos(sc) == []

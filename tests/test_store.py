"""The vector store behaves the same on Milvus Lite (a file) and on a real Milvus server
(`MILVUS_URI=http://…`): what a scope writes it finds, no scope sees another's vectors, and
deleting a video or a whole scope removes exactly that.

Video ids differ between channels (core.service derives them from the scope), but nothing may
depend on it: Milvus Lite 3.2 keeps one row per primary key in a collection (a row written in
another partition with the same key replaces it; a delete by key reaches every partition), so
primary keys carry the channel (`s_<hash>/<video id>:t<n>`), and
`test_a_video_id_repeated_in_another_channel_cannot_touch_this_ones` gives two channels one
video id on purpose.

The server variant runs against `MILVUS_SERVER_URI` (default http://127.0.0.1:19530), which
`scripts/test.sh` starts from PyPI `milvus==2.3.5` (scripts/milvus-server.sh). Run alone, it is
skipped when nothing listens there; with `VIDRAG_REQUIRE_MILVUS_SERVER=1` (as CI sets) it fails
instead. On Milvus Lite each test has collections of its own; on the server the module's tests share
one pair (creating a collection with its index and loading it takes seconds there), dropped at the
module's end so a shared server stays clean, and each test writes to channels of its own (`scope`
puts a tag of the test's own in the workspace).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from core.models import Frame, Scope, Segment
from core.store.catalog import SqliteCatalog
from core.store.scoped import ScopedStore, VectorStore

SERVER = os.environ.get("MILVUS_SERVER_URI", "http://127.0.0.1:19530")
DIM, IMAGE_DIM = 8, 4


def _server_up() -> bool:
    u = urlparse(SERVER)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 19530), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["lite", "server"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "lite":
        return str(tmp_path / "milvus.db")
    if not _server_up():
        if os.environ.get("VIDRAG_REQUIRE_MILVUS_SERVER") == "1":
            pytest.fail(f"no Milvus server at {SERVER}, and VIDRAG_REQUIRE_MILVUS_SERVER=1")
        pytest.skip(f"no Milvus server at {SERVER} (start one: scripts/milvus-server.sh start)")
    return SERVER


@pytest.fixture(scope="module")
def server_tag() -> Iterator[str]:
    """The tag of the collections the server variants share, made by the first test that opens them."""
    tag = uuid.uuid4().hex[:8]
    yield tag
    if _server_up():
        from core.store.vectors import _pymilvus_client

        client = _pymilvus_client()(uri=SERVER)
        for c in client.list_collections():
            if tag in c:
                client.drop_collection(c)
        client.close()


@pytest.fixture
def tag(uri: str, request: pytest.FixtureRequest) -> str:
    """Collections of this test alone (Milvus Lite), or the module's (server)."""
    return request.getfixturevalue("server_tag") if uri == SERVER else uuid.uuid4().hex[:8]


@pytest.fixture
def scope() -> Callable[[str, str, str], Scope]:
    """Scope(platform, workspace, channel) with a workspace of this test's own: no other test's
    vectors are in its channels, whichever collections it shares."""
    run = uuid.uuid4().hex[:6]
    return lambda platform, workspace, channel: Scope(platform, f"{workspace}-{run}", channel)


@pytest.fixture
def vectors(uri: str, tag: str):
    vs = VectorStore(uri, f"t{tag}", DIM, f"i{tag}", IMAGE_DIM)
    yield vs
    if uri != SERVER:
        for c in (vs.text, vs.frames):
            vs.client.drop_collection(c)
    vs.close()


@pytest.fixture
async def catalog(tmp_path: Path):
    cat = await SqliteCatalog.open(tmp_path / "catalog.db")
    yield cat
    await cat.close()


def unit(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i % dim] = 1.0
    return v


async def put(store: ScopedStore, video_id: str, axis: int) -> None:
    """One text chunk and one frame for `video_id`, pointing along `axis`."""
    seg = Segment(10.0, 20.0, f"text of {video_id}")
    await store.put_text(video_id, [seg], np.stack([unit(axis)]), [seg])
    await store.put_frames(video_id, [Frame(12.0, f"/frames/{video_id}.jpg")], {},
                           np.stack([unit(axis, IMAGE_DIM)]))


async def test_search_finds_what_its_scope_wrote(vectors: VectorStore, catalog: SqliteCatalog,
                                                 scope: Callable[..., Scope]) -> None:
    store = ScopedStore(scope("slack", "T1", "C1"), vectors, catalog)
    await put(store, "v1", 0)
    await put(store, "v2", 1)
    text = await store.search_text(unit(1), 5)
    assert [h.video_id for h in text][:1] == ["v2"] and text[0].text == "text of v2"
    assert (text[0].start, text[0].end) == (10.0, 20.0)
    frames = await store.search_frames(unit(0, IMAGE_DIM), 5)
    assert frames[0].video_id == "v1" and frames[0].path == "/frames/v1.jpg" and frames[0].kind == "frame"


async def test_no_scope_sees_another_scopes_vectors(vectors: VectorStore, catalog: SqliteCatalog,
                                                    scope: Callable[..., Scope]) -> None:
    a = ScopedStore(scope("slack", "T1", "general"), vectors, catalog)
    b = ScopedStore(scope("slack", "T1", "random"), vectors, catalog)
    other_team = ScopedStore(scope("slack", "T2", "general"), vectors, catalog)
    await put(a, "va", 0)
    await put(b, "vb", 0)
    assert {h.video_id for h in await a.search_text(unit(0), 10)} == {"va"}
    assert {h.video_id for h in await b.search_text(unit(0), 10)} == {"vb"}
    assert {h.video_id for h in await b.search_frames(unit(0, IMAGE_DIM), 10)} == {"vb"}
    assert await other_team.search_text(unit(0), 10) == []
    assert await other_team.vector_video_ids() == set()


async def test_drop_vectors_removes_one_video_only(vectors: VectorStore, catalog: SqliteCatalog,
                                                   scope: Callable[..., Scope]) -> None:
    store = ScopedStore(scope("discord", "G1", "lectures"), vectors, catalog)
    other = ScopedStore(scope("discord", "G1", "other"), vectors, catalog)
    await put(store, "v1", 0)
    await put(store, "v2", 1)
    await put(other, "v3", 0)
    await store.drop_vectors(["v1", "v3"])  # v3 is another channel's: out of reach
    assert await store.vector_video_ids() == {"v2"}
    assert {h.video_id for h in await store.search_text(unit(0), 10)} == {"v2"}
    assert await other.vector_video_ids() == {"v3"}
    assert vectors.count(vectors.text, store.partition) == 1


async def test_drop_partition_forgets_one_scope(vectors: VectorStore, catalog: SqliteCatalog,
                                                scope: Callable[..., Scope]) -> None:
    gone = ScopedStore(scope("console", "local", "gone"), vectors, catalog)
    kept = ScopedStore(scope("console", "local", "kept"), vectors, catalog)
    await put(gone, "v1", 0)
    await put(kept, "v2", 0)
    await gone.search_text(unit(0), 1)  # loaded and searched: a server refuses to drop it unreleased
    vectors.drop_partition(gone.partition)
    assert gone.partition not in vectors.client.list_partitions(vectors.text)
    assert await gone.search_text(unit(0), 10) == []
    assert {h.video_id for h in await kept.search_text(unit(0), 10)} == {"v2"}
    await put(gone, "v3", 1)  # the scope can start again
    assert {h.video_id for h in await gone.search_text(unit(1), 10)} == {"v3"}


async def test_a_new_store_object_finds_existing_partitions(uri: str, tag: str, catalog: SqliteCatalog,
                                                             scope: Callable[..., Scope]) -> None:
    """A restarted bot (or a second worker on a server) sees what was written before."""
    first = await asyncio.to_thread(VectorStore, uri, f"t{tag}", DIM, f"i{tag}", IMAGE_DIM)
    where = scope("slack", "T9", "C9")
    try:
        await put(ScopedStore(where, first, catalog), "v1", 2)
        if "://" not in uri:
            await asyncio.to_thread(first.close)  # Milvus Lite: one process (here, one client) per file at a time
        second = await asyncio.to_thread(VectorStore, uri, f"t{tag}", DIM, f"i{tag}", IMAGE_DIM)
        hits = await ScopedStore(where, second, catalog).search_text(unit(2), 3)
        assert [h.video_id for h in hits] == ["v1"]

        def drop() -> None:
            if "://" not in uri:  # the server's collections are the module's
                for c in (second.text, second.frames):
                    second.client.drop_collection(c)
            second.close()

        await asyncio.to_thread(drop)
    finally:
        if "://" in uri:
            await asyncio.to_thread(first.close)


@pytest.mark.parametrize("layout", ["partition", "key"])
async def test_a_video_id_repeated_in_another_channel_cannot_touch_this_ones(
        uri: str, tag: str, catalog: SqliteCatalog, scope: Callable[..., Scope], layout: str) -> None:
    """Issue 22, item 6: a member who finds a link whose id collides with a victim's video indexes
    it in a DM and forgets it there. The victim's vectors, frames and answers stay; before keys
    carried the channel, Milvus Lite (partition layout) lost the victim's rows at the attacker's
    insert, and the attacker's delete by key removed them for good."""
    vs = await asyncio.to_thread(VectorStore, uri, f"t{tag}", DIM, f"i{tag}", IMAGE_DIM, layout=layout)
    try:
        victim = ScopedStore(scope("discord", "G1", "lectures"), vs, catalog)
        attacker = ScopedStore(scope("discord", "dm", "D1"), vs, catalog)
        same = "0123456789abcdef0123"
        await put(victim, same, 0)
        await put(attacker, same, 1)
        assert {h.video_id for h in await attacker.search_text(unit(1), 10)} == {same}
        await attacker.delete_video(same)
        assert await attacker.vector_video_ids() == set()
        assert [h.text for h in await victim.search_text(unit(0), 10)] == [f"text of {same}"]
        assert [h.video_id for h in await victim.search_frames(unit(0, IMAGE_DIM), 10)] == [same]
        assert vs.count(vs.text, victim.partition) == 1 and vs.count(vs.frames, victim.partition) == 1  # type: ignore[arg-type]
        assert [r["id"] for r in vs.rows(vs.text, victim.partition, "", ["id"])] == [f"{same}:t0"]
    finally:
        if uri != SERVER:
            for c in (vs.text, vs.frames):
                vs.client.drop_collection(c)
        await asyncio.to_thread(vs.close)

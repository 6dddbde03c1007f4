"""Milvus shared by several processes, and the two channel layouts (core/store/vectors.py).

Two `VectorStore` objects with their own clients stand for two processes (a chat process and a
worker): they share a `milvus-lite server` (Milvus Lite allows one process per file; its server
serves one data dir to several clients) or the real Milvus 2.3 server that `scripts/test.sh`
starts (skipped when absent, failed with VIDRAG_REQUIRE_MILVUS_SERVER=1, as in tests/test_store.py).
Each test uses collections of its own and drops them, except on the server: there a collection and
its index take seconds to create, so the module's tests share one set of collections per layout
(dropped at the module's end) and keep apart by channel (`ab`: two channels of the test's own).
The layout migration moves whole collections and keeps collections of its own everywhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.models import Scope
from core.store.migrate import migrate_layout
from core.store.vectors import KEY_FIELD, VectorStore
from tests.test_store import SERVER, _server_up, server_tag  # noqa: F401 - a module fixture, one set of collections per module

DIM, IMAGE_DIM = 8, 4
MILVUS_LITE = Path(sys.executable).with_name("milvus-lite")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def lite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`milvus-lite server` on an ephemeral port: Milvus Lite's data, reachable by several clients."""
    port = _free_port()
    proc = subprocess.Popen([str(MILVUS_LITE), "server", "--data-dir", str(tmp_path_factory.mktemp("lite")),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "milvus-lite server exited during start-up"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _server() -> str:
    if not _server_up():
        if os.environ.get("VIDRAG_REQUIRE_MILVUS_SERVER") == "1":
            pytest.fail(f"no Milvus server at {SERVER}, and VIDRAG_REQUIRE_MILVUS_SERVER=1")
        pytest.skip(f"no Milvus server at {SERVER} (start one: scripts/milvus-server.sh start)")
    return SERVER


@pytest.fixture(params=["lite-server", "server"])
def shared_uri(request: pytest.FixtureRequest) -> str:
    """A Milvus that several clients (processes) reach at once."""
    return request.getfixturevalue("lite_server") if request.param == "lite-server" else _server()


@pytest.fixture(params=["lite", "server"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db") if request.param == "lite" else _server()


class Stores:
    """Opens VectorStores on one set of collections and drops those collections at the end (unless
    `tag` names the module's collections, which `server_tag` drops)."""

    def __init__(self, uri: str, tag: str = "") -> None:
        self.uri, self.tag, self.opened = uri, tag or uuid.uuid4().hex[:8], []  # type: ignore[var-annotated]
        self.shared = bool(tag)

    def open(self, layout: str = "partition") -> VectorStore:
        vs = VectorStore(self.uri, f"t{self.tag}", DIM, f"i{self.tag}", IMAGE_DIM, layout=layout)
        self.opened.append(vs)
        return vs

    def close(self) -> None:
        for vs in self.opened[:1] if not self.shared else []:
            for c in vs.client.list_collections():
                if self.tag in c:
                    vs.client.drop_collection(c)
        for vs in self.opened:
            vs.close()


def _stores(uri: str, request: pytest.FixtureRequest) -> Stores:
    return Stores(uri, request.getfixturevalue("server_tag") if uri == SERVER else "")


@pytest.fixture
def stores(shared_uri: str, request: pytest.FixtureRequest) -> Iterator[Stores]:
    s = _stores(shared_uri, request)
    yield s
    s.close()


@pytest.fixture
def own(uri: str, request: pytest.FixtureRequest) -> Iterator[Stores]:
    s = _stores(uri, request)
    yield s
    s.close()


@pytest.fixture
def own_collections(uri: str) -> Iterator[Stores]:
    """Collections of this test alone, on Milvus Lite or the server."""
    s = Stores(uri)
    yield s
    s.close()


@pytest.fixture
def ab() -> tuple[Scope, Scope]:
    """Two channels of one Discord server of this test's own: no other test wrote to them."""
    guild = f"G1-{uuid.uuid4().hex[:6]}"
    return Scope("discord", guild, "lectures"), Scope("discord", guild, "random")


def unit(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i % dim] = 1.0
    return v


def put(vs: VectorStore, scope: Scope, video_id: str, axis: int, n: int = 1) -> None:
    rows = [{"id": f"{video_id}:t{i}", "vector": unit(axis).tolist(), "video_id": video_id, "start": 10.0 * i,
             "end": 10.0 * i + 5, "kind": "speech", "text": f"text of {video_id}"} for i in range(n)]
    vs.insert(vs.text, scope.partition, rows)


def put_frame(vs: VectorStore, scope: Scope, video_id: str, axis: int) -> None:
    vs.insert(vs.frames, scope.partition, [{  # type: ignore[arg-type]
        "id": f"{video_id}:f0", "vector": unit(axis, IMAGE_DIM).tolist(), "video_id": video_id,
        "start": 1.0, "end": 1.0, "kind": "frame", "path": "/f.jpg"}])


def found(vs: VectorStore, scope: Scope, axis: int = 0) -> set[str]:
    return {h.video_id for h in vs.search(vs.text, scope.partition, unit(axis), 10, "text")}


@pytest.mark.parametrize("layout", ["partition", "key"])
def test_a_channel_indexed_by_another_process_is_found(stores: Stores, ab: tuple[Scope, Scope], layout: str) -> None:
    A, _ = ab
    chat = stores.open(layout)  # opened first: it has never heard of the channel
    worker = stores.open(layout)
    assert found(chat, A) == set()
    put(worker, A, "v1", 0)
    assert found(chat, A) == {"v1"}
    assert chat.video_ids(chat.text, A.partition) == {"v1"}


@pytest.mark.parametrize("layout", ["partition", "key"])
def test_a_channel_wiped_by_another_process_is_indexed_again(stores: Stores, ab: tuple[Scope, Scope],
                                                              layout: str) -> None:
    A, B = ab
    chat, worker = stores.open(layout), stores.open(layout)
    put(worker, A, "v1", 0)
    put(worker, B, "v9", 0)
    assert found(worker, A) == {"v1"}  # the worker knows the channel
    chat.drop_scope(A.partition)
    assert found(worker, A) == set()
    put(worker, A, "v2", 1)  # the partition it knew is gone: re-created, not an error
    assert found(chat, A, 1) == {"v2"} and found(worker, A, 1) == {"v2"}
    assert found(chat, B) == {"v9"}


def test_key_layout_keeps_channels_apart(own: Stores, ab: tuple[Scope, Scope]) -> None:
    A, B = ab
    vs = own.open("key")
    assert vs.layout == "key" and vs.text.endswith("_pk") and vs.frames and vs.frames.endswith("_pk")
    put(vs, A, "va", 0, n=3)
    put(vs, B, "vb", 0, n=2)
    assert found(vs, A) == {"va"} and found(vs, B) == {"vb"}
    assert found(vs, Scope("slack", "T1", "C1")) == set()
    assert vs.count(vs.text, A.partition) == 3
    assert {r["id"] for r in vs.rows(vs.text, B.partition, "", ["id"])} == {"vb:t0", "vb:t1"}
    vs.delete(vs.text, A.partition, ["va", "vb"])  # vb is B's: out of A's reach
    assert vs.count(vs.text, A.partition) == 0 and vs.count(vs.text, B.partition) == 2


def test_key_layout_wipe_removes_the_whole_channel_only(own: Stores, ab: tuple[Scope, Scope]) -> None:
    A, B = ab
    va, vb = (f"{v}-{A.workspace[-6:]}" for v in ("va", "vb"))  # video ids of this test alone
    vs = own.open("key")
    put(vs, A, va, 0, n=40)
    put(vs, B, vb, 0, n=5)
    put_frame(vs, A, va, 0)
    vs.drop_scope(A.partition)
    assert vs.count(vs.text, A.partition) == 0 and vs.count(vs.frames, A.partition) == 0  # type: ignore[arg-type]
    assert vs.count(vs.text, B.partition) == 5
    # every row left of this test's videos, read past any channel's key, carries B's key: nothing of
    # A hides under another id (the collections may hold other tests' channels: they are not read)
    left = vs.client.query(vs.text, filter=f'video_id in ["{va}", "{vb}"]', output_fields=[KEY_FIELD], limit=100)
    assert {r[KEY_FIELD] for r in left} == {B.partition}


def test_no_read_without_a_channel(own: Stores) -> None:
    for layout in ("partition", "key"):
        vs = own.open(layout)
        with pytest.raises(ValueError, match="channel"):
            vs.rows(vs.text, "", "", ["id"])


def test_auto_keeps_the_layout_a_deployment_has(tmp_path: Path) -> None:
    s = Stores(str(tmp_path / "milvus.db"))
    try:
        first = s.open("auto")
        assert first.layout == "partition"  # a new Milvus Lite file: partitions, as before
        first.close()
        s.opened.clear()
        s.open("key").close()  # a key-layout collection now exists beside it
        s.opened.clear()
        assert s.open("auto").layout == "key"
    finally:
        s.close()


def test_migration_moves_every_channel_to_the_key_layout(own_collections: Stores, ab: tuple[Scope, Scope]) -> None:
    own, (A, B) = own_collections, ab
    old = own.open("partition")
    put(old, A, "va", 0, n=30)
    put(old, B, "vb", 1, n=4)
    put_frame(old, B, "vb", 1)
    old_names = (old.text, old.frames)
    if "://" not in own.uri:
        old.close()  # Milvus Lite: one client per file
        own.opened.clear()
    report = migrate_layout(own.uri, f"t{own.tag}", DIM, f"i{own.tag}", IMAGE_DIM, batch=7)
    assert report["channels"] == 2 and report["rows"] == 35
    new = own.open("auto")
    assert new.layout == "key"
    assert not any(new.client.has_collection(c) for c in old_names)
    assert found(new, A) == {"va"} and found(new, B, 1) == {"vb"}
    assert new.count(new.text, A.partition) == 30 and new.count(new.frames, B.partition) == 1  # type: ignore[arg-type]
    assert {r["id"] for r in new.rows(new.frames, B.partition, "", ["id", "path"])} == {"vb:f0"}  # type: ignore[arg-type]


def test_rows_keyed_before_keys_carried_the_channel_are_read_and_deleted(own: Stores, ab: tuple[Scope, Scope]) -> None:
    """A partition-layout collection written by an earlier vidrag holds keys without the channel
    (`<video>:t<n>`): they are still found, listed with the ids they were given, and deleted."""
    A, B = ab
    vs = own.open("partition")
    put(vs, B, "vb", 0)
    put(vs, A, "va-new", 1)  # makes A's partition
    vs.client.insert(vs.text, [{"id": "va:t0", "vector": unit(0).tolist(), "video_id": "va", "start": 0.0,
                                "end": 5.0, "kind": "speech", "text": "old"}], partition_name=A.partition)
    vs.client.flush(vs.text)
    assert found(vs, A) == {"va", "va-new"}
    assert {r["id"] for r in vs.rows(vs.text, A.partition, "", ["id"])} == {"va:t0", "va-new:t0"}
    vs.delete(vs.text, A.partition, ["va"])
    assert found(vs, A) == {"va-new"} and found(vs, B) == {"vb"}

"""The Milvus side of the store: a text collection and a frame collection, each channel's rows
kept apart by one of two layouts.

Collection names carry the embedding model and dimension (`text_gtallminilml6v2_384`,
`frames_vitb32_512`), so changing a model never mixes vector spaces; fields
`id, vector, video_id, start, end, kind, text|path`. The channel (`Scope.partition`, `s_<hash>`)
is kept apart by:

- `partition` layout: one Milvus partition per channel. A channel's search touches only its own
  rows and wiping it drops a partition; a Milvus 2.3 server refuses the 4,097th partition.
- `key` layout: one more field, `scope_key`, declared the partition key, holding the channel;
  Milvus hashes it into a fixed set of physical partitions, so channels are unbounded. Its
  collections end in `_pk`, so the two layouts never mix.

In both layouts a row's primary key carries its channel (`s_<hash>/<video>:t<n>`; `rows` gives
back the id without it). Milvus Lite keeps one row per primary key in a whole collection: a row
written in one partition with a key another partition already holds replaces that row, and a
delete by key in one partition deletes the key in all of them. With keys of the video alone, a
video id repeated in two channels (40-bit ids could be made to collide) let one channel's
indexing and `forget` erase the other's vectors (tests/test_store.py). Rows written before keys
carried the channel keep their old keys and are still read and deleted (a delete is by keys found
by a query bound to the channel; Milvus Lite's one row per key means such a key is this
channel's).

`_bound` is the one place a read or delete is tied to a channel, whichever the layout: no method
here searches, queries or deletes without it. Only `core.store.scoped.ScopedStore` calls this class,
always with its own channel.

Several processes may share one Milvus server (a chat process, workers): nothing here trusts a
cached list of partitions. A partition missing from the cache is looked up (`has_partition`, ~1 ms,
only on a miss); one another process dropped is noticed by the error it causes and re-created
on insert. Reads use Session consistency: a process sees its own writes at once, another
process's inserts as soon as they are flushed (each video's are), and a server answers in ~2 ms
instead of the ~400 ms a Strong read waits for the next time tick.

pymilvus' sync client does the work (Milvus Lite's async client cannot create collections) on one
dedicated thread, so Milvus Lite sees one caller at a time and the event loop never waits on it.

A Milvus server may go away (a pod rescheduled, a restart) and come back. pymilvus reconnects by
itself; what it does not do is wait for the server: a call fails at once while it is down, waits
for its connect timeout (10 s) while it starts, and answers "collection not loaded" for a few
seconds after, while the server loads its collections again. So every call that may be repeated
(reads, deletes, flushes, schema calls) is retried with a growing delay for up to
SERVER_TIMEOUT_SECONDS (`_healing`; a second while the server is known to be down), and
collections a server lost the load of are loaded again; an insert is
never repeated here (Milvus does not deduplicate primary keys: a batch the server took before the
connection dropped would be stored twice), its caller decides (`core.jobs.worker` drops the
video's rows and stores them again). A server still unreachable raises `Unavailable`, logged once
per outage in one sentence that names MILVUS_URI.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np

from core.errors import Outage, Unavailable
from core.store.lite_lock import is_lite

log = logging.getLogger(__name__)

Layout = Literal["partition", "key"]
LAYOUTS = ("partition", "key", "auto")
KEY_FIELD = "scope_key"
KEY_SUFFIX = "_pk"
KEY_PARTITIONS = 64  # physical partitions of a key-layout collection (Milvus' default is 16)
READ = "Session"  # consistency of searches and queries (see the module docstring)
QUERY_LIMIT = 16384  # Milvus' cap on one query's offset + limit


# What pymilvus says when the server, not the request, is the trouble (lower case): down, starting,
# or loading its collections again after a restart
GONE = ("fail connecting", "server unavailable", "unavailable", "not ready", "not loaded", "deadline exceeded",
        "connection refused", "timed out", "no available", "recovering", "stopping", "connection reset",
        "state 'released'")
# ... and what it says when a server came back without loading the collections (`milvus-lite server`
# does not load them again; a Milvus 2.3 server does, a few seconds after it starts)
UNLOADED = ("not loaded", "state 'released'", "call load()")
T = TypeVar("T")


def connection_lost(e: BaseException) -> bool:
    """Did `e` (or what caused it) come from the server being unreachable or not ready?"""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, Unavailable):
            return False  # reported already, by an inner call
        code = getattr(x, "code", None)
        if callable(code) and type(x).__module__.startswith("grpc"):
            with contextlib.suppress(Exception):
                if getattr(code(), "name", "") in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    return True
        if type(x).__module__.startswith(("pymilvus", "grpc")) and any(g in str(x).lower() for g in GONE):
            return True
        todo += [x.__cause__, x.__context__]
    return False


def server_name(uri: str) -> str:
    """The Milvus of `uri` for the log, without credentials."""
    if is_lite(uri):
        return f"Milvus Lite at {uri}"
    parts = urlsplit(uri)
    return f"the Milvus server at {parts.scheme}://{parts.hostname}:{parts.port or 19530}"


def _cause(e: BaseException) -> str:
    """pymilvus' one-line reason (`<MilvusException: (code=2, message=…)>` → the message)."""
    text = str(getattr(e, "message", "") or e)
    return " ".join(text.split())[:200] or type(e).__name__


def _healing(method: Callable[..., T]) -> Callable[..., T]:
    """A VectorStore call that may be repeated: retried while the server is away (see the module)."""

    @functools.wraps(method)
    def call(self: VectorStore, *args: Any, **kw: Any) -> T:
        return self._patiently(lambda: method(self, *args, **kw), repeat=True)

    return call


def _once(method: Callable[..., T]) -> Callable[..., T]:
    """A VectorStore call that must not be repeated (an insert): `Unavailable` at its first failure."""

    @functools.wraps(method)
    def call(self: VectorStore, *args: Any, **kw: Any) -> T:
        return self._patiently(lambda: method(self, *args, **kw), repeat=False)

    return call


@dataclass(frozen=True)
class VectorHit:
    video_id: str
    start: float
    end: float
    kind: str
    text: str  # chunk text, or the frame path in the frame collection
    score: float


def _pymilvus_client() -> type:
    """pymilvus reads MILVUS_URI itself when imported and refuses a file path there, which is
    exactly what vidrag's MILVUS_URI holds for Milvus Lite: hide it during that import (vidrag
    has read it into Settings already)."""
    saved = os.environ.pop("MILVUS_URI", None)
    try:
        from pymilvus import MilvusClient  # type: ignore[import-untyped]
    finally:
        if saved is not None:
            os.environ["MILVUS_URI"] = saved
    return MilvusClient


def _quiet_pymilvus() -> None:
    """pymilvus logs every failed call with its traceback at ERROR (on its own handler): an outage
    of a minute printed hundreds. vidrag raises those errors and reports an outage once."""
    for name in ("pymilvus", "pymilvus.milvus_client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def connect(uri: str, timeout: float = 5.0) -> Any:
    """A MilvusClient for `uri`, or `Unavailable` within about `timeout` seconds."""
    client_type = _pymilvus_client()
    _quiet_pymilvus()
    try:
        return client_type(uri=uri, timeout=timeout)
    except Exception as e:
        if not connection_lost(e):
            raise
        raise Unavailable(server_name(uri), "MILVUS_URI", _cause(e)) from e


def existing_collections(uri: str, timeout: float = 5.0) -> list[str]:
    """The collections of the Milvus at `uri`; none for a Milvus Lite folder not made yet."""
    if is_lite(uri) and not os.path.exists(uri):
        return []
    client = connect(uri, timeout)
    try:
        return list(client.list_collections())
    finally:
        client.close()


def collection_names(text_model: str, text_dim: int, image_model: str | None, image_dim: int,
                     layout: Layout, prefix: str = "") -> tuple[str, str | None]:
    """The text and frame collection names of `layout` (frames None when there is no image model)."""
    tail = KEY_SUFFIX if layout == "key" else ""
    text = f"{prefix}text_{text_model}_{text_dim}{tail}"
    return text, (f"{prefix}frames_{image_model}_{image_dim}{tail}" if image_model else None)


def choose_layout(client: Any, wanted: str, uri: str, names: dict[Layout, str]) -> Layout:
    """`wanted` unless it is "auto": then the layout whose text collection already exists (never
    switch a deployment's layout silently; `vidrag migrate-layout` does that), else `key` on a
    Milvus server (it refuses a 4,097th partition) and `partition` on Milvus Lite, whose
    per-channel search stays fastest there at the channel counts measured in docs/scaling.md."""
    if wanted not in LAYOUTS:
        raise ValueError(f"MILVUS_LAYOUT must be one of {', '.join(LAYOUTS)}, not {wanted!r}")
    if wanted != "auto":
        return wanted  # type: ignore[return-value]
    for layout in ("key", "partition"):
        if client.has_collection(names[layout]):
            return layout
    return "partition" if is_lite(uri) else "key"


def _lite_key_bucket(client: Any, collection: str) -> Callable[[str], str] | None:
    """Milvus Lite 3 only: the bucket partition a key-layout channel's rows are in, or None.

    Milvus Lite hashes a partition key into a fixed set of partitions (`_pk_<md5 % n>`,
    `milvus_lite.engine.collection`) but a search filtered by the key still visits every bucket,
    and its search loops in Python over every row it visits (dedup and delete masks,
    `milvus_lite.search.executor_indexed`). Naming the channel's bucket beside the filter cut a
    search over 400 one-video channels from 5.8 to 1.8 ms (bench/scale.py: 5,000 channels). The
    filter stays: the bucket only narrows where Milvus looks. Used only when the collection has
    the buckets this hash names, so a Milvus Lite that buckets otherwise is searched as before."""
    try:
        from milvus_lite.constants import DEFAULT_NUM_PARTITIONS, PARTITION_KEY_BUCKET_PREFIX  # type: ignore[import-untyped]
    except ImportError:
        return None
    n, prefix = int(DEFAULT_NUM_PARTITIONS), str(PARTITION_KEY_BUCKET_PREFIX)
    if set(client.list_partitions(collection)) < {f"{prefix}{i}" for i in range(n)}:
        return None

    def bucket(key: str) -> str:
        return f"{prefix}{int(hashlib.md5(key.encode()).hexdigest(), 16) % n}"  # noqa: S324 - Lite's own hash

    return bucket


def own_key(partition: str, row_id: str) -> str:
    """The primary key a row of `partition` is stored under: its id with the channel in front."""
    return f"{partition}/{row_id}"


def video_key(partition: str, key: str) -> str:
    """A stored primary key as `insert` was given it: without the channel (keys written before
    they carried it are returned as they are)."""
    return key.removeprefix(f"{partition}/")


class VectorStore:
    """The two Milvus collections. Methods block; `ScopedStore` calls them on `self.executor`."""

    def __init__(self, uri: str, text_model: str, text_dim: int,
                 image_model: str | None = None, image_dim: int = 0,
                 layout: str = "partition", prefix: str = "", timeout: float = 5.0) -> None:
        # Milvus Lite 3.x answers AllocTimestamp with "not implemented" during create_collection and
        # pymilvus' embedded gRPC server logs that harmless refusal as a traceback.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        if is_lite(uri):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.timeout = timeout  # SERVER_TIMEOUT_SECONDS: how long a call waits for a server that went away
        self.outage = Outage(log, server_name(uri))
        self.client = connect(uri, timeout)
        names: dict[Layout, str] = {lay: collection_names(text_model, text_dim, image_model, image_dim, lay,
                                                          prefix)[0] for lay in ("partition", "key")}
        self.layout: Layout = self._patiently(lambda: choose_layout(self.client, layout, uri, names), repeat=True)
        self.text, self.frames = collection_names(text_model, text_dim, image_model, image_dim,
                                                  self.layout, prefix)
        self._partitions: dict[str, set[str]] = {}  # partition layout: partitions seen to exist
        self._defer_flush = 0
        self._ensure(self.text, text_dim, "text", 8192)
        if self.frames:
            self._ensure(self.frames, image_dim, "path", 1024)
        # collection -> channel key -> Milvus Lite bucket partition (key layout on Milvus Lite only)
        self._buckets: dict[str, Callable[[str], str]] = {}
        if self.layout == "key" and is_lite(uri):
            for c in filter(None, (self.text, self.frames)):
                if (b := _lite_key_bucket(self.client, c)) is not None:
                    self._buckets[c] = b
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="milvus")

    @classmethod
    def from_settings(cls, settings: Any, text_model: str, text_dim: int,
                      image_model: str | None = None, image_dim: int = 0) -> VectorStore:
        """The store `settings` describe (MILVUS_URI, MILVUS_LAYOUT, MILVUS_PREFIX,
        SERVER_TIMEOUT_SECONDS)."""
        return cls(settings.milvus, text_model, text_dim, image_model, image_dim,
                   layout=getattr(settings, "milvus_layout", "partition"),
                   prefix=getattr(settings, "milvus_prefix", ""),
                   timeout=getattr(settings, "server_timeout_seconds", 5.0))

    # ---- a server that goes away ----------------------------------------------------------------
    def _patiently(self, fn: Callable[[], T], repeat: bool) -> T:
        """`fn()`; while the server is unreachable, `fn()` again after 0.2, 0.4, … s for up to
        `timeout` seconds (`repeat`; one try while an outage is known), then `Unavailable`."""
        wait = min(1.0, self.timeout) if self.outage.down else self.timeout
        deadline = time.monotonic() + (wait if repeat else 0.0)
        delay = 0.2
        while True:
            try:
                out = fn()
            except Exception as e:
                if not connection_lost(e):
                    raise
                if any(u in str(e) for u in UNLOADED):
                    self._reload()
                if time.monotonic() + delay > deadline:
                    err = Unavailable(server_name(self.uri), "MILVUS_URI", _cause(e))
                    self.outage.failed(err.detail)
                    raise err from e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.outage.ok()
            return out

    def _reload(self) -> None:
        """Load the collections again (a no-op for one that is loaded); a failure is the next
        try's to report."""
        for c in filter(None, (self.text, getattr(self, "frames", None))):
            with contextlib.suppress(Exception):
                self.client.load_collection(c, timeout=self.timeout)

    @_healing
    def _ensure(self, name: str, dim: int, payload: str, max_len: int) -> None:
        from pymilvus import DataType  # imported by _pymilvus_client() already

        if not self.client.has_collection(name):
            key = self.layout == "key"
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            # ids carry the channel (`s_<hash>/<video>:t<n>`, 26 + 1 + 20 + 2 + digits: collections
            # made with 64 before still hold them), so they are unique across channels
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("video_id", DataType.VARCHAR, max_length=32)
            schema.add_field("start", DataType.FLOAT)
            schema.add_field("end", DataType.FLOAT)
            schema.add_field("kind", DataType.VARCHAR, max_length=16)
            schema.add_field(payload, DataType.VARCHAR, max_length=max_len)
            if key:
                schema.add_field(KEY_FIELD, DataType.VARCHAR, max_length=64, is_partition_key=True)
            index = self.client.prepare_index_params()
            index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="IP")
            # Strong by default (a bare client read sees every write); vidrag's own reads ask for
            # Session (READ), which a server answers without waiting for a time tick.
            extra = {"num_partitions": KEY_PARTITIONS} if key else {}
            self.client.create_collection(name, schema=schema, index_params=index,
                                          consistency_level="Strong", **extra)
        else:
            self._load(name)
        if self.layout == "partition":
            self._partitions[name] = set(self.client.list_partitions(name))

    def _load(self, name: str, tries: int = 40) -> None:
        """Load a collection another process may be creating: `create_collection` makes the
        collection, then its index, then loads it, so a process that sees the collection in
        between gets "index not found" (seen in the two-host test under load); wait for it."""
        for attempt in range(tries):
            try:
                self.client.load_collection(name)
                return
            except Exception as e:  # pymilvus' MilvusException; its import is lazy here
                if "index not found" not in str(e).lower() or attempt == tries - 1:
                    raise
                time.sleep(0.25)

    # ---- the one place a channel is bound -------------------------------------------------------
    def _bound(self, partition: str, expr: str = "") -> dict[str, Any]:
        """Keyword arguments that tie a search, query or delete to one channel: its partition
        (partition layout) or a filter on its key (key layout), `expr` and-ed to it."""
        if not partition:
            raise ValueError("a vector read or delete needs a channel")
        if self.layout == "key":
            own = f"{KEY_FIELD} == {json.dumps(partition)}"
            return {"filter": f"{own} and ({expr})" if expr else own}
        return {"partition_names": [partition], "filter": expr}

    def _exists(self, collection: str, partition: str) -> bool:
        """Partition layout: does `partition` exist? From the cache, else asked (only on a miss:
        another process may have created it since)."""
        if not partition:
            raise ValueError("a vector read or delete needs a channel")
        known = self._partitions[collection]
        if partition in known:
            return True
        if self.client.has_partition(collection, partition):
            known.add(partition)
            return True
        return False

    def _gone(self, collection: str, partition: str, error: Exception) -> bool:
        """After `error`: was it because another process dropped the partition? Forget it if so."""
        if self.layout == "key" or self.client.has_partition(collection, partition):
            return False
        log.info("partition %s of %s was dropped elsewhere (%s)", partition, collection, error)
        self._partitions[collection].discard(partition)
        return True

    def _create(self, collection: str, partition: str) -> None:
        try:
            self.client.create_partition(collection, partition)
        except Exception:  # another process may have created it a moment ago
            if not self.client.has_partition(collection, partition):
                raise
        self._partitions[collection].add(partition)

    # ---- writes ---------------------------------------------------------------------------------
    @_once
    def insert(self, collection: str, partition: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not partition:
            raise ValueError("a vector write needs a channel")
        rows = [{**r, "id": own_key(partition, r["id"])} for r in rows]
        if self.layout == "key":
            rows = [{**r, KEY_FIELD: partition} for r in rows]
            for i in range(0, len(rows), 512):
                self.client.insert(collection, rows[i:i + 512])
        else:
            if not self._exists(collection, partition):
                self._create(collection, partition)
            for i in range(0, len(rows), 512):
                batch = rows[i:i + 512]
                try:
                    self.client.insert(collection, batch, partition_name=partition)
                except Exception as e:  # MilvusException: a partition dropped by another process
                    if not self._gone(collection, partition, e):
                        raise
                    self._create(collection, partition)
                    self.client.insert(collection, batch, partition_name=partition)
        # Seal what a video wrote: Milvus Lite searches unsealed (growing) rows by brute force
        # without its index, and a channel of 100 freshly inserted videos answered in 300 ms
        # instead of 20-35 ms once flushed (bench/run.py, part 3). On a server, flushed rows are
        # also what other processes' Session reads see at once.
        if not self._defer_flush:
            self.client.flush(collection)

    @_once
    def insert_many(self, collection: str, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Bulk load (bench/scale.py): each channel's (partition's) rows, as `insert` takes them.
        In the key layout channels share batches: one call per 2,048 rows, not one per video
        (5,000 one-video channels are 5,000 calls of 17 rows otherwise)."""
        if self.layout == "partition":
            for partition, got in rows.items():
                self.insert(collection, partition, got)
            return
        keyed = [{**r, "id": own_key(p, r["id"]), KEY_FIELD: p} for p, got in rows.items() for r in got]
        for i in range(0, len(keyed), 2048):
            self.client.insert(collection, keyed[i:i + 2048])
        if not self._defer_flush:
            self.client.flush(collection)

    @contextlib.contextmanager
    def deferred_flush(self) -> Iterator[None]:
        """Many inserts, one flush per collection at the end (bulk loads: migration, bench)."""
        self._defer_flush += 1
        try:
            yield
        finally:
            self._defer_flush -= 1
            if not self._defer_flush:
                for c in filter(None, (self.text, self.frames)):
                    self._flush(c)

    @_healing
    def _flush(self, collection: str) -> None:
        self.client.flush(collection)

    # ---- reads ----------------------------------------------------------------------------------
    @_healing
    def search(self, collection: str, partition: str, vector: np.ndarray, limit: int,
               payload: str, video_id: str | None = None) -> list[VectorHit]:
        """The `limit` rows of one channel nearest `vector` (of one video when `video_id` is given)."""
        if self.layout == "partition" and not self._exists(collection, partition):
            return []
        bound = self._bound(partition, f"video_id == {json.dumps(video_id)}" if video_id is not None else "")
        if collection in self._buckets:
            bound["partition_names"] = [self._buckets[collection](partition)]
        try:
            res = self.client.search(
                collection, data=[vector.tolist()], limit=limit, **bound,
                output_fields=["video_id", "start", "end", "kind", payload],
                search_params={"metric_type": "IP"}, consistency_level=READ)
        except Exception as e:  # MilvusException: "partition name … not found" on a server
            if self._gone(collection, partition, e):
                return []
            raise
        return [VectorHit(e["entity"]["video_id"], float(e["entity"]["start"]), float(e["entity"]["end"]),
                          e["entity"]["kind"], e["entity"][payload], float(e["distance"]))
                for e in res[0]]

    @_healing
    def _query(self, collection: str, partition: str, expr: str, **kw: Any) -> list[dict[str, Any]]:
        if self.layout == "partition" and not self._exists(collection, partition):
            return []
        try:
            return list(self.client.query(collection, **self._bound(partition, expr or 'video_id != ""'),
                                          consistency_level=READ, **kw))
        except Exception as e:  # MilvusException
            if self._gone(collection, partition, e):
                return []
            raise

    def rows(self, collection: str, partition: str, expr: str, fields: Sequence[str],
             limit: int = QUERY_LIMIT) -> list[dict[str, Any]]:
        """Rows of one channel matching `expr` (empty: all), with `fields`. Ids come back as
        `insert` was given them, whatever the layout."""
        got = self._query(collection, partition, expr, output_fields=list(fields), limit=limit)
        return [{**r, "id": video_key(partition, r["id"])} if "id" in r else r for r in got]

    def video_ids(self, collection: str, partition: str) -> set[str]:
        """Every video id with vectors in this channel (the reconciler compares it to the catalog)."""
        return {r["video_id"] for r in self.rows(collection, partition, "", ["video_id"])}

    def count(self, collection: str, partition: str, expr: str = "") -> int:
        """Rows of one channel (matching `expr`), counted by Milvus: exact past a query's 16,384."""
        got = self._query(collection, partition, expr, output_fields=["count(*)"])
        return int(got[0]["count(*)"]) if got else 0

    # ---- deletes --------------------------------------------------------------------------------
    @_healing
    def delete(self, collection: str, partition: str, video_ids: Sequence[str]) -> None:
        if not video_ids:
            return
        ids = ",".join(json.dumps(v) for v in video_ids)
        if self.layout == "key":
            # The filter names the channel itself, and the keys carry it too.
            self.client.delete(collection, **self._bound(partition, f"video_id in [{ids}]"))
            self._settle(collection, partition)
            return
        # By primary key, after a query bound to the partition: Milvus Lite 3.2 applies a filtered
        # delete to every partition, whatever `partition_name` says, and a delete by key to every
        # row with that key; the keys carry the channel (see the module docstring), so only this
        # channel's rows have them.
        while True:
            rows = self._query(collection, partition, f"video_id in [{ids}]", output_fields=["id"],
                               limit=QUERY_LIMIT)
            if rows:
                self.client.delete(collection, ids=[r["id"] for r in rows], partition_name=partition)
                self._settle(collection, partition)
            if len(rows) < QUERY_LIMIT:
                return

    @_healing
    def _settle(self, collection: str, partition: str) -> None:
        """Wait until a delete is visible to this process's reads. A Milvus 2.3 server answers a
        delete with timestamp 0, so pymilvus' Session reads cannot wait for it and kept finding
        deleted rows; one Strong read (~0.1-0.4 s on a server, on the rare delete path) waits
        for the delete, and every later read is served past it."""
        self.client.query(collection, **self._bound(partition, 'video_id != ""'), output_fields=["count(*)"],
                          consistency_level="Strong")

    @_healing
    def drop_scope(self, partition: str) -> None:
        """Remove every vector of one channel (`wipe`): drop its partitions, or delete by its key."""
        for c in filter(None, (self.text, self.frames)):
            if self.layout == "key":
                self.client.delete(c, **self._bound(partition))
                self._settle(c, partition)
                continue
            if not self.client.has_partition(c, partition):  # asked: the cache may be stale
                self._partitions[c].discard(partition)
                continue
            # A server refuses to drop a loaded partition; `milvus-lite server` lacks
            # release_partitions (and has nothing to release).
            try:
                self.client.release_partitions(c, [partition])
            except Exception as e:  # noqa: BLE001 - MilvusException or gRPC "unimplemented"
                log.debug("release_partitions(%s, %s): %s", c, partition, e)
            self.client.drop_partition(c, partition)
            self._partitions[c].discard(partition)

    drop_partition = drop_scope  # the name core.service used before the key layout

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.client.close()

"""The two Milvus collections of the store and the two layouts that keep channels apart in them.

Collection names carry the embedding model and dimension (`text_gtallminilml6v2_384`,
`frames_vitb32_512`), so changing a model never mixes vector spaces; fields
`id, vector, video_id, start, end, kind, text|path`. The channel (`Scope.partition`, `s_<hash>`)
is kept apart by:

- `partition` layout: one Milvus partition per channel. A channel's search touches only its own
  rows and wiping it drops a partition; a Milvus 2.3 server refuses the 4,097th partition.
- `key` layout: one more field, `scope_key`, declared the partition key, holding the channel;
  Milvus hashes it into a fixed set of physical partitions, so channels are unbounded. Its
  collections end in `_pk`, so the two layouts never mix.

In both layouts a row's primary key carries its channel (`s_<hash>/<video>:t<n>`; `VectorStore.rows` gives
back the id without it). Milvus Lite keeps one row per primary key in a whole collection: a row
written in one partition with a key another partition already holds replaces that row, and a
delete by key in one partition deletes the key in all of them. With keys of the video alone, a
video id repeated in two channels (40-bit ids could be made to collide) let one channel's
indexing and `forget` erase the other's vectors (tests/test_store.py). Rows written before keys
carried the channel keep their old keys and are still read and deleted (a delete is by keys found
by a query bound to the channel; Milvus Lite's one row per key means such a key is this
channel's).

`_bound` is the one place a read or delete is tied to a channel, whichever the layout: no method
here or in `core.store.vectors` searches, queries or deletes without it.

Several processes may share one Milvus server (a chat process, workers): nothing here trusts a
cached list of partitions. A partition missing from the cache is looked up (`has_partition`, only
on a miss); one another process dropped is noticed by the error it causes and re-created on
insert. Reads use Session consistency: a process sees its own writes at once, another process's
inserts as soon as they are flushed (each video's are), and a server answers at once instead of
waiting, as a Strong read does, for the next time tick (docs/benchmarks.md, "Design figures").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from core.errors import Outage
from core.store.lite_lock import is_lite
from core.store.milvus import Patient, connect, healing, server_name

log = logging.getLogger(__name__)

Layout = Literal["partition", "key"]
LAYOUTS = ("partition", "key", "auto")
KEY_FIELD = "scope_key"
KEY_SUFFIX = "_pk"
KEY_PARTITIONS = 64  # physical partitions of a key-layout collection (Milvus' default is 16)
READ = "Session"  # consistency of searches and queries (see the module docstring)
QUERY_LIMIT = 16384  # Milvus' cap on one query's offset + limit


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
    `milvus_lite.search.executor_indexed`). Naming the channel's bucket beside the filter makes
    such a search about three times faster (bench/scale.py, docs/benchmarks.md). The
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



class Collections(Patient):
    """The text and frame collections of one Milvus, made when missing, and the channel binding
    of every read and delete; `VectorStore` adds the reads and writes."""

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

    def _reload(self) -> None:
        """Load the collections again (a no-op for one that is loaded); a failure is the next
        try's to report."""
        for c in filter(None, (self.text, getattr(self, "frames", None))):
            with contextlib.suppress(Exception):
                self.client.load_collection(c, timeout=self.timeout)

    @healing
    def _ensure(self, name: str, dim: int, payload: str, max_len: int) -> None:
        from pymilvus import DataType  # type: ignore[import-untyped]  # imported by _pymilvus_client() already

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


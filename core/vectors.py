"""The Milvus side of the store: two collections (text, frames) with one partition per scope.

Collection names carry the embedding model and dimension (`text_gtallminilml6v2_384`,
`frames_vitb32_512`), so changing a model never mixes vector spaces; fields
`id, vector, video_id, start, end, kind, text|path`; one partition per scope, named by
`Scope.partition`. Only `core.store.ScopedStore` calls it, always with its own partition.

pymilvus' sync client does the work (Milvus Lite's async client cannot create collections) on one
dedicated thread, so Milvus Lite sees one caller at a time and the event loop never waits on it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


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
        from pymilvus import MilvusClient
    finally:
        if saved is not None:
            os.environ["MILVUS_URI"] = saved
    return MilvusClient


class VectorStore:
    """The two Milvus collections. Methods block; `ScopedStore` calls them on `self.executor`."""

    def __init__(self, uri: str, text_model: str, text_dim: int,
                 image_model: str | None = None, image_dim: int = 0) -> None:
        MilvusClient = _pymilvus_client()  # noqa: N806

        # Milvus Lite 3.x answers AllocTimestamp with "not implemented" during create_collection and
        # pymilvus' embedded gRPC server logs that harmless refusal as a traceback.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        if "://" not in uri:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.client = MilvusClient(uri=uri)
        self.text = f"text_{text_model}_{text_dim}"
        self.frames = f"frames_{image_model}_{image_dim}" if image_model else None
        self._partitions: dict[str, set[str]] = {}
        self._ensure(self.text, text_dim, "text", 8192)
        if self.frames:
            self._ensure(self.frames, image_dim, "path", 1024)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="milvus")

    def _ensure(self, name: str, dim: int, payload: str, max_len: int) -> None:
        from pymilvus import DataType  # imported by _pymilvus_client() already

        if not self.client.has_collection(name):
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("video_id", DataType.VARCHAR, max_length=32)
            schema.add_field("start", DataType.FLOAT)
            schema.add_field("end", DataType.FLOAT)
            schema.add_field("kind", DataType.VARCHAR, max_length=16)
            schema.add_field(payload, DataType.VARCHAR, max_length=max_len)
            index = self.client.prepare_index_params()
            index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="IP")
            # Strong: a search right after an insert or delete sees it. Milvus Lite is always
            # consistent; a server's default (Bounded) hides writes for a moment.
            self.client.create_collection(name, schema=schema, index_params=index,
                                          consistency_level="Strong")
        else:
            self.client.load_collection(name)
        self._partitions[name] = set(self.client.list_partitions(name))

    def _partition(self, collection: str, partition: str, create: bool) -> bool:
        known = self._partitions[collection]
        if partition in known:
            return True
        if not create:
            return False
        self.client.create_partition(collection, partition)
        known.add(partition)
        return True

    def insert(self, collection: str, partition: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self._partition(collection, partition, create=True)
        for i in range(0, len(rows), 512):
            self.client.insert(collection, rows[i:i + 512], partition_name=partition)
        # Seal what a video wrote: Milvus Lite searches unsealed (growing) rows by brute force
        # without its index, and a channel of 100 freshly inserted videos answered in 300 ms
        # instead of 20-35 ms once flushed (bench/run.py, part 3).
        self.client.flush(collection)

    def search(self, collection: str, partition: str, vector: np.ndarray, limit: int,
               payload: str) -> list[VectorHit]:
        if not self._partition(collection, partition, create=False):
            return []
        res = self.client.search(
            collection, data=[vector.tolist()], limit=limit, partition_names=[partition],
            output_fields=["video_id", "start", "end", "kind", payload],
            search_params={"metric_type": "IP"})
        return [VectorHit(e["entity"]["video_id"], float(e["entity"]["start"]), float(e["entity"]["end"]),
                          e["entity"]["kind"], e["entity"][payload], float(e["distance"]))
                for e in res[0]]

    def delete(self, collection: str, partition: str, video_ids: Sequence[str]) -> None:
        if not video_ids or not self._partition(collection, partition, create=False):
            return
        # By primary key, after a query bound to the partition: Milvus Lite 3.2 applies a filtered
        # delete to every partition, whatever `partition_name` says (tests/test_store.py).
        ids = ",".join(json.dumps(v) for v in video_ids)
        while True:
            rows = self.client.query(collection, filter=f"video_id in [{ids}]", output_fields=["id"],
                                     partition_names=[partition], limit=16384)
            if rows:
                self.client.delete(collection, ids=[r["id"] for r in rows], partition_name=partition)
            if len(rows) < 16384:
                return

    def video_ids(self, collection: str, partition: str) -> set[str]:
        """Every video id with vectors in this partition (the reconciler compares it to the catalog)."""
        if not self._partition(collection, partition, create=False):
            return set()
        rows = self.client.query(collection, filter='video_id != ""', output_fields=["video_id"],
                                 partition_names=[partition], limit=16384)
        return {r["video_id"] for r in rows}

    def count(self, collection: str, partition: str) -> int:
        if not self._partition(collection, partition, create=False):
            return 0
        rows = self.client.query(collection, filter='video_id != ""', output_fields=["id"],
                                 partition_names=[partition], limit=16384)
        return len(rows)

    def drop_partition(self, partition: str) -> None:
        for c in filter(None, (self.text, self.frames)):
            if partition in self._partitions[c]:
                # A server refuses to drop a loaded partition; `milvus-lite server` lacks
                # release_partitions (and has nothing to release).
                try:
                    self.client.release_partitions(c, [partition])
                except Exception as e:  # noqa: BLE001 - MilvusException or gRPC "unimplemented"
                    log.debug("release_partitions(%s, %s): %s", c, partition, e)
                self.client.drop_partition(c, partition)
                self._partitions[c].discard(partition)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.client.close()

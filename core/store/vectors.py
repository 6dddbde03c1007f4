"""`VectorStore`, the Milvus side of the store: search, read, write and delete the rows of one
channel in the text or frame collection.

The collections, their names and the two layouts that keep channels apart are in
`core.store.layouts` (`_bound` is the one place a read or delete is tied to a channel); the
client, and the waiting for a server that went away (`healing`, `once`), in `core.store.milvus`.
Only `core.store.scoped.ScopedStore` calls this class, always with its own channel.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from core.models import Hit
from core.store.layouts import KEY_FIELD, QUERY_LIMIT, READ, Collections, collection_names, own_key, video_key
from core.store.milvus import _pymilvus_client, connect, existing_collections, healing, once

__all__ = ["KEY_FIELD", "VectorStore", "_pymilvus_client", "collection_names", "connect",
           "existing_collections", "video_key"]

log = logging.getLogger(__name__)


class VectorStore(Collections):
    """The two Milvus collections. Methods block; `ScopedStore` calls them on `self.executor`."""

    @classmethod
    def from_settings(cls, settings: Any, text_model: str, text_dim: int,
                      image_model: str | None = None, image_dim: int = 0) -> VectorStore:
        """The store `settings` describe (MILVUS_URI, MILVUS_LAYOUT, MILVUS_PREFIX,
        SERVER_TIMEOUT_SECONDS)."""
        return cls(settings.milvus, text_model, text_dim, image_model, image_dim,
                   layout=getattr(settings, "milvus_layout", "partition"),
                   prefix=getattr(settings, "milvus_prefix", ""),
                   timeout=getattr(settings, "server_timeout_seconds", 5.0))


    # ---- writes ---------------------------------------------------------------------------------
    @once
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
        # without its index, and a channel of 100 freshly inserted videos answered about ten times
        # slower than once flushed (bench/run.py part 3; docs/benchmarks.md). On a server, flushed rows are
        # also what other processes' Session reads see at once.
        if not self._defer_flush:
            self.client.flush(collection)

    @once
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

    @healing
    def _flush(self, collection: str) -> None:
        self.client.flush(collection)

    # ---- reads ----------------------------------------------------------------------------------
    @healing
    def search(self, collection: str, partition: str, vector: np.ndarray, limit: int,
               payload: str, video_id: str | None = None) -> list[Hit]:
        """The `limit` rows of one channel nearest `vector` (of one video when `video_id` is given):
        its `payload` ("text" of a chunk, or "path" of a frame) as the hit's field of that name."""
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
        return [Hit(e["entity"]["video_id"], float(e["entity"]["start"]), float(e["entity"]["end"]),
                    kind=e["entity"]["kind"], score=float(e["distance"]), **{payload: e["entity"][payload]})
                for e in res[0]]

    @healing
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
    @healing
    def delete(self, collection: str, partition: str, video_ids: Sequence[str], since: float | None = None) -> None:
        """The rows of `video_ids` (only those starting at `since` or later, when given)."""
        if not video_ids:
            return
        expr = "video_id in [" + ",".join(json.dumps(v) for v in video_ids) + "]"
        if since is not None and since > 0:  # `start` is a float32: compared as stored
            expr += f" and start >= {float(np.float32(since))!r}"
        if self.layout == "key":
            # The filter names the channel itself, and the keys carry it too.
            self.client.delete(collection, **self._bound(partition, expr))
            self._settle(collection, partition)
            return
        # By primary key, after a query bound to the partition: Milvus Lite 3.2 applies a filtered
        # delete to every partition, whatever `partition_name` says, and a delete by key to every
        # row with that key; the keys carry the channel (see the module docstring), so only this
        # channel's rows have them.
        while True:
            rows = self._query(collection, partition, expr, output_fields=["id"],
                               limit=QUERY_LIMIT)
            if rows:
                self.client.delete(collection, ids=[r["id"] for r in rows], partition_name=partition)
                self._settle(collection, partition)
            if len(rows) < QUERY_LIMIT:
                return

    @healing
    def _settle(self, collection: str, partition: str) -> None:
        """Wait until a delete is visible to this process's reads. A Milvus 2.3 server answers a
        delete with timestamp 0, so pymilvus' Session reads cannot wait for it and kept finding
        deleted rows; one Strong read (~0.1-0.4 s on a server, on the rare delete path) waits
        for the delete, and every later read is served past it."""
        self.client.query(collection, **self._bound(partition, 'video_id != ""'), output_fields=["count(*)"],
                          consistency_level="Strong")

    @healing
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

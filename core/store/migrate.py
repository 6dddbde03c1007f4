"""`vidrag migrate-layout`: move a deployment's vectors from the partition layout (one Milvus
partition per channel) to the key layout (a `scope_key` partition-key field; core/store/vectors.py).

Channel by channel: the channel's rows already in the key-layout collections are deleted first
(so a run that stopped half-way can simply be run again), then every row of its partitions is
copied with the channel as its key, and the copy is counted against the source. Only when every
channel is copied and counted are the old collections dropped. Stop the chat and worker
processes first: rows they wrote to the old collections meanwhile would not be copied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core.store.vectors import VectorStore, collection_names, video_key

log = logging.getLogger(__name__)

FIELDS = ["id", "vector", "video_id", "start", "end", "kind"]


def migrate_layout(uri: str, text_model: str, text_dim: int, image_model: str | None = None,
                   image_dim: int = 0, prefix: str = "", batch: int = 1000, drop_old: bool = True,
                   progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Copy every channel of the partition-layout collections into the key-layout ones; returns
    {"channels", "rows", "dropped"}. Nothing to do (no old collections) is not an error."""
    old_text, old_frames = collection_names(text_model, text_dim, image_model, image_dim, "partition", prefix)
    dst = VectorStore(uri, text_model, text_dim, image_model, image_dim, layout="key", prefix=prefix)
    client = dst.client
    pairs = [(src, new, payload) for src, new, payload in
             ((old_text, dst.text, "text"), (old_frames, dst.frames, "path"))
             if src and new and client.has_collection(src)]
    report: dict[str, Any] = {"channels": 0, "rows": 0, "dropped": []}
    try:
        channels: set[str] = set()
        for src, _, _ in pairs:
            client.load_collection(src)
            channels |= {p for p in client.list_partitions(src) if p != "_default"}
        for n, channel in enumerate(sorted(channels), 1):
            dst.drop_scope(channel)  # what an interrupted run copied of it
            with dst.deferred_flush():
                for src, new, payload in pairs:
                    report["rows"] += _copy(dst, src, new, payload, channel, batch)
            report["channels"] = n
            if n % 100 == 0 or n == len(channels):
                progress(f"{n}/{len(channels)} channels, {report['rows']} rows copied")
        if drop_old:
            for src, _, _ in pairs:
                client.drop_collection(src)
                report["dropped"].append(src)
    finally:
        dst.close()
    return report


def _copy(dst: VectorStore, src: str, new: str, payload: str, channel: str, batch: int) -> int:
    client = dst.client
    if not client.has_partition(src, channel):
        return 0
    it = client.query_iterator(src, batch_size=batch, filter='video_id != ""',
                               output_fields=[*FIELDS, payload], partition_names=[channel])
    copied = 0
    try:
        while rows := it.next():
            # keys as `insert` takes them: without the channel it puts in front of them again
            dst.insert(new, channel, [{**{k: r[k] for k in (*FIELDS, payload)}, "id": video_key(channel, r["id"])}
                                      for r in rows])
            copied += len(rows)
    finally:
        it.close()
    had = client.query(src, filter='video_id != ""', output_fields=["count(*)"], partition_names=[channel])
    have = dst.count(new, channel)
    if not (had[0]["count(*)"] == copied == have):
        raise RuntimeError(f"{src}/{channel}: {had[0]['count(*)']} rows in the source, {copied} read, "
                           f"{have} in {new}")
    return copied

"""Which Milvus index for one channel's text partition? Search latency and recall@8 (against FLAT)
of the index types Milvus Lite accepts, at the size of 100 ten-minute videos in one channel.

    .venv/bin/python -m bench.index_types [--n 16000] [--uri FILE-or-URL]

The vectors are like vidrag's: 160 "lecture" directions, each repeated with noise (cosine ~0.8),
normalised, 384-d; the queries are more noisy copies of them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.engines.base import normalise
from core.store.scoped import _pymilvus_client

INDEXES = {
    "FLAT": {},
    "IVF_FLAT": {"nlist": 128},
    "HNSW": {"M": 16, "efConstruction": 200},
    "AUTOINDEX": {},
}
SEARCH = {"IVF_FLAT": {"nprobe": 16}, "HNSW": {"ef": 64}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=16000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--uri", default="")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    base = normalise(rng.normal(size=(160, a.dim)))
    data = normalise(base[rng.integers(0, 160, a.n)] + rng.normal(0, 0.75 / np.sqrt(a.dim), (a.n, a.dim)))
    queries = normalise(base[rng.integers(0, 160, a.queries)] + rng.normal(0, 1.0 / np.sqrt(a.dim), (a.queries, a.dim)))
    from pymilvus import DataType

    client = _pymilvus_client()(uri=a.uri or str(Path(tempfile.mkdtemp()) / "idx.db"))
    truth: list[set[int]] = []
    out = {}
    for kind, params in INDEXES.items():
        name = f"bench_{kind.lower()}"
        if client.has_collection(name):
            client.drop_collection(name)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=a.dim)
        idx = client.prepare_index_params()
        idx.add_index(field_name="vector", index_type=kind, metric_type="IP", params=params)
        try:
            client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
            for i in range(0, a.n, 2000):
                client.insert(name, [{"id": j, "vector": data[j].tolist()} for j in range(i, min(a.n, i + 2000))])
            client.flush(name)
        except Exception as e:  # an index type this Milvus does not have
            out[kind] = {"error": str(e)[:120]}
            continue
        params_s = {"metric_type": "IP", "params": SEARCH.get(kind, {})}
        client.search(name, data=[queries[0].tolist()], limit=8, search_params=params_s)  # warm
        ms, found = [], []
        for q in queries:
            t = time.perf_counter()
            res = client.search(name, data=[q.tolist()], limit=8, search_params=params_s)
            ms.append((time.perf_counter() - t) * 1000)
            found.append({int(h["id"]) for h in res[0]})
        if kind == "FLAT":
            truth = found
        recall = float(np.mean([len(f & t) / 8 for f, t in zip(found, truth, strict=True)]))
        out[kind] = {"p50_ms": round(float(np.percentile(ms, 50)), 2),
                     "p95_ms": round(float(np.percentile(ms, 95)), 2), "recall@8": round(recall, 3)}
        client.drop_collection(name)
        print(f"{kind:10s} {out[kind]}", flush=True)
    print(json.dumps({"n": a.n, "dim": a.dim, "indexes": out}))


if __name__ == "__main__":
    main()

"""The plot of docs/benchmarks.md: `Service.ask` latency (no LLM) against videos in one channel.

    .venv/bin/python -m bench.plot [bench-out/results.json] [docs/benchmarks-retrieval.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str = "bench-out/results.json", dst: str = "docs/benchmarks-retrieval.png") -> None:
    r = json.loads(Path(src).read_text())["retrieval"]
    n = sorted(int(k) for k in r)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        ax.plot(n, [r[str(k)][key] for k in n], style, label=key.split("_")[0])
    ax.axhline(100, color="grey", lw=0.8)
    ax.axhline(200, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(k) for k in n])
    ax.set_xlabel("10-minute videos indexed in the channel")
    ax.set_ylabel("ask without LLM (ms)")
    ax.set_title("vidrag: question latency against channel size (2 CPU cores)")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst)
    print(dst)


if __name__ == "__main__":
    main(*sys.argv[1:])

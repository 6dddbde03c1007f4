"""English questions about videos in other languages, pooled over the sets that ask them — and
every other set's figures beside them, from one command.

    python -m eval.pooled --root /tmp/pooled --label before          # every set, one process
    python -m eval.pooled --root /tmp/pooled --label after --sets naming6,languages
    python -m eval.pooled --root /tmp/pooled --read before after     # the saved runs side by side

Each set is rendered into ROOT/<set>/media and indexed into ROOT/<set>/data (both kept, so a second
run only asks); each question's row (eval/run.py's `evaluate`) is saved in ROOT/<set>/<label>.json.
The pooled figure is over the rows tagged "in English" (a video not in English, asked in English)
of POOLED — eval/languages/ and eval/naming/ to eval/naming7/ — counted question by question, not
set by set. HELD_OUT sets (`--sets naming12`) are reported on their own, outside the pool.
`--read A B` prints both labels' figures and the questions whose verdicts differ.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from core.config import Settings
from eval.run import HERE, SHARED, _rates, asked, evaluate, figures, render_set

POOLED = ("languages", "naming", "naming2", "naming3", "naming4", "naming5", "naming6", "naming7")
HELD_OUT = ("naming8", "naming9", "naming10", "naming11", "naming12")  # naming12 written and committed before its one run; naming8 to naming11 seen and diagnosed since
OTHERS = ("channel", "ours", "shared")
METRICS = ("recall@1", "recall@3", "frame", "keywords")
VERDICTS = ("top1", "top3", "frame", "keywords")


def files(name: str) -> tuple[Path, Path]:
    """A set's lectures.json and questions.json."""
    folder = {"ours": HERE, "shared": SHARED}.get(name, HERE / name)
    return folder / "lectures.json", folder / "questions.json"


async def run_set(name: str, root: Path, label: str, settings: Settings, models: Any) -> list[dict[str, Any]]:
    lectures_path, questions_path = files(name)
    lectures = json.loads(lectures_path.read_text())
    questions = [asked(q, lectures) for q in json.loads(questions_path.read_text())]
    manifest = await asyncio.to_thread(render_set, lectures, root / name / "media", None, lambda _: None)
    data = root / name / "data"
    result = await evaluate(manifest, root / name / "media", questions,
                            dataclasses.replace(settings, data_dir=data, milvus_uri=""), models=models,
                            log=lambda line: print(f"[{name}] {line}", flush=True))
    (root / name / f"{label}.json").write_text(json.dumps(result["questions"], indent=1))
    fig = figures(result)
    print(f"[{name}] {line_of(fig)}", flush=True)
    return list(result["questions"])


def line_of(r: dict[str, Any]) -> str:
    if not r.get("n"):
        return "n=0"
    return f"n={r['n']:<3} " + " ".join(f"{m} {r[m]:.3f}" for m in METRICS)


def english_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("asked") == "in English"]


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each set's figures, its "in English" questions', and the pooled "in English" figure."""
    out: dict[str, Any] = {name: {"all": _rates(rows), "in English": _rates(english_rows(rows))}
                           for name, rows in runs.items()}
    out["pooled in English"] = _rates([r for n, rows in runs.items() if n in POOLED for r in english_rows(rows)])
    return out


def show(label: str, s: dict[str, Any]) -> None:
    print(f"\n== {label}")
    for name, r in s.items():
        if name == "pooled in English":
            continue
        extra = f"   in English: {line_of(r['in English'])}" if r["in English"].get("n") else ""
        print(f"{name:<10} {line_of(r['all'])}{extra}")
    print(f"pooled in English over {', '.join(n for n in POOLED if n in s)}: {line_of(s['pooled in English'])}")


def load(root: Path, label: str) -> dict[str, list[dict[str, Any]]]:
    return {name: json.loads(p.read_text()) for name in (*POOLED, *HELD_OUT, *OTHERS)
            if (p := root / name / f"{label}.json").is_file()}


def differences(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The questions (same set, same text) whose verdicts differ between two runs."""
    out = []
    for name in a.keys() & b.keys():
        before = {r["q"]: r for r in a[name]}
        for r in b[name]:
            o = before.get(r["q"])
            if o is None or all(o[v] == r[v] for v in VERDICTS):
                continue
            change = " ".join(f"{v} {int(o[v])}→{int(r[v])}" for v in VERDICTS if o[v] != r[v])
            out.append(f"{name} {r['video']}#{r['slide']} [{r.get('asked', '-')}] {change}: {r['q']}\n"
                       f"    cited {' '.join(o['cited'])} → {' '.join(r['cited'])}; "
                       f"frame {o['frame_at']} → {r['frame_at']}")
    return sorted(out)


async def main_async(args: argparse.Namespace) -> int:
    from core.engines.registry import Models

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [n for n in args.sets.split(",") if n] if args.sets else list(POOLED)
    unknown = [n for n in names if n not in (*POOLED, *HELD_OUT, *OTHERS)]
    if unknown:
        raise SystemExit(f"unknown set {', '.join(unknown)}: pick from {', '.join((*POOLED, *HELD_OUT, *OTHERS))}")
    settings = Settings.from_env()
    models = Models(settings)
    try:
        runs = {n: await run_set(n, args.root, args.label, settings, models) for n in names}
    finally:
        models.close()
    show(args.label, summary({**load(args.root, args.label), **runs}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="eval/pooled.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="kept media, indexes and rows, one folder per set")
    p.add_argument("--label", default="run", help="name of this run's saved rows")
    p.add_argument("--sets", help=f"comma-separated (default: {','.join(POOLED)}; also {','.join((*HELD_OUT, *OTHERS))})")
    p.add_argument("--read", nargs="+", metavar="LABEL", help="print saved runs (and, for two, what changed)")
    args = p.parse_args(argv)
    if args.read:
        runs = [load(args.root, label) for label in args.read]
        for label, r in zip(args.read, runs, strict=True):
            show(label, summary(r))
        if len(runs) == 2:
            print(f"\n== {args.read[0]} → {args.read[1]}, questions whose verdicts changed")
            print("\n".join(differences(*runs)) or "none")
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

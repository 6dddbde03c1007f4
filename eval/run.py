"""`vidrag eval`: render lectures whose slide times are known, index them, ask the questions and
score the answers by question kind (speech / slide / both).

The metrics are those of ../shared/eval/score.py, computed on the same JSON an `ask --json`
prints (`Answer.to_json()`):
  recall@1 / recall@3  a citation names the question's video and its [start, end] overlaps the
                       question's slide (±0.5 s) — the first one, or one of the first three;
  frame                the answer's frame is of that video and falls in the slide (±0.5 s);
  keywords             every regex of the question's "a" matches the answer text (ignoring case).
Chapters and summary, per lecture, against its slides (`chapter_scores`; without an LLM these
measure the extractive summary):
  boundaries           a chapter start after 0 matches a slide change within ±3 s, one to one:
                       precision over the chapter starts, recall over the slide changes;
  titles               the chapter's title holds every key word of the title of the slide on
                       screen when the chapter starts (stemmed, stop words left out);
  coverage             the share of the lecture's slide titles whose key words all appear in its
                       summary.
It runs in-process through `core.service.Service` instead of one CLI process per question, so the
models load once and the whole set takes minutes. The rendered folder holds a manifest.json in
score.py's format, so score.py can be run on it too (`score.py OUT --questions ...`).

A lecture spec is make_videos.py's (`{name: {title, slides: [{title, lines, say}]}}`), plus
optional per-slide "voice" (an espeak-ng voice) and "hold" (seconds shown after the narration, or
in all when "say" is empty), and optional per-lecture "background", "voice" and "hold" defaults.

A question may also carry tags that the figures are broken down by (beside "kind"):
  "names"  how it names its video — "number" (a part or episode number), "title" (title words),
           "phrase" (a title word with its number, version, year or roman numeral: "Apollo 11",
           "Python 3.12", "Henry VIII"), "about" ("the one about X"), "id" (the video id; "{id}"
           in the question is replaced by it at run time) — or "none";
  "lang"   the language it is asked in;
  "split"  "tune" or "report": the method is tuned on one, and the other is what is reported
           (`--split report`).
Where a question has "lang", it is also tagged "asked" from its lecture's language (the lecture's
espeak-ng "voice", English by default): "in its language" (a video not in English, asked in its
own language), "in English" (a video not in English, asked in English) or "English video".
eval/channel/ (a channel with series of numbered, look-alike lectures), eval/languages/
(lectures in Italian, Spanish and German, asked in their language and in English) and
eval/naming/ (20 short videos: siblings whose titles differ only by a number — Apollo 11 / 13,
Python 3.11 / 3.12, WWDC 2023 / 2024, Henry VII / VIII —, unrelated videos, an Italian and a
Spanish one, all asked in English) use them. eval/naming/'s "report" half is held out: other
topics and other phrasings than its "tune" half, and no weight or rule is set by looking at it;
a change that raises "tune" and lowers "report" is no improvement. eval/naming2/ to
eval/naming5/ are held out whole ("report" only), each written before it was first run, on other
topics and templates again (eval/naming3/: Django 4.2 / 5.0, World Cup 2010 / 2014, Ramesses
II / III, Shrek and Shrek 2, and lectures in French, Italian, Spanish and German asked in English);
once a change is made from what one shows it is seen, and the next one is the held-out figure
(eval/naming5/, after changes made from eval/naming3/ and eval/naming4/).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core import synth
from core.config import Settings

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("VIDRAG_SHARED_EVAL", "/work/shared/eval"))  # the shared lecture set, where it is
COLOURS = ["0xF5F0E6", "0xE6F0F5", "0xF0F5E6"]  # make_videos.py's, in the same order
KINDS = ("speech", "slide", "both")
TAGS = ("names", "lang", "asked", "split")  # optional question tags, reported like "kind"
TOL = 0.5  # seconds of slack around a slide, as in score.py

Log = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)


# ---- rendering -----------------------------------------------------------------------------------
def lecture_of(spec: dict[str, Any], colour: str) -> synth.Lecture:
    voice, hold = spec.get("voice", "en-us"), float(spec.get("hold", 1.0))  # lecture-wide defaults
    slides = [synth.Slide(s["title"], tuple(s.get("lines", ())), s.get("say", ""),
                          voice=s.get("voice", voice), hold=float(s.get("hold", hold)))
              for s in spec["slides"]]
    return synth.Lecture(spec["title"], slides, background=spec.get("background", colour))


def _fingerprint(spec: dict[str, Any], colour: str) -> str:
    """Changes when anything that shapes the video changes, so a stale video is rendered again."""
    blob = json.dumps({"spec": spec, "colour": colour, "renderer": "synth-1"}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def render_set(lectures: dict[str, dict[str, Any]], out: Path, names: Iterable[str] | None = None,
               log: Log = _say) -> dict[str, dict[str, Any]]:
    """Render `names` (default all) of `lectures` into `out`, skipping videos already there with
    the same spec; write out/manifest.json (every rendered lecture of this spec, score.py's
    format plus a "spec" fingerprint) and return the manifest entries of `names`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    wanted = list(lectures) if names is None else list(names)
    unknown = [n for n in wanted if n not in lectures]
    if unknown:
        raise SystemExit(f"no lecture named {', '.join(unknown)} (have: {', '.join(lectures)})")
    manifest: dict[str, dict[str, Any]] = {}
    for k, (name, spec) in enumerate(lectures.items()):
        colour = COLOURS[k % len(COLOURS)]
        fp = _fingerprint(spec, colour)
        dst = out / f"{name}.mp4"
        entry = old.get(name)
        fresh = entry is not None and entry.get("spec") == fp and dst.is_file()
        if name in wanted and not fresh:
            t0 = time.perf_counter()
            lec = lecture_of(spec, colour)
            synth.render(lec, dst)
            entry = {**synth.manifest_entry(lec, dst), "spec": fp}
            fresh = True
            log(f"rendered {name}: {len(lec.slides)} slides, {entry['duration']:.1f} s of video "
                f"in {time.perf_counter() - t0:.1f} s")
        if fresh:
            manifest[name] = entry  # type: ignore[assignment]
    path.write_text(json.dumps(manifest, indent=1))
    return {n: manifest[n] for n in wanted}


# ---- scoring -------------------------------------------------------------------------------------
def overlaps(start: float, end: float, slide: dict[str, Any], tol: float = TOL) -> bool:
    return float(start) <= slide["end"] + tol and float(end) >= slide["start"] - tol


def score(q: dict[str, Any], answer: dict[str, Any], video_id: str, slide: dict[str, Any]) -> dict[str, bool]:
    """score.py's four verdicts for one answer (the JSON of `ask --json`)."""
    cites = answer.get("citations") or []
    good = [str(c.get("video_id")) == video_id and overlaps(c["start"], c["end"], slide) for c in cites]
    fr = answer.get("frame") or {}
    frame = bool(fr) and str(fr.get("video_id")) == video_id and \
        slide["start"] - TOL <= float(fr.get("time", -1)) <= slide["end"] + TOL
    text = answer.get("answer") or ""
    return {"top1": bool(good[:1] and good[0]), "top3": any(good[:3]), "frame": frame,
            "keywords": all(re.search(p, text, re.I) for p in q["a"])}


def _where(manifest: dict[str, dict[str, Any]], names: dict[str, str], video_id: Any,
           start: float, end: float) -> str:
    """Which lecture and slides a cited span (or a frame time) falls on, for the miss report:
    'tcp#3', 'tcp#3-4'."""
    name = names.get(str(video_id))
    if name is None:
        return f"{video_id}#?"
    idx = [s["index"] for s in manifest[name]["slides"] if start <= s["end"] and end >= s["start"]]
    if not idx:
        return f"{name}#?"
    return f"{name}#{idx[0]}" if len(idx) == 1 else f"{name}#{idx[0]}-{idx[-1]}"


async def evaluate(manifest: dict[str, dict[str, Any]], videodir: Path, questions: list[dict[str, Any]],
                   settings: Settings, models: Any = None, chat: Any = "auto", channel: str = "eval",
                   log: Log = _say, verbose: bool = False) -> dict[str, Any]:
    """Index every video of `manifest` into one channel and ask every question about them.

    Returns {"ingest": {name: {...}}, "questions": [row, ...]}; `figures()` sums it up."""
    from core.models import Scope, Stage
    from core.service import Service

    scope = Scope("console", "eval", channel)  # the console platform may index local files
    questions = [q for q in questions if q["video"] in manifest]
    ingest: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    async with Service.open(settings, models=models, chat=chat) as svc:
        t0 = time.perf_counter()
        warm = [lambda: svc.models.transcriber] + ([lambda: svc.models.ocr] if settings.ocr else [])
        for load in warm:  # so that the first video's ingest time is not model loading
            await svc.models.call(load)
        log(f"models ready in {time.perf_counter() - t0:.1f} s")
        svc.start_workers(1)
        ids: dict[str, str] = {}
        for name, entry in manifest.items():
            done: dict[str, Any] = {}

            async def on_progress(p: Any, done: dict[str, Any] = done) -> None:
                if p.stage == Stage.DONE and p.message:
                    done.update(json.loads(p.message))

            t = time.perf_counter()
            sub = await svc.submit(scope, str((videodir / entry["file"]).resolve()), on_progress=on_progress)
            video = await svc.wait(sub.job.id) if not sub.already else await svc.store(scope).video(sub.job.video_id)
            dt = time.perf_counter() - t
            assert video is not None
            ids[name] = video.id
            ingest[name] = {"video_id": video.id, "duration": entry["duration"], "seconds": round(dt, 2),
                            "rtf": round(dt / entry["duration"], 3), "already": sub.already,
                            "stages": done.get("stages", {}),
                            "counts": {k: v for k, v in done.items() if k != "stages"}}
            await _dump_indexed(svc.store(scope), video.id, entry, videodir / f"{name}.indexed.txt")
            ingest[name].update(await _summarized(svc, scope, video, entry))
            note = " (already indexed)" if sub.already else ""
            log(f"ingest {name}: {dt:.1f} s for {entry['duration']:.1f} s of video "
                f"(rtf {dt / entry['duration']:.3f}){note} {json.dumps(done.get('stages', {}))}")

        names = {v: k for k, v in ids.items()}
        for q in questions:
            entry = manifest[q["video"]]
            slide = entry["slides"][q["slide"]]
            t = time.perf_counter()
            answer = (await svc.ask(scope, q["q"].replace("{id}", ids[q["video"]]))).to_json()
            dt = time.perf_counter() - t
            verdict = score(q, answer, ids[q["video"]], slide)
            top = [_where(manifest, names, c["video_id"], c["start"], c["end"])
                   for c in (answer.get("citations") or [])[:3]]
            fr = answer.get("frame")
            got_frame = _where(manifest, names, fr["video_id"], fr["time"], fr["time"]) if fr else "none"
            rows.append({**{k: q[k] for k in ("video", "slide", "kind", "q")},
                         **{t: _tag(q, t) for t in TAGS if t in q}, **verdict,
                         "seconds": round(dt, 3), "cited": top, "frame_at": got_frame,
                         "answer": answer.get("answer", "")})
            mark = "ok  " if verdict["top3"] else "MISS"
            line = (f"{mark} {q['video']}#{q['slide']} [{q['kind']}] top1={verdict['top1']} "
                    f"frame={verdict['frame']} keywords={verdict['keywords']} {dt:.2f}s  {q['q']}")
            if not (verdict["top1"] and verdict["frame"] and verdict["keywords"]):
                line += f"\n       slide {slide['start']:.1f}-{slide['end']:.1f}; cited {' '.join(top) or 'nothing'}; frame {got_frame}"
                if verdict["keywords"] is False or verbose:
                    line += f"; wanted {q['a']}; answer: {_short(answer.get('answer', ''))}"
            log(line)
    return {"ingest": ingest, "questions": rows}


async def _dump_indexed(store: Any, video_id: str, entry: dict[str, Any], dst: Path) -> None:
    """What the index heard and read on each slide, beside the video: the place to look first
    when a question misses (a misheard word, a misread formula, a span cut across two slides)."""
    segs = await store.segments(video_id, 0, 1e9)
    out = []
    for s in entry["slides"]:
        out.append(f"#{s['index']} {s['start']:.1f}-{s['end']:.1f} {s['title']}")
        for g in segs:
            mid = (g.start + g.end) / 2
            if s["start"] <= mid < s["end"]:
                out.append(f"   {g.kind.value:<8} {g.start:7.1f}-{g.end:7.1f}  {' '.join(g.text.split())}")
    dst.write_text("\n".join(out) + "\n")


# ---- chapters and summary ------------------------------------------------------------------------
BOUNDARY_TOL = 3.0  # seconds between a chapter start and the slide change it finds


async def _summarized(svc: Any, scope: Any, video: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """The video's summary (made at ingest) and its scores; `summary_s`: the time making it again
    takes (chapters and summary from the catalog, without storing)."""
    from core.answer import summary as summaries

    t = time.perf_counter()
    await summaries.make(svc.store(scope), video, svc.chat)
    took = time.perf_counter() - t
    made = (await svc.summary(scope, video.id)).to_json()
    return {"summary": made, "summary_s": round(took, 3), "chapter_scores": chapter_scores(made, entry["slides"])}


def key_words(title: str) -> set[str]:
    from core.text.words import tokens

    return tokens(title)


def chapter_scores(summary: dict[str, Any], slides: list[dict[str, Any]], tol: float = BOUNDARY_TOL) -> dict[str, int]:
    """Counts for one lecture (module docstring): boundaries matched, chapter starts and slide
    changes; chapters whose title holds their slide's title words; slide titles the summary covers."""
    chapters = summary["chapters"]
    starts = [float(c["start"]) for c in chapters[1:]]
    changes = [float(s["start"]) for s in slides[1:]]
    free, matched = set(range(len(changes))), 0
    for t in sorted(starts, key=lambda t: min((abs(t - c) for c in changes), default=tol + 1)):
        near = [(abs(t - changes[i]), i) for i in free if abs(t - changes[i]) <= tol]
        if near:
            free.discard(min(near)[1])
            matched += 1

    def slide_at(t: float) -> dict[str, Any]:
        return [s for s in slides if s["start"] <= t + 1.0][-1] if slides else {"title": ""}

    titled = sum(key_words(slide_at(float(c["start"]))["title"]) <= key_words(c["title"]) for c in chapters)
    said = key_words(summary["summary"])
    covered = sum(bool(key_words(s["title"])) and key_words(s["title"]) <= said for s in slides)
    return {"matched": matched, "starts": len(starts), "changes": len(changes), "titled": titled,
            "chapters": len(chapters), "covered": covered, "titles": len(slides)}


def chapter_figures(ingest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Boundary precision and recall and title share pooled over the set's lectures; coverage the
    mean of the lectures'; each lecture's own beside them."""
    per = {k: v["chapter_scores"] for k, v in ingest.items() if "chapter_scores" in v}
    if not per:
        return {}

    def ratio(a: str, b: str, rows: Iterable[dict[str, int]]) -> float | None:
        rows = list(rows)
        total = sum(r[b] for r in rows)
        return round(sum(r[a] for r in rows) / total, 3) if total else None

    def one(r: dict[str, int]) -> dict[str, Any]:
        return {"precision": ratio("matched", "starts", [r]), "recall": ratio("matched", "changes", [r]),
                "titles": ratio("titled", "chapters", [r]), "coverage": ratio("covered", "titles", [r]),
                "chapters": r["chapters"], "slides": r["titles"]}

    summary_s = [v["summary_s"] for v in ingest.values() if "summary_s" in v]
    ingest_s = sum(v["seconds"] for v in ingest.values() if not v.get("already"))
    return {"boundary_precision": ratio("matched", "starts", per.values()),
            "boundary_recall": ratio("matched", "changes", per.values()),
            "titles": ratio("titled", "chapters", per.values()),
            "coverage": round(statistics.fmean(one(r)["coverage"] or 0.0 for r in per.values()), 3),
            "coverage_pooled": ratio("covered", "titles", per.values()),
            "summary_s": round(sum(summary_s), 3),
            "summary_share": round(sum(summary_s) / ingest_s, 4) if ingest_s else None,
            "by_video": {k: one(r) for k, r in per.items()}}


def language_of(spec: dict[str, Any]) -> str:
    """A lecture's language from its espeak-ng voice ("it", "es", "en-us" → "en")."""
    return str(spec.get("voice", "en")).split("-")[0].split("+")[0].lower()


def asked(q: dict[str, Any], lectures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`q` with its "asked" tag (module docstring) when it has a "lang"."""
    if "lang" not in q or q["video"] not in lectures:
        return q
    video = language_of(lectures[q["video"]])
    tag = "English video" if video == "en" else ("in its language" if q["lang"] == video else
                                                  "in English" if q["lang"] == "en" else "in another language")
    return {**q, "asked": tag}


def _tag(q: dict[str, Any], tag: str) -> str:
    """A question's tag as reported: "names" folds to whether it names its video at all."""
    v = str(q[tag])
    return ("names none" if v == "none" else "names video") if tag == "names" else v


def _short(text: str, n: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {"n": 0}
    return {"n": n, **{m: round(sum(r[k] for r in rows) / n, 3) for m, k in
                       [("recall@1", "top1"), ("recall@3", "top3"), ("frame", "frame"), ("keywords", "keywords")]}}


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """Overall and per-kind rates, per-lecture recall, ingest times and the real-time factor."""
    rows, ingest = result["questions"], result["ingest"]
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    kinds += sorted({r["kind"] for r in rows} - set(kinds))
    indexed = [v for v in ingest.values() if not v["already"]]
    media_s = sum(v["duration"] for v in indexed)
    lat = [r["seconds"] for r in rows]
    fig = {**_rates(rows),
           "by_kind": {k: _rates([r for r in rows if r["kind"] == k]) for k in kinds},
           "by_video": {v: _rates([r for r in rows if r["video"] == v]) for v in ingest},
           "by_tag": {t: {v: _rates([r for r in rows if r.get(t) == v])
                          for v in sorted({r[t] for r in rows if t in r})} for t in TAGS},
           "ingest": {k: {f: v[f] for f in ("duration", "seconds", "rtf", "stages", "counts")}
                      for k, v in ingest.items()},
           "ingest_rtf": round(sum(v["seconds"] for v in indexed) / media_s, 3) if media_s else None,
           "ask_p50_s": round(statistics.median(lat), 3) if lat else None,
           "ask_max_s": round(max(lat), 3) if lat else None}
    fig["recall@3_by_kind"] = {k: v["recall@3"] for k, v in fig["by_kind"].items()}  # score.py's key
    fig["chapters"] = chapter_figures(ingest)
    return fig


def report(fig: dict[str, Any], log: Log = _say) -> None:
    log("")
    log(f"{'kind':<15} {'n':>4} {'recall@1':>9} {'recall@3':>9} {'frame':>7} {'keywords':>9}")
    groups = [*fig["by_kind"].items(), *[(v, r) for t in TAGS for v, r in fig.get("by_tag", {}).get(t, {}).items()]]
    for name, r in [*groups, ("all", fig)]:
        if r["n"]:
            log(f"{name[:15]:<15} {r['n']:>4} {r['recall@1']:>9.3f} {r['recall@3']:>9.3f} {r['frame']:>7.3f} {r['keywords']:>9.3f}")
    log("")
    log(f"{'lecture':<22} {'video s':>8} {'ingest s':>9} {'rtf':>6} {'recall@3':>9} {'lang':>4}  stages (s)")
    for name, v in fig["ingest"].items():
        r3 = fig["by_video"].get(name, {}).get("recall@3")
        stages = " ".join(f"{k}={s:.1f}" for k, s in v["stages"].items())
        lang = v["counts"].get("language") or "-"  # as detected at ingest
        log(f"{name:<22} {v['duration']:>8.1f} {v['seconds']:>9.1f} {v['rtf']:>6.3f} "
            f"{'-' if r3 is None else f'{r3:.3f}':>9} {lang:>4}  {stages}")
    if ch := fig.get("chapters"):
        log("")
        log(f"{'chapters':<22} {'chapters':>8} {'slides':>6} {'precision':>9} {'recall':>6} {'titles':>6} {'coverage':>8}")
        for name, r in [*ch["by_video"].items(), ("all", {**ch, "chapters": "", "slides": "",
                                                          "precision": ch["boundary_precision"],
                                                          "recall": ch["boundary_recall"]})]:
            log(f"{name[:22]:<22} {r['chapters']!s:>8} {r['slides']!s:>6} {_f(r['precision']):>9} {_f(r['recall']):>6} "
                f"{_f(r['titles']):>6} {_f(r['coverage']):>8}")
        log(f"coverage pooled over the slide titles {_f(ch['coverage_pooled'])}; "
            f"summary_s {ch['summary_s']} ({ch['summary_share']} of the ingest time)")
    log("")
    log(f"recall@1 {fig.get('recall@1')} recall@3 {fig.get('recall@3')} frame {fig.get('frame')} "
        f"keywords {fig.get('keywords')} ingest_rtf {fig['ingest_rtf']} ask_p50 {fig['ask_p50_s']}s (n={fig['n']})")


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


# ---- command line --------------------------------------------------------------------------------
def default_out(lectures: Path) -> Path:
    """One folder per lecture file, so the shared set and ours never overwrite each other."""
    tag = hashlib.sha256(str(lectures.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / "vidrag-eval" / f"{lectures.stem}-{tag}"


def _tail(model: str) -> str:
    """A model's last two path parts: enough to tell which one ran, short enough for one line."""
    return "/".join(Path(model).parts[-2:])


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--lectures", type=Path, default=HERE / "lectures.json", help="lecture specs (JSON)")
    p.add_argument("--questions", type=Path, default=HERE / "questions.json", help="questions (JSON)")
    p.add_argument("--out", type=Path, help="folder for the videos and manifest.json "
                   "(default: a folder per lecture file under the temp directory; kept between runs)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="evaluate only these lectures (repeat or separate with commas)")
    p.add_argument("--keep", type=Path, metavar="DATA_DIR",
                   help="index into (and keep) this data directory instead of a fresh temporary one")
    p.add_argument("--channel", default="eval")
    p.add_argument("--split", choices=("tune", "report"),
                   help="ask only the questions of this split (questions without a split are always asked)")
    p.add_argument("--render-only", action="store_true", help="render the videos and the manifest, then stop")
    p.add_argument("-v", "--verbose", action="store_true", help="print the answer of every imperfect question")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    p.add_argument("--screenshots", action="store_true",
                   help="measure pictures of slides instead of questions (eval/screenshots.py): the shared set's "
                        "and eval/lectures.json's lectures in one channel")
    return p


async def run(args: argparse.Namespace, settings: Settings, models: Any = None, log: Log = _say) -> int:
    """The `vidrag eval` command. `settings` come from the environment; only the data directory is
    replaced (a fresh one, or --keep), so a run never touches the bot's own index."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an evaluation never downloads weights
    if getattr(args, "screenshots", False):
        return await run_screenshots(args, settings, models, log)
    lectures = json.loads(args.lectures.read_text())
    questions = [asked(q, lectures) for q in json.loads(args.questions.read_text())
                 if args.split is None or q.get("split", args.split) == args.split]
    names = [n for arg in args.only or [] for n in arg.split(",") if n] or None
    out = args.out or default_out(args.lectures)
    manifest = await asyncio.to_thread(render_set, lectures, out, names, log)
    log(f"videos and manifest.json in {out}")
    if args.render_only:
        return 0
    missing = sorted({q["video"] for q in questions} - set(lectures))
    if missing:
        raise SystemExit(f"questions refer to lectures not in {args.lectures}: {', '.join(missing)}")
    data = args.keep or Path(tempfile.mkdtemp(prefix="vidrag-eval-data-"))
    settings = dataclasses.replace(settings, data_dir=data, milvus_uri="")
    log(f"settings: whisper={_tail(settings.whisper_model)} text={_tail(settings.text_embedder)} "
        f"clip={settings.clip_pretrained or 'off'} ocr={settings.ocr} frame_interval={settings.frame_interval} "
        f"llm={settings.llm_base_url or ('mistral' if settings.mistral_api_key else 'none')} top_k={settings.top_k}")
    try:
        result = await evaluate(manifest, out, questions, settings, models=models, channel=args.channel,
                                log=log, verbose=args.verbose)
    finally:
        if args.keep is None:
            shutil.rmtree(data, ignore_errors=True)
    fig = figures(result)
    report(fig, log)
    if args.json:
        log(json.dumps(fig))
    return 0


async def run_screenshots(args: argparse.Namespace, settings: Settings, models: Any, log: Log) -> int:
    """`--screenshots`: index the shared set and eval/lectures.json into one channel, then ask
    pictures of their slides and pictures of nothing in the channel (eval/screenshots.py)."""
    from core.models import Scope
    from core.service import Service
    from eval import screenshots as shots

    manifest: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for lectures in [p for p in (SHARED / "lectures.json", HERE / "lectures.json") if p.is_file()]:
        out = default_out(lectures)
        specs = json.loads(lectures.read_text())
        only = [n for arg in args.only or [] for n in arg.split(",") if n in specs]
        if args.only and not only:
            continue
        got = await asyncio.to_thread(render_set, specs, out, only or None, log)
        manifest.update(got)
        files.update({n: out / e["file"] for n, e in got.items()})
    others: list[Path] = []
    for lectures, most in ((HERE / "naming" / "lectures.json", 8),):  # rendered, never indexed here
        names = sorted(json.loads(lectures.read_text()))[:most]
        out = default_out(lectures)
        got = await asyncio.to_thread(render_set, json.loads(lectures.read_text()), out, names, log)
        others += [out / e["file"] for e in got.values()]
    half = len(others) // 2
    unrelated = {"tune:photo": shots.photos(12, 1), "report:photo": shots.photos(12, 2),
                 "tune:slide": await asyncio.to_thread(shots.foreign_slides, others[:half]),
                 "report:slide": await asyncio.to_thread(shots.foreign_slides, others[half:])}
    data = args.keep or Path(tempfile.mkdtemp(prefix="vidrag-eval-data-"))
    settings = dataclasses.replace(settings, data_dir=data, milvus_uri="")
    scope = Scope("console", "eval", args.channel)
    try:
        async with Service.open(settings, models=models, chat=None) as svc:
            svc.start_workers(1)
            ids: dict[str, str] = {}
            for name, path in files.items():
                sub = await svc.submit(scope, str(path.resolve()))
                video = await svc.wait(sub.job.id) if not sub.already else await svc.store(scope).video(sub.job.video_id)
                assert video is not None
                ids[name] = video.id
                log(f"indexed {name}")
            await svc.stop_workers()
            fig = await shots.measure(svc, scope, ids, manifest, unrelated, log)
    finally:
        if args.keep is None:
            shutil.rmtree(data, ignore_errors=True)
    if args.json:
        log(json.dumps(fig))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = add_arguments(argparse.ArgumentParser(prog="eval/run.py", description=__doc__.split("\n\n")[0]))
    args = p.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args, settings))


if __name__ == "__main__":
    sys.exit(main())

"""`vidrag eval --screenshots`: does a picture of a slide find its moment, and is a picture that is
in none of the channel's videos said to be in none?

The lectures of the shared set and of eval/lectures.json are indexed into one channel. From each
slide's stored frame (the one in the middle of the slide) come five queries that look like what
people post — a crop, a smaller copy, a low JPEG quality, a slight perspective warp, a phone-photo
blur — asked with `Service.ask_image`:
  recall@1 / recall@3  a citation of the slide's video overlapping the slide (±0.5 s), first or in
                       the first three;
  unrelated            the share of pictures not in the channel answered with a moment: photo-like
                       synthetic pictures, and the slides of other lectures (eval/naming's rendered
                       videos, never indexed here) — the aim is 0.
Two splits: "tune" (photosynthesis, acids_bases and python_dicts, one set of strengths; the
thresholds of core/answer/screenshot.py were set on it) and "report" (the other lectures of
eval/lectures.json, stronger transformations, other unrelated pictures), held out."""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

TUNE = {"crop": 0.90, "half": 0.5, "jpeg": 40, "warp": 0.03, "blur": 1.5}
REPORT = {"crop": 0.86, "half": 0.4, "jpeg": 30, "warp": 0.05, "blur": 2.2}
TUNE_LECTURES = {"photosynthesis", "acids_bases", "python_dicts"}
TOL = 0.5


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _warp(im: Image.Image, k: float) -> Image.Image:
    w, h = im.size
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(w * k, h * k * 0.5), (w * (1 - k * 0.3), 0), (w, h), (0, h * (1 - k))]
    a, b = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        b += [u, v]
    c = np.linalg.solve(np.array(a, float), np.array(b, float))
    return im.transform((w, h), Image.Transform.PERSPECTIVE, tuple(c), Image.Resampling.BILINEAR, fillcolor="gray")


def queries(frame: Image.Image, s: dict[str, float]) -> dict[str, bytes]:
    """The five pictures people post of `frame`, at strengths `s`."""
    w, h = frame.size
    c = s["crop"]
    off = (1 - c) / 2
    crop = frame.crop((int(w * off * 0.5), int(h * off * 1.5), int(w * (off * 0.5 + c)), int(h * (off * 1.5 + c))))
    half = frame.resize((int(w * s["half"]), int(h * s["half"])), Image.Resampling.LANCZOS)
    return {"crop": _jpeg(crop), "half": _jpeg(half), "jpeg": _jpeg(frame, int(s["jpeg"])),
            "warp": _jpeg(_warp(frame, s["warp"])),
            "blur": _jpeg(frame.resize((w * 2, h * 2)).filter(ImageFilter.GaussianBlur(s["blur"] * 2)), 70)}


def photos(n: int, seed: int) -> list[bytes]:
    """Photo-like synthetic pictures: smooth gradients, blobs and grain."""
    rng = np.random.default_rng(seed)
    out = []
    y, x = np.mgrid[0:480, 0:640].astype(float)
    for _ in range(n):
        img = np.zeros((480, 640, 3))
        for ch in range(3):
            img[..., ch] = rng.uniform(40, 200) + rng.uniform(-80, 80) * x / 640 + rng.uniform(-80, 80) * y / 480
        for _ in range(rng.integers(3, 9)):
            cx, cy, r = rng.uniform(0, 640), rng.uniform(0, 480), rng.uniform(20, 150)
            mask = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
            img[mask] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 12, img.shape)
        pil = Image.fromarray(img.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
        out.append(_jpeg(pil, 85))
    return out


def foreign_slides(videos: list[Path], every: float = 7.0, most: int = 40) -> list[bytes]:
    """Frames of lectures that are not in the channel, as JPEGs."""
    out: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(videos):
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(v), "-vf", f"fps=1/{every},scale=640:-2",
                            f"{tmp}/{i}_%03d.jpg"], check=True)
        for p in sorted(Path(tmp).glob("*.jpg"))[:most]:
            out.append(p.read_bytes())
    return out


async def slide_frames(svc: Any, scope: Any, video_id: str, slides: list[dict[str, Any]]) -> list[tuple[dict, bytes]]:
    """The stored frame in the middle of each slide (slides shorter than a frame interval have none)."""
    store = svc.store(scope)
    frames = await store.frames(video_id)
    out = []
    for s in slides:
        inside = [f for f in frames if s["start"] - 0.1 <= f.time < s["end"] - 0.1]
        if inside:
            data = await store.frame_jpeg(video_id, inside[len(inside) // 2].time)
            if data is not None:
                out.append((s, data))
    return out


def _hit(answer: Any, video_id: str, slide: dict[str, Any], n: int) -> bool:
    return any(c.video_id == video_id and c.start <= slide["end"] + TOL and slide["start"] - TOL <= c.end
               for c in answer.citations[:n])


async def measure(svc: Any, scope: Any, ids: dict[str, str], manifest: dict[str, dict[str, Any]],
                  unrelated: dict[str, list[bytes]], log: Any) -> dict[str, Any]:
    """Ask every query; the figures per split and per transformation."""
    from core.answer.shown import NOT_SHOWN

    rows: list[dict[str, Any]] = []
    for name, vid in ids.items():
        split = "tune" if name in TUNE_LECTURES else "report"
        for slide, data in await slide_frames(svc, scope, vid, manifest[name]["slides"]):
            for kind, q in queries(Image.open(io.BytesIO(data)).convert("RGB"),
                                   TUNE if split == "tune" else REPORT).items():
                t = time.perf_counter()
                a = await svc.ask_image(scope, q)
                rows.append({"split": split, "kind": kind, "lecture": name, "slide": slide["index"],
                             "r1": _hit(a, vid, slide, 1), "r3": _hit(a, vid, slide, 3),
                             "found": a.text != NOT_SHOWN, "s": time.perf_counter() - t})
    wrong: list[dict[str, Any]] = []
    for split, pics in unrelated.items():
        for i, q in enumerate(pics):
            a = await svc.ask_image(scope, q)
            wrong.append({"split": split.split(":")[0], "kind": split.split(":")[1], "i": i,
                          "found": a.text != NOT_SHOWN})
    fig: dict[str, Any] = {}
    for split in ("tune", "report"):
        mine = [r for r in rows if r["split"] == split]
        un = [w for w in wrong if w["split"] == split]
        fig[split] = {
            "queries": len(mine),
            "recall@1": round(float(np.mean([r["r1"] for r in mine])), 3) if mine else None,
            "recall@3": round(float(np.mean([r["r3"] for r in mine])), 3) if mine else None,
            "by_kind": {k: round(float(np.mean([r["r1"] for r in mine if r["kind"] == k])), 3)
                        for k in sorted({r["kind"] for r in mine})},
            "unrelated": len(un),
            "unrelated_answered": round(float(np.mean([w["found"] for w in un])), 3) if un else None,
            "unrelated_by_kind": {k: round(float(np.mean([w["found"] for w in un if w["kind"] == k])), 3)
                                  for k in sorted({w["kind"] for w in un})},
            "by_lecture": {n: round(float(np.mean([r["r1"] for r in mine if r["lecture"] == n])), 3)
                           for n in sorted({r["lecture"] for r in mine})},
            "ask_s_p50": round(float(np.median([r["s"] for r in mine])), 3) if mine else None,
        }
        log(f"screenshots [{split}]: {json.dumps(fig[split])}")
    return fig

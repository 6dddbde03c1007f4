"""The benchmark's video: a lecture of eval/lectures.json (default the 10-minute
`roman_republic`, 67 narrated slides) rendered with core.synth, cached by a fingerprint of its spec."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from core import synth

ROOT = Path(__file__).resolve().parent.parent
LECTURES = ROOT / "eval" / "lectures.json"


def lecture(name: str) -> synth.Lecture:
    spec = json.loads(LECTURES.read_text())[name]
    voice, hold = spec.get("voice", "en-us"), float(spec.get("hold", 1.0))
    slides = [synth.Slide(s["title"], tuple(s.get("lines", ())), s.get("say", ""),
                          voice=s.get("voice", voice), hold=float(s.get("hold", hold)))
              for s in spec["slides"]]
    return synth.Lecture(spec["title"], slides, background=spec.get("background", "0xF5F0E6"))


def rendered(name: str, out: Path) -> tuple[Path, dict]:
    """The rendered video and its manifest entry (slide times); rendered again only when the
    lecture's spec changed."""
    lec = lecture(name)
    blob = json.dumps([lec.title, lec.background, [dataclasses.asdict(s) for s in lec.slides]], sort_keys=True)
    tag = hashlib.sha256(blob.encode()).hexdigest()[:12]
    dst = out / f"{name}-{tag}.mp4"
    meta = dst.with_suffix(".json")
    if not (dst.is_file() and meta.is_file()):
        out.mkdir(parents=True, exist_ok=True)
        synth.render(lec, dst)
        meta.write_text(json.dumps(synth.manifest_entry(lec, dst), indent=1))
    return dst, json.loads(meta.read_text())

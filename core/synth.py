"""Render spoken slide lectures locally (espeak-ng voice, ffmpeg drawtext slides).

Used by the demo, the tests and the evaluation: a video whose slide times are known exactly, made
on the spot with no network. Each slide is narrated, then held for a second of silence.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@dataclass(frozen=True, slots=True)
class Slide:
    """One slide of a rendered lecture: its text, the narration spoken over it, and its voice."""

    title: str
    lines: tuple[str, ...] = ()
    say: str = ""
    voice: str = "en-us"
    hold: float = 1.0  # seconds shown after the narration ends (or in all, when silent)


@dataclass
class Lecture:
    title: str
    slides: list[Slide]
    background: str = "0xF5F0E6"
    times: list[tuple[float, float]] = field(default_factory=list)  # filled by render()


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\u2019").replace("%", "\\%")


def _duration(path: Path) -> float:
    out = subprocess.check_output(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                                   "-of", "default=nw=1:nk=1", str(path)])
    return float(out)


def render(lecture: Lecture, dst: Path, size: str = "1280x720", audio: bool = True) -> Path:
    """Write `lecture` to `dst` (H.264 + AAC MP4) and fill `lecture.times` with each slide's span."""
    w, h = (int(x) for x in size.split("x"))
    scale = h / 720
    parts: list[Path] = []
    t = 0.0
    lecture.times = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i, s in enumerate(lecture.slides):
            wav = work / f"{i}.wav"
            if audio and s.say:
                subprocess.run(["espeak-ng", "-v", s.voice, "-s", "155", "-w", str(wav), s.say],
                               check=True, capture_output=True)
                d = _duration(wav) + s.hold
            else:
                d = s.hold
            draw = [f"drawtext=fontfile={BOLD}:text='{_esc(s.title)}':fontsize={int(60 * scale)}:"
                    f"fontcolor=black:x={int(80 * scale)}:y={int(90 * scale)}:expansion=none"]
            for j, line in enumerate(s.lines):
                draw.append(f"drawtext=fontfile={FONT}:text='{_esc(line)}':fontsize={int(44 * scale)}:"
                            f"fontcolor=0x202020:x={int(110 * scale)}:y={int((250 + j * 90) * scale)}:"
                            "expansion=none")
            seg = work / f"{i}.mp4"
            cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
                   "-i", f"color=c={lecture.background}:s={w}x{h}:r=25:d={d:.3f}"]
            if audio:
                if s.say:
                    cmd += ["-i", str(wav)]
                else:
                    cmd += ["-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono"]
                cmd += ["-filter_complex", f"[0:v]{','.join(draw)}[v];[1:a]apad[a]",
                        "-map", "[v]", "-map", "[a]", "-c:a", "aac", "-ar", "44100", "-ac", "1"]
            else:
                cmd += ["-vf", ",".join(draw)]
            cmd += ["-t", f"{d:.3f}", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(seg)]
            subprocess.run(cmd, check=True, capture_output=True)
            lecture.times.append((round(t, 3), round(t + d, 3)))
            parts.append(seg)
            t += d
        lst = work / "list.txt"
        lst.write_text("".join(f"file '{p}'\n" for p in parts))
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(lst),
                        "-c", "copy", "-metadata", f"title={lecture.title}", str(dst)],
                       check=True, capture_output=True)
    return dst


def manifest_entry(lecture: Lecture, dst: Path) -> dict:
    return {"file": dst.name, "title": lecture.title, "duration": lecture.times[-1][1],
            "slides": [{"index": i, "start": a, "end": b, "title": s.title}
                       for i, (s, (a, b)) in enumerate(zip(lecture.slides, lecture.times, strict=True))]}


DEMO = Lecture(
    title="How volcanoes work",
    slides=[
        Slide("How volcanoes work", ("Earth Science - Lecture 3",),
              "Welcome. Today we talk about volcanoes and why they erupt."),
        Slide("Magma chambers", ("molten rock below the crust", "rises because it is less dense"),
              "Below a volcano sits a magma chamber. Molten rock collects there and rises, "
              "because it is lighter than the solid rock around it."),
        Slide("Why eruptions happen", ("dissolved gas: water vapour, CO2", "pressure builds up"),
              "Eruptions happen when gas dissolved in the magma comes out of solution. "
              "The pressure builds until the rock above gives way."),
        Slide("Kinds of volcano", ("shield: runny basalt lava", "stratovolcano: sticky andesite"),
              "Shield volcanoes like those of Hawaii pour out runny lava, while stratovolcanoes "
              "explode because their sticky magma traps the gas."),
    ],
)


def write_demo(dst: Path) -> Path:
    """The demo lecture plus a manifest of its slide times beside it."""
    render(DEMO, dst)
    dst.with_suffix(".json").write_text(json.dumps(manifest_entry(DEMO, dst), indent=1))
    return dst

"""The real models' answers, remembered per test process: the same bytes are read once.

Most chat, CLI-in-process and reliability tests index one of a handful of rendered lectures, so
one xdist process transcribes the same WAV and reads the same frames dozens of times. `Memo`
wraps the real faster-whisper and RapidOCR methods at the class level: the first call with given
bytes and given settings runs the real model, later calls with the same bytes and settings get
that answer back (a copy). Nothing is faked — what a test gets is what the model said for those
bytes — and a changed byte (another lecture, a window cut elsewhere, another language) misses.

Tests that measure the models' own cost (the event loop's gaps while transcribing, the bot's RSS,
the fuzzer: all marked `alone`) run with the memo off (tests/conftest.py).
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from core.engines.ocr import RapidReader
from core.engines.transcribe import FasterWhisper


def digest(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


class Memo:
    def __init__(self) -> None:
        self.on = True
        self.saved: dict[Hashable, Any] = {}
        self.hits = self.misses = 0
        self.lock = threading.Lock()
        self._undo: list[tuple[type, str, Any]] = []

    def _wrap(self, cls: type, name: str, key: Callable[[Any, Path], Hashable]) -> None:
        real = getattr(cls, name)
        memo = self

        def remembered(obj: Any, path: Path) -> Any:
            if not memo.on:
                return real(obj, path)
            k = (cls.__name__, name, key(obj, path))
            with memo.lock:
                if k in memo.saved:
                    memo.hits += 1
                    return copy.deepcopy(memo.saved[k])
            out = real(obj, path)
            with memo.lock:
                memo.misses += 1
                memo.saved[k] = copy.deepcopy(out)
            return out

        self._undo.append((cls, name, real))
        setattr(cls, name, remembered)

    def install(self) -> Memo:
        # what each answer depends on: the bytes, and the instance's settings that change it
        self._wrap(FasterWhisper, "transcribe", lambda w, p: (w.model_id, w.language, w.beam_size, digest(p)))
        self._wrap(FasterWhisper, "detect_language", lambda w, p: (w.model_id, digest(p)))
        self._wrap(RapidReader, "read", lambda r, p: (r.min_score, digest(p)))
        return self

    def uninstall(self) -> None:
        for cls, name, real in reversed(self._undo):
            setattr(cls, name, real)
        self._undo.clear()


class RenderCache:
    """`core.synth.render` with its output kept across test processes and runs: every pytest
    process of the suite (two xdist workers and three lanes) renders the demo lecture, the bread
    lecture and the short ones (espeak-ng and ffmpeg, ~13 s of CPU each time) otherwise.

    The key is everything the file depends on: the lecture (its repr holds every slide's words,
    voice and hold), the size and audio arguments, and the source of core/synth.py; the slide
    times `render` fills in are kept beside the file. Processes that want the same file at once
    wait on a lock for the first one; each test gets its own copy (some mangle theirs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real: Any = None

    def install(self) -> RenderCache:
        from core import synth

        source = Path(synth.__file__).read_bytes()
        real = self._real = synth.render

        def render(lecture: Any, dst: Path, size: str = "1280x720", audio: bool = True) -> Path:
            spec = repr((dataclasses.replace(lecture, times=[]), size, audio))  # times: what render fills in
            key = hashlib.sha1(spec.encode() + source).hexdigest()[:24]
            kept, times = self.root / f"{key}.mp4", self.root / f"{key}.json"
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / f"{key}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (kept.exists() and times.exists()):
                    part = self.root / f"{key}.{os.getpid()}.part.mp4"
                    real(lecture, part, size=size, audio=audio)
                    times.write_text(json.dumps(lecture.times))
                    os.replace(part, kept)
            lecture.times = [tuple(t) for t in json.loads(times.read_text())]
            shutil.copyfile(kept, dst)
            return dst

        synth.render = render
        return self

    def uninstall(self) -> None:
        from core import synth

        if self._real is not None:
            synth.render = self._real

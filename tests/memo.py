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
import hashlib
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

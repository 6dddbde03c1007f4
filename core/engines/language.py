"""Which language a video speaks, from Whisper's language detection: the first 30 s of speech
read from the start of the WAV, and the choice between a close call's candidates.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

DETECT_READ_S = 300.0  # how much of a video's start language detection reads to find speech
DETECT_MIN_SHARE = 0.3  # a language less likely than this (after the prior) leaves the video in English
# Languages with the most speech in Whisper's training data (roughly a thousand hours or more),
# which is also where lectures are. Whisper base, hearing espeak-ng's German, says Welsh 0.25,
# German 0.24, Latin 0.24: every other language counts RARE_PRIOR as much, so that a close call
# goes to the widely spoken one, while a sure detection of Welsh (0.9) still wins.
COMMON = frozenset("en zh de es ru fr pt ko ja tr pl it sv nl ca fi id ar uk vi he el da ms hu ro no th "
                   "cs hi ta ur hr bg lt sk".split())
RARE_PRIOR = 0.5
# A language the video's title is written in (its function words: core.text.words.languages_of_text)
# counts this many times as much. Whisper base heard espeak-ng's German "Das Oktoberfest" as Latin
# 0.42, German 0.11 — Latin still ahead after the prior, and its Latin transcript was noise — while
# the title said German. A sure detection (0.9 against 0.05) still wins over the title.
TITLE_PRIOR = 3.0


def choose_language(probs: dict[str, float], titled: frozenset[str] = frozenset()) -> str:
    """The video's language from the detection's probabilities: English when English is likely
    (p ≥ 0.5) or the best guess; otherwise the best guess after the priors (`COMMON`, and
    `titled`: the languages the title is written in), if it has at least DETECT_MIN_SHARE of the
    weight; else English, the index's language so far."""
    if probs.get("en", 0.0) >= 0.5:
        return "en"
    weighted = {lang: p * (1.0 if lang in COMMON else RARE_PRIOR) * (TITLE_PRIOR if lang in titled else 1.0)
                for lang, p in probs.items()}
    total = sum(weighted.values()) or 1.0
    best = max(weighted, key=lambda lang: weighted[lang], default="en")
    return best if weighted[best] / total >= DETECT_MIN_SHARE else "en"


def read_wav(wav: Path, seconds: float, rate: int = 16000) -> np.ndarray:
    """The first `seconds` of `wav` as floats in [-1, 1] at `rate` Hz. The 16-bit mono WAV that
    core.ingest.media writes is read as it is, without the rest of the file; anything else is decoded
    and resampled whole by faster-whisper."""
    try:
        with wave.open(str(wav), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, 1, 2):
                return np.frombuffer(w.readframes(int(seconds * rate)), np.int16).astype(np.float32) / 32768.0
    except (wave.Error, EOFError):
        pass
    from faster_whisper.audio import decode_audio  # type: ignore[import-untyped, unused-ignore]  # ships no type information

    audio: np.ndarray = decode_audio(str(wav), sampling_rate=rate)
    return audio[: int(seconds * rate)]


def first_speech(audio: np.ndarray, rate: int = 16000, seconds: float = 30.0) -> np.ndarray:
    """`seconds` of `audio` (float samples) from the first 100 ms window louder than a tenth of
    its loudest one."""
    win = rate // 10
    n = len(audio) // win
    if n == 0:
        return audio
    rms = np.sqrt((np.asarray(audio[: n * win], np.float32).reshape(n, win) ** 2).mean(axis=1))
    loud = np.nonzero(rms > 0.1 * rms.max())[0]
    start = int(loud[0]) * win if len(loud) else 0
    return audio[start: start + int(seconds * rate)]


def wav_seconds(wav: Path) -> float:
    """The length of a WAV file from its header; 0 when it cannot be read as one."""
    try:
        with wave.open(str(wav), "rb") as w:
            return w.getnframes() / float(w.getframerate() or 1)
    except (wave.Error, EOFError, OSError):
        return 0.0

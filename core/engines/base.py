"""What every model module shares: the facts that name a model's collection (`Spec`, `slug`),
unit-length vectors (`normalise`), and the torch set-up that lets torchvision import beside the CPU
torch wheel (`prepare_torch`)."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spec:
    """A model's collection-naming facts (`model_id`, `dim`), known before its weights load."""

    model_id: str
    dim: int


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


class OneSpace:
    """For a model that embeds every language, passages and questions alike, in one space: the
    passages' language and the questions' role change nothing."""

    bilingual = False  # `TextEmbedder.bilingual`: one space, one scale for every language

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_passages(self, texts: list[str], language: str) -> np.ndarray:
        return self.embed(texts)

    def embed_query(self, texts: list[str], languages: Collection[str] | None = None) -> np.ndarray:
        return self.embed(texts)

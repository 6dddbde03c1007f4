"""Image embedders: CLIP's image and text towers (open_clip), off unless CLIP_PRETRAINED is set.

Vectors come back L2-normalised (float32). Every call blocks: run it on a model thread
(`core.engines.registry.Models`), off the event loop."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from core.config import Settings
from core.engines.base import normalise, prepare_torch, slug

log = logging.getLogger(__name__)


class ImageEmbedder(Protocol):
    model_id: str
    dim: int

    def embed_images(self, paths: list[str]) -> np.ndarray: ...

    def embed_text(self, texts: list[str]) -> np.ndarray: ...


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

"""In-process fake models for tests of logic rather than models (queue limits, rate limits,
routing): real implementations of the engines' interfaces that need no weights and take no time,
as simonw/llm's `embed-demo` model does. Clearly fakes: their vectors carry no meaning beyond
shared words, and their transcriber hears nothing.

`fake_models(settings)` is a `core.engines.registry.Models` built on them; anything that would
load a real model (OCR, CLIP) stays off."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from core.config import Settings
from core.engines.base import OneSpace, normalise
from core.engines.registry import Models
from core.engines.transcribe import OneLanguage
from core.models import Segment
from core.text.words import tokens


class FakeWordHashEmbedder(OneSpace):
    """Each content word adds a fixed random direction: texts sharing words are close."""

    model_id = "fakewordhash"
    dim = 64

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in sorted(tokens(text)) or [text]:
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return normalise(out + 1e-6)


class FakeDeafTranscriber(OneLanguage):
    """Hears nothing in any audio."""

    model_id = "fakedeaf"

    def transcribe(self, wav: Path) -> list[Segment]:
        return []


def fake_models(settings: Settings) -> Models:
    return Models(settings, text=FakeWordHashEmbedder(), image=None, transcriber=FakeDeafTranscriber())

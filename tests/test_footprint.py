"""The small-instance path: the default text embedder runs without torch and gives
sentence-transformers' vectors, a command loads only what it uses, and long audio is transcribed
in bounded windows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from core.config import Settings
from core.engines.registry import Models
from core.engines.st_onnx import OnnxSentenceEmbedder, layout
from core.engines.text import SentenceTransformerEmbedder
from core.ingest.audio import transcribe_windows, windows
from core.service import Service

# Several tests here import torch and sentence-transformers, or start a fresh interpreter that
# loads a model: 10-40 s each on this machine, past 60 s when it is loaded.
pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "sentence_transformers", "open_clip", "torchvision"}
INDEXING = {"faster_whisper", "ctranslate2", "rapidocr"}

# Runs one CLI command in a fresh interpreter, then reports which top-level modules it imported.
DRIVER = """
import json, sys
from adapters import console
rc = console.main(sys.argv[1:])
print("MODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)
sys.exit(rc)
"""


def bundled() -> str:
    return Settings().text_embedder.partition(":")[2]


def sentences(n: int) -> list[str]:
    """Sentences of 1 to ~150 words, punctuation, case and non-ASCII included."""
    words = (ROOT / "README.md").read_text().split()
    rng = np.random.default_rng(7)
    out = [" ".join(rng.choice(words, size=int(rng.choice([1, 2, 5, 12, 30, 150])))) for _ in range(n)]
    return out + ["", "   spaces around   ", "Héllo Wörld, ÇA VA?", "数学とテスト", "x" * 3000]


def test_onnx_embedder_gives_sentence_transformers_vectors() -> None:
    path = bundled()
    assert Settings().text_embedder.startswith("onnx:")
    texts = sentences(100)
    onnx = OnnxSentenceEmbedder(path)
    st = SentenceTransformerEmbedder(path)
    a, b = onnx.embed(texts), st.embed(texts)
    assert a.shape == b.shape == (len(texts), 384)
    cos = (a * b).sum(axis=1)
    assert float(cos.min()) >= 0.999, f"lowest cosine {cos.min():.5f} at {texts[int(cos.argmin())]!r}"
    # the same collection name: data indexed with sentence-transformers stays valid
    assert (onnx.model_id, onnx.dim) == (st.model_id, st.dim) == ("gtallminilml6v2", 384)
    assert layout(path).dim == 384


def run_cli(args: list[str], data: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_DIR", "TEXT_EMBEDDER", "CLIP_"))}
    full.update(DATA_DIR=str(data), HF_HUB_OFFLINE="1", **env)
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, env=full,
                          cwd=ROOT, timeout=120)
    line = next((x for x in proc.stderr.splitlines() if x.startswith("MODULES ")), "MODULES []")
    proc.stderr = proc.stderr.replace(line, "")
    return proc, set(json.loads(line[8:]))


@pytest.fixture(scope="module")
async def indexed(models: Models, lecture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the volcano lecture indexed on the defaults (CLIP off)."""
    from adapters.console import scope

    data = tmp_path_factory.mktemp("footprint") / "data"
    settings = Settings(data_dir=data)
    own = Models(settings, text=models.text, image=None, transcriber=models.transcriber)
    async with Service.open(settings, models=own, chat=None) as svc:
        svc.start_workers(1)
        await svc.wait((await svc.submit(scope("talks"), str(lecture[0]))).job.id)
    own.close()
    # Milvus Lite serves the file from a thread of this process until released; the CLI
    # processes below open it themselves
    from milvus_lite import server_manager_instance

    await asyncio.to_thread(server_manager_instance.release_server, settings.milvus)
    return data


async def test_ask_imports_no_torch_and_no_indexing_model(indexed: Path) -> None:
    proc, modules = await asyncio.to_thread(
        run_cli, ["ask", "--json", "What kind of lava do shield volcanoes have?", "--channel", "talks"], indexed)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout)
    assert answer["citations"] and "basalt" in answer["answer"].lower()
    assert "onnxruntime" in modules and "tokenizers" in modules  # the text embedder did run
    assert not modules & HEAVY, f"the default ask imported {modules & HEAVY}"
    assert not modules & INDEXING, f"an ask loaded indexing models: {modules & INDEXING}"


async def test_videos_and_forget_load_no_model(indexed: Path) -> None:
    proc, modules = await asyncio.to_thread(run_cli, ["videos", "--json", "--channel", "talks"], indexed)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [v["title"] for v in json.loads(proc.stdout)] == ["How volcanoes work"]
    assert not modules & (HEAVY | INDEXING | {"onnxruntime", "tokenizers"}), modules
    proc, modules = await asyncio.to_thread(run_cli, ["forget", "no-such-video", "--channel", "talks"], indexed)
    assert not modules & (HEAVY | INDEXING | {"onnxruntime", "tokenizers"}), modules


async def test_st_setting_still_runs_sentence_transformers(indexed: Path) -> None:
    """TEXT_EMBEDDER=st:<bundled path> forces torch, and answers from the same collection."""
    proc, modules = await asyncio.to_thread(
        run_cli, ["ask", "--json", "What kind of lava do shield volcanoes have?", "--channel", "talks"], indexed,
        TEXT_EMBEDDER="st:" + bundled())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sentence_transformers" in modules and "torch" in modules
    assert "basalt" in json.loads(proc.stdout)["answer"].lower()


def _espeak_wav(dst: Path, parts: list[str | float]) -> Path:
    """A 16 kHz mono WAV of spoken sentences and silences (floats: seconds of silence)."""
    rate, pieces = 16000, []
    for i, p in enumerate(parts):
        if isinstance(p, float):
            pieces.append(np.zeros(int(p * rate), np.int16))
            continue
        raw, out = dst.parent / f"p{i}.wav", dst.parent / f"p{i}-16k.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), p], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(raw), "-ar", "16000", "-ac", "1", str(out)], check=True)
        with wave.open(str(out), "rb") as w:
            pieces.append(np.frombuffer(w.readframes(w.getnframes()), np.int16))
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.concatenate(pieces).tobytes())
    return dst


def test_long_audio_is_transcribed_in_windows_cut_at_pauses(models: Models, tmp_path: Path) -> None:
    wav = _espeak_wav(tmp_path / "long.wav", [
        "The quick brown fox jumps over the lazy dog.", 2.0,
        "Today we bake a simple loaf of bread.", 2.0,
        "Bread rises because yeast releases carbon dioxide.", 1.0])
    spans = windows(wav, window_s=5.0)
    assert len(spans) >= 2 and spans[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # no gap, no overlap
    with wave.open(str(wav), "rb") as w:
        assert spans[-1][1] == w.getnframes()
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    for _, cut in spans[:-1]:  # every cut falls in a pause, not inside a word
        assert np.abs(samples[cut - 800:cut + 800].astype(np.int32)).max() < 500
    whole = models.transcriber.transcribe(wav)
    split = transcribe_windows(models.transcriber, wav, tmp_path, window_s=5.0)
    text = " ".join(s.text.lower() for s in split)
    assert "lazy dog" in text and "bread" in text and "carbon dioxide" in text
    for word in ("lazy", "bread", "carbon"):  # times moved back into place
        at = [next(s.start for s in segs if word in s.text.lower()) for segs in (whole, split)]
        assert abs(at[0] - at[1]) < 0.6, (word, at)
    assert not (tmp_path / "audio-window.wav").exists()

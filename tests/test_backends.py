"""The swappable parts behind their interfaces: the remote whisper and embedding backends against
a fake OpenAI-compatible server, and faster-whisper on real speech and on silence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from core.config import Settings
from core.engines.base import Spec
from core.engines.registry import Models
from core.engines.text import OpenAIEmbedder
from core.engines.transcribe import RemoteWhisper
from core.service import Service
from tests.fakes.serve import serve


@pytest.fixture
async def openai_api():
    """FakeOpenAIAudioAndEmbeddings: /v1/audio/transcriptions (verbose_json) and /v1/embeddings."""
    seen: list[dict] = []

    async def transcribe(request: web.Request) -> web.Response:
        form = await request.post()
        seen.append({"path": "transcriptions", "model": form["model"], "format": form["response_format"],
                     "bytes": len(form["file"].file.read())})
        return web.json_response({"text": "hello world", "segments": [
            {"id": 0, "start": 0.0, "end": 1.5, "text": " hello"}, {"id": 1, "start": 1.5, "end": 2.0, "text": " world"}]})

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"path": "embeddings", **body})
        return web.json_response({"object": "list", "model": body["model"], "data": [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
            for i, t in enumerate(body["input"])], "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", transcribe)
    app.router.add_post("/v1/embeddings", embeddings)
    runner, base = await serve(app)
    yield f"{base}/v1", seen
    await runner.cleanup()


async def test_remote_whisper_posts_audio_and_reads_segments(openai_api, tmp_path: Path) -> None:
    import asyncio

    url, seen = openai_api
    wav = tmp_path / "a.wav"
    await asyncio.to_thread(subprocess.run, ["espeak-ng", "-w", str(wav), "hello world"], check=True)
    segs = await asyncio.to_thread(RemoteWhisper(url, "whisper-large-v3").transcribe, wav)
    assert [(s.start, s.end, s.text) for s in segs] == [(0.0, 1.5, "hello"), (1.5, 2.0, "world")]
    assert seen[0]["model"] == "whisper-large-v3" and seen[0]["format"] == "verbose_json"
    assert seen[0]["bytes"] == wav.stat().st_size


async def test_openai_embedder_normalises_and_knows_its_dimension(openai_api) -> None:
    import asyncio

    url, seen = openai_api
    emb = await asyncio.to_thread(OpenAIEmbedder, url, "e5-small")
    assert emb.dim == 3 and emb.model_id == "e5small"
    v = await asyncio.to_thread(emb.embed, ["ab", "abcd"])
    assert v.shape == (2, 3) and abs(float((v[0] ** 2).sum()) - 1) < 1e-5
    assert seen[-1]["input"] == ["ab", "abcd"]


def test_faster_whisper_transcribes_speech_with_times(models, tmp_path: Path) -> None:
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "The quick brown fox jumps over the lazy dog."], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-ar", "16000", "-ac", "1", str(tmp_path / "s16.wav")], check=True)
    segs = models.transcriber.transcribe(tmp_path / "s16.wav")
    text = " ".join(s.text.lower() for s in segs)
    assert "quick" in text and "lazy dog" in text
    assert segs[0].start < 1.0 and segs[-1].end > 1.5


def test_silence_produces_no_invented_text(models, tmp_path: Path) -> None:
    wav = tmp_path / "silence.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "20",
                    "-c:a", "pcm_s16le", str(wav)], check=True)
    assert models.transcriber.transcribe(wav) == []
    noise = tmp_path / "noise.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=r=16000:a=0.002:c=pink", "-t", "20",
                    "-ac", "1", "-c:a", "pcm_s16le", str(noise)], check=True)
    assert models.transcriber.transcribe(noise) == []


def test_clip_path_with_random_weights_embeds_frames_and_text(models, lecture, tmp_path: Path) -> None:
    """open_clip ViT-B-32 with random weights (pretrained=None): the code path, not its quality."""


    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(lecture[0]), "-frames:v", "1", str(tmp_path / "f.jpg")], check=True)
    img = models.image.embed_images([str(tmp_path / "f.jpg")])
    txt = models.image.embed_text(["a slide about volcanoes"])
    assert img.shape == (1, models.image.dim) == txt.shape
    assert models.image.model_id == "vitb32random"


def test_clip_setting_names_its_collection_without_a_text_model(models) -> None:
    """CLIP_PRETRAINED=random loads the CLIP tower; the text embedder's spec comes from its
    config files (no weights loaded) and matches the loaded model's."""
    fresh = Models(Settings(clip_pretrained="random"), image=models.image)
    text, image = fresh.specs()
    # the bundled MiniLM beside multilingual-e5-small: 384 + 384 + the language-side weight
    assert image == Spec("vitb32random", 512) and text == Spec("gtallminilml6v2me5small", 769)
    assert fresh.loaded() == ["image"]  # naming the collections loaded no text model
    assert (models.text.model_id, models.text.dim) == (text.model_id, text.dim)


async def test_unknown_clip_tag_stops_start_up(tmp_path: Path) -> None:
    """Weights that were asked for and cannot be loaded are an error, not a silent downgrade."""
    settings = Settings(data_dir=tmp_path / "data", clip_pretrained="no-such-tag")
    with pytest.raises(RuntimeError, match="no-such-tag"):
        async with Service.open(settings, chat=None):
            pass


def test_bundled_sentence_transformers_leave_the_hub_settings_alone() -> None:
    """Loading the bundled MiniLM by path must not set HF_HUB_OFFLINE for the whole process (it
    did, and open_clip could then never download CLIP weights)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("import os, huggingface_hub.constants as c\n"
            "from core.config import Settings\nfrom core.engines.text import SentenceTransformerEmbedder\n"
            "e = SentenceTransformerEmbedder(Settings().text_embedder.partition(':')[2])\n"
            "print(e.embed(['a sentence']).shape, os.environ.get('HF_HUB_OFFLINE'), c.HF_HUB_OFFLINE)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["384)", "None", "False"]

"""The seed recipe's pipeline, timed on the same video as vidrag (bench part 2).

Run as its own process (`python -m bench.baseline SPEC.json`) so that its models do not count in
vidrag's peak RSS; every model is loaded before the clock starts, as in a running bot.

What it does, stage by stage (the recipe: moviepy frames at 0.2 fps, openai-whisper, CLIP,
an embedding model, Milvus through LlamaIndex):

- frames: ffmpeg decodes *every* frame at full size into a pipe (as moviepy's reader does); one
  frame each 5 s is kept and written as a full-size PNG (as `write_images_sequence` does).
- audio: the sound track to a WAV file, then whisper's own loader and log-Mel spectrogram.
- transcribe: openai-whisper `base` built from its `ModelDimensions` with random weights (no
  weights offline), greedy, fp32, timestamps on: whisper's own `DecodingTask` per 30-s window.
  A random model decodes garbage of any length, so each window is a **fixed-length decode**: the
  end-of-text token is suppressed and `sample_len` is the number of tokens vidrag's transcript
  of that window has (its text in whisper's tokenizer, plus two timestamp tokens per segment).
- clip: open_clip ViT-B-32 (random weights, `pretrained=None`) on every kept frame, batches of 32.
- embed: the same text embedder as vidrag, on the same chunk texts.
- store: Milvus Lite with a FLAT index, both collections.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# whisper `base` (whisper/__init__.py _MODELS "base"): these dimensions, multilingual vocabulary
BASE_DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=512, n_audio_head=8, n_audio_layer=6,
                 n_vocab=51865, n_text_ctx=448, n_text_state=512, n_text_head=8, n_text_layer=6)


def window_tokens(segments: list[dict], duration: float, tokenizer) -> list[int]:
    """Tokens vidrag's transcript has in each 30-s window (by segment start)."""
    n = max(1, math.ceil(duration / 30.0))
    counts = [0] * n
    for s in segments:
        w = min(n - 1, int(s["start"] // 30))
        counts[w] += len(tokenizer.encode(" " + s["text"])) + 2  # + begin/end timestamp tokens
    return counts


def frames_png(video: Path, out: Path, width: int, height: int, fps: float, every: float = 5.0) -> int:
    """Decode every frame (rgb24 through a pipe), keep one each `every` s, write it as PNG."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    size = width * height * 3
    proc = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-i", str(video), "-an", "-sn",
                             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE,
                            bufsize=size * 4)
    assert proc.stdout is not None
    n = kept = 0
    next_t = 0.0
    while True:
        buf = proc.stdout.read(size)
        if len(buf) < size:
            break
        t = n / fps
        if t >= next_t:
            Image.frombuffer("RGB", (width, height), buf).save(out / f"frame{kept:05d}.png")
            kept += 1
            next_t += every
        n += 1
    proc.wait()
    return kept


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    video, work = Path(spec["video"]), Path(spec["workdir"])
    work.mkdir(parents=True, exist_ok=True)

    import torch

    from core.engines.base import normalise, prepare_torch

    prepare_torch()  # 2 threads, and torchvision importable (see core/engines/base.py)
    import open_clip
    import whisper
    from whisper.decoding import DecodingOptions
    from whisper.model import ModelDimensions, Whisper
    from whisper.tokenizer import get_tokenizer

    from core.config import Settings
    from core.engines.text import make_text_embedder
    from core.models import Laps
    from core.store.scoped import _pymilvus_client

    # ---- load every model first (not timed) ----
    torch.manual_seed(0)
    model = Whisper(ModelDimensions(**BASE_DIMS)).eval()
    tokenizer = get_tokenizer(True, num_languages=model.num_languages, language="en", task="transcribe")
    clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    clip.eval()
    text_model = make_text_embedder(Settings())
    MilvusClient = _pymilvus_client()  # noqa: N806
    from pymilvus import DataType

    lap = Laps()
    stages, t0 = lap.stages, lap.started
    r0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    n_frames = frames_png(video, work / "frames", spec["width"], spec["height"], spec["fps"])
    lap("frames")

    wav = work / "audio.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(video), "-vn", str(wav)], check=True)
    audio = whisper.load_audio(str(wav))
    mel = whisper.log_mel_spectrogram(audio, model.dims.n_mels, padding=whisper.audio.N_SAMPLES)
    lap("audio")

    counts = window_tokens(spec["segments"], spec["duration"], tokenizer)
    decoded = 0
    with torch.no_grad():
        for w, n_tok in enumerate(counts):
            if n_tok == 0:
                continue
            seek = w * whisper.audio.N_FRAMES
            segment = whisper.pad_or_trim(mel[:, seek:seek + whisper.audio.N_FRAMES], whisper.audio.N_FRAMES)
            n_tok = min(n_tok, model.dims.n_text_ctx // 2)
            opts = DecodingOptions(language="en", temperature=0.0, fp16=False, sample_len=n_tok,
                                   suppress_tokens=[-1, tokenizer.eot])
            result = whisper.decode(model, segment, opts)
            decoded += len(result.tokens)
    lap("transcribe")

    frames = sorted((work / "frames").glob("*.png"))
    vecs = []
    with torch.no_grad():
        for i in range(0, len(frames), 32):
            from PIL import Image

            batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in frames[i:i + 32]])
            vecs.append(clip.encode_image(batch).numpy())
    image_vectors = normalise(np.concatenate(vecs))
    lap("clip")

    chunks = spec["chunks"]
    text_vectors = text_model.embed([c["text"] for c in chunks])
    lap("embed")

    client = MilvusClient(uri=str(work / "milvus.db"))
    for name, dim, vectors, rows in (
            ("text", text_vectors.shape[1], text_vectors, [{"text": c["text"][:8000]} for c in chunks]),
            ("frames", image_vectors.shape[1], image_vectors, [{"text": str(p)} for p in frames])):
        if client.has_collection(name):
            client.drop_collection(name)
        schema = client.create_schema(auto_id=True)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", DataType.VARCHAR, max_length=8192)
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        client.create_collection(name, schema=schema, index_params=index)
        client.insert(name, [{**r, "vector": v.tolist()} for r, v in zip(rows, vectors, strict=True)])
    client.close()
    lap("store")

    total = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(r0, r1, strict=True))
    print(json.dumps({"stages": stages, "total": round(total, 3), "cpu_s": round(cpu, 2), "frames": n_frames,
                      "windows": sum(1 for c in counts if c), "tokens": decoded,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main(sys.argv[1])

"""A sentence-transformers model directory run on onnxruntime, without torch.

The default text embedder (the bundled all-MiniLM-L6-v2) used to pull in torch, transformers and
sentence-transformers: seconds of imports and hundreds of MB in every process that answers a
question (figures: docs/benchmarks.md, "Design figures"). onnxruntime is already loaded for OCR, and `tokenizers` reads the model's own
tokenizer.json, so the same model runs here with neither.

The vectors are sentence-transformers' own: the directory's modules.json and 1_Pooling/config.json
say how token states become a sentence vector (mean of the unmasked tokens for MiniLM), and
sentence_bert_config.json the sequence limit; tests/test_footprint.py checks cosine >= 0.999
against sentence-transformers on a few hundred sentences.

The ONNX graph is exported from the directory's weights with torch.onnx once per installation
(scripts/setup.sh runs `python -m core.engines.st_onnx DIR`; otherwise on first use), in a child process,
so the process that embeds never imports torch. Only BERT-like models whose modules are
Transformer → Pooling (→ Normalize) run here; others raise, and `st:` runs them on torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.engines.base import OneSpace, prepare_torch, slug

log = logging.getLogger(__name__)

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")


@dataclass(frozen=True)
class Layout:
    """What a sentence-transformers directory says about itself, read from JSON alone."""

    root: Path
    transformer: Path  # the directory holding config.json and the weights
    modes: tuple[str, ...]  # pooling modes, concatenated in this order (as sentence-transformers does)
    dim: int
    max_length: int
    lowercase: bool
    dense: bool  # a Dense (or other) module after pooling: not runnable here


def layout(model_dir: str | Path) -> Layout:
    root = Path(model_dir)
    modules_file = root / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.exists() else [
        {"type": TRANSFORMER, "path": ""}, {"type": POOLING, "path": "1_Pooling"}]
    transformer, pooling, other = root, None, False
    for m in modules:
        kind = m.get("type", "")
        if kind.endswith("Transformer"):
            transformer = root / m.get("path", "")
        elif kind.endswith("Pooling"):
            pooling = root / m.get("path", "")
        elif not kind.endswith("Normalize"):
            other = True
    config = json.loads((transformer / "config.json").read_text())
    hidden = int(config.get("hidden_size") or config.get("dim") or config.get("d_model"))
    modes: tuple[str, ...] = ("mean_tokens",)
    if pooling is not None and (pooling / "config.json").exists():
        pc = json.loads((pooling / "config.json").read_text())
        hidden = int(pc.get("word_embedding_dimension", hidden))
        modes = tuple(m for m in POOLING_MODES if pc.get(f"pooling_mode_{m}"))
        if any(v for k, v in pc.items() if k.startswith("pooling_mode_") and k[13:] not in POOLING_MODES):
            other = True  # weightedmean, lasttoken: not implemented here
    st_config = transformer / "sentence_bert_config.json"
    sbc = json.loads(st_config.read_text()) if st_config.exists() else {}
    tok_config = transformer / "tokenizer_config.json"
    tc = json.loads(tok_config.read_text()) if tok_config.exists() else {}
    limits = [int(x) for x in (sbc.get("max_seq_length"), tc.get("model_max_length"),
                               config.get("max_position_embeddings")) if x and int(x) < 10**6]
    return Layout(root, transformer, modes or ("mean_tokens",), hidden * max(1, len(modes)),
                  min(limits) if limits else 512, bool(sbc.get("do_lower_case")), other)


def graph_key(lay: Layout) -> str:
    """Names the exported graph after the model's config and weights, so a changed model
    is exported again (and two checkouts share one export)."""
    h = hashlib.sha1((lay.transformer / "config.json").read_bytes())
    for w in sorted(lay.transformer.glob("*.safetensors")) + sorted(lay.transformer.glob("pytorch_model*.bin")):
        h.update(f"{w.name}:{w.stat().st_size}".encode())
    return f"{lay.transformer.resolve().parent.name}-{lay.transformer.name}-{h.hexdigest()[:12]}"


def cache_dirs() -> list[Path]:
    """Where exported graphs live: inside the virtual environment (setup.sh exports there, and a
    new environment starts clean), else the user's cache."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [Path(sys.prefix) / "share" / "vidrag" / "onnx", xdg / "vidrag" / "onnx"]


def graph_path(lay: Layout, export: bool = True) -> Path:
    """The ONNX graph of `lay`: found in a cache directory, or exported into the first writable
    one (in a child process: torch stays out of this one)."""
    key = graph_key(lay)
    for d in cache_dirs():
        if (d / key / "model.onnx").exists():
            return d / key / "model.onnx"
    if not export:
        raise FileNotFoundError(f"no ONNX export of {lay.root}")
    errors = []
    for d in cache_dirs():
        out = d / key / "model.onnx"
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            errors.append(f"{d}: {e}")
            continue
        log.info("exporting %s to ONNX (once): %s", lay.root, out)
        run = subprocess.run([sys.executable, "-m", "core.engines.st_onnx", str(lay.root), str(out)],
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if run.returncode == 0 and out.exists():
            return out
        errors.append(f"{d}: {run.stderr.strip()[-2000:]}")
    raise RuntimeError(f"could not export {lay.root} to ONNX: " + " | ".join(errors))


def export(model_dir: str | Path, out: Path) -> None:
    """torch.onnx export of the Transformer module (token states out; pooling stays in numpy).
    Needs torch, transformers and onnx; runs at setup or in a child process."""
    import inspect

    prepare_torch()
    import torch
    from transformers import AutoModel

    lay = layout(model_dir)
    model = AutoModel.from_pretrained(str(lay.transformer), local_files_only=True,
                                      attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class States(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    example = tuple(torch.ones(2, 8, dtype=torch.long) if n != "token_type_ids" else torch.zeros(2, 8, dtype=torch.long)
                    for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "states"]}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        part = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(States(), example, str(part), input_names=names, output_names=["states"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(part, out)  # atomic: a concurrent reader sees no half-written graph


class OnnxSentenceEmbedder(OneSpace):
    """`TEXT_EMBEDDER=onnx:<dir>` (the default, on the bundled MiniLM): tokenizers + onnxruntime
    + numpy pooling, giving sentence-transformers' vectors without torch."""

    batch_size = 32

    def __init__(self, model_dir: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]  # ships no type information
        from tokenizers import Tokenizer

        lay = layout(model_dir)
        if lay.dense:
            raise ValueError(f"{model_dir} has modules after pooling that onnxruntime does not run "
                             "here; use TEXT_EMBEDDER=st:<model> (sentence-transformers on torch)")
        self.layout = lay
        self.model_id = slug(str(model_dir))
        self.dim = lay.dim
        tc_file = lay.transformer / "tokenizer_config.json"
        tc = json.loads(tc_file.read_text()) if tc_file.exists() else {}
        self.tokenizer = Tokenizer.from_file(str(lay.transformer / "tokenizer.json"))
        self.tokenizer.enable_truncation(lay.max_length)
        pad = tc["pad_token"] if isinstance(tc.get("pad_token"), str) else "[PAD]"
        pad_id = self.tokenizer.token_to_id(pad)
        self.tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=pad)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        # no arena: a batch's activations go back to the system when it is done, so a long
        # ingest's peak is one batch, not the largest batch ever seen, kept for good
        opts.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(str(graph_path(lay)), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Sorted by length and batched (as sentence-transformers does, so little padding); each
        batch runs under a lock, so a question waits for one batch of an ingest at most. A batch
        also ends where a text is under half as long as its first: a call of a few dozen texts
        (an ingest's window, core/ingest/pipeline.py: long chunks beside short units) would pad
        the short ones to the longest, and a video embedded window by window would cost more
        than in one call (figures: docs/benchmarks.md, "Design figures")."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        clean = [str(t).strip() for t in texts]
        if self.layout.lowercase:
            clean = [t.lower() for t in clean]
        order = np.argsort([-len(t) for t in clean], kind="stable")
        out = np.zeros((len(clean), self.dim), np.float32)
        i = 0
        while i < len(order):
            j = i + 1
            while j < len(order) and j - i < self.batch_size and 2 * len(clean[order[j]]) >= len(clean[order[i]]):
                j += 1
            idx, i = order[i:j], j
            with self.lock:
                enc = self.tokenizer.encode_batch([clean[j] for j in idx])
                feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                        "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
                states = self.session.run(None, {k: feed[k] for k in self.inputs})[0]
            out[idx] = self.pool(states, feed["attention_mask"])
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-12)

    def pool(self, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """sentence_transformers.models.Pooling, mode by mode, concatenated."""
        m = mask[..., None].astype(np.float32)
        parts = []
        for mode in self.layout.modes:
            if mode == "cls_token":
                parts.append(states[:, 0])
            elif mode == "max_tokens":
                parts.append(np.where(m > 0, states, -1e9).max(axis=1))
            else:
                total = (states * m).sum(axis=1)
                count = np.maximum(m.sum(axis=1), 1e-9)
                parts.append(total / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count))
        return np.concatenate(parts, axis=1)


def main(argv: list[str]) -> int:
    """`python -m core.engines.st_onnx DIR [OUT]`: export DIR's graph (to OUT, or into the cache)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(argv) == 2:
        export(argv[0], Path(argv[1]))
    else:
        print(graph_path(layout(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

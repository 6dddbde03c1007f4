"""The on-screen text engine: RapidOCR with its bundled PP-OCR models (`RapidReader`), behind the
one-method `Reader` interface. Which frames to read, and merging what they say into timed spans,
is the ingest's (core/ingest/ocr.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Reader(Protocol):
    def read(self, image: Path) -> str: ...


class RapidReader:
    """RapidOCR with its bundled PP-OCR ONNX models. The detector upscales a 640×360 frame to
    480 px high: at the native 360 px it misses small or long lines (a 22-px formula line of a
    slide was dropped); its default (736) costs 0.39 s a frame against 0.26 s at 480. The
    text-angle classifier is off: screen text is upright, and it cost 20% of the time.

    One onnxruntime thread by default: OCR runs beside transcription (core/ingest/pipeline.py), and with two
    threads onnxruntime's spinning workers used ~50% more CPU time for the same frames, slowing
    both lanes (docs/benchmarks.md)."""

    def __init__(self, min_score: float = 0.6, threads: int = 1) -> None:
        from rapidocr import RapidOCR

        self.engine = RapidOCR(params={"Det.limit_type": "min", "Det.limit_side_len": 480,
                                       "Global.use_cls": False, "Global.log_level": "warning",
                                       "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                                       "EngineConfig.onnxruntime.inter_op_num_threads": 1})
        self.min_score = min_score

    def read(self, image: Path) -> str:
        out = self.engine(str(image))
        texts = getattr(out, "txts", None)  # RapidOCROutput; None when the page has no text
        if not texts:
            return ""
        scores = getattr(out, "scores", None) or [1.0] * len(texts)
        return "\n".join(t.strip() for t, s in zip(texts, scores, strict=False)
                         if t.strip() and s >= self.min_score)

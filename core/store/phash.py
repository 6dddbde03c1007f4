"""Perceptual hashes of frames and of posted screenshots: a 64-bit DCT hash (pHash) of the
picture's 32×32 greyscale thumbnail, whose bits say which of the 8×8 lowest frequencies lie above
their median. A crop of a few percent, half the size, JPEG quality 40 or a blur move few of them;
another slide moves many. Stored as a signed 64-bit integer (SQLite INTEGER, PostgreSQL BIGINT)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIDE = 32
LOW = 8
BITS = LOW * LOW


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float64)


_DCT = _dct_matrix(SIDE)


def phash_image(im: Image.Image) -> int:
    """The hash of a decoded picture, as a signed 64-bit integer."""
    small = np.asarray(im.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ small @ _DCT.T)[:LOW, :LOW].ravel()
    bits = low > np.median(low[1:])  # the DC term (the mean) left out of the median
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value - (1 << 64) if value >= 1 << 63 else value


def phash_file(path: str | Path) -> int:
    with Image.open(path) as im:
        return phash_image(im)


def phash_bytes(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as im:
        return phash_image(im)


def distances(query: int, hashes: np.ndarray) -> np.ndarray:
    """Hamming distances (0..64) from `query` to each of `hashes` (an int64 array)."""
    x = np.bitwise_xor(hashes.astype(np.int64), np.int64(query)).view(np.uint64)
    return np.bitwise_count(x).astype(np.int64)




def hash_jpegs(rows: list[bytes | None]) -> list[int | None]:
    """The hash of each stored JPEG; None for a missing or unreadable one."""
    out: list[int | None] = []
    for data in rows:
        try:
            out.append(phash_bytes(data) if data else None)
        except (OSError, ValueError, Image.DecompressionBombError):
            out.append(None)
    return out


async def fill_phash(tx: Any, batch: int = 500) -> None:
    """Hash the frames stored before the column existed, from the JPEG bytes the catalog keeps,
    `batch` at a time in key order (a frame whose bytes are missing or unreadable stays NULL, and
    is passed, not read again). The decoding runs on a thread: a catalog of 1,000 lectures holds
    ~100,000 frames."""
    last: tuple[str, str, float] = ("", "", -1.0)
    while True:
        rows = await tx.fetch('SELECT scope, video_id, "time", jpeg FROM frames WHERE phash IS NULL '
                              'AND (scope, video_id, "time") > (?, ?, ?) ORDER BY scope, video_id, "time" LIMIT ?',
                              (*last, batch))
        if not rows:
            return
        hashes = await asyncio.to_thread(hash_jpegs, [bytes(r["jpeg"]) if r["jpeg"] is not None else None for r in rows])
        await tx.many('UPDATE frames SET phash=? WHERE scope=? AND video_id=? AND "time"=?',
                      [(h, r["scope"], r["video_id"], r["time"]) for h, r in zip(hashes, rows, strict=True) if h is not None])
        last = (rows[-1]["scope"], rows[-1]["video_id"], float(rows[-1]["time"]))

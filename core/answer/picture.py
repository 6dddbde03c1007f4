"""A posted picture (a screenshot asked about), read as the hostile input it is: at most
`MAX_BYTES`, a JPEG, PNG or WebP by its first bytes and by its header, at most `MAX_SIDE` pixels a
side and `MAX_PIXELS` in all — all checked before a pixel is decoded — and only then decoded (the
first frame of an animated one), off the event loop, into a picture no wider than `WORK_WIDTH`.
PIL's own decompression-bomb limit is set to `MAX_PIXELS` too, so a header that lies about its
size still stops the decoder."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFile

from core.errors import Refused

MAX_BYTES = 20 * 2**20
MAX_SIDE = 10_000
MAX_PIXELS = 40_000_000  # a phone photo is 12-50 MP; a screenshot of a 4K screen 8 MP
WORK_WIDTH = 640  # what a stored frame is (core/ingest/results.py FRAME_WIDTH): compared alike
FORMATS = {"JPEG", "PNG", "WEBP"}

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL warns past it and refuses past twice it: refused below at once
ImageFile.LOAD_TRUNCATED_IMAGES = False

NOT_A_PICTURE = "I can only look for JPEG, PNG or WebP pictures."
TOO_LARGE = (f"That picture is too large for me to look at (at most {MAX_BYTES // 2**20} MB, "
             f"{MAX_SIDE} px a side and {MAX_PIXELS // 1_000_000} megapixels).")
UNREADABLE = "I couldn't read that picture."


def sniff(data: bytes) -> str | None:
    """The format the first bytes claim, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def load(data: bytes) -> Image.Image:
    """The picture in `data` as an RGB image at most WORK_WIDTH wide; `Refused` with a message
    for the channel when it is not one, is too large or cannot be decoded. CPU work: call it on a
    thread."""
    if len(data) > MAX_BYTES:
        raise Refused(TOO_LARGE)
    claimed = sniff(data)
    if claimed is None:
        raise Refused(NOT_A_PICTURE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[claimed]) as im:  # the header only, so far
                w, h = im.size
                if im.format not in FORMATS or im.format != claimed:
                    raise Refused(NOT_A_PICTURE)
                if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE) or w * h > MAX_PIXELS:
                    raise Refused(TOO_LARGE)
                if im.format == "JPEG":
                    im.draft("RGB", (WORK_WIDTH, WORK_WIDTH * h // w))  # decode at 1/2..1/8 scale when it can
                im.seek(0)
                im.load()
                rgb = im.convert("RGB")
    except Refused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise Refused(TOO_LARGE) from e
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise Refused(UNREADABLE) from e
    if rgb.width > WORK_WIDTH:
        rgb = rgb.resize((WORK_WIDTH, max(1, round(rgb.height * WORK_WIDTH / rgb.width))), Image.Resampling.LANCZOS)
    return rgb

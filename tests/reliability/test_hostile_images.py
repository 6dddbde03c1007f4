"""Hostile pictures (a screenshot asked about, issue 26): the bytes, the header and the server
are chosen by whoever posted it. Each case ends in a clear refusal for the channel — before a
pixel is decoded where the header says enough — with nothing left in DATA_DIR, and the event loop
never blocked (tests/blocking.py watches every test)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from core.answer import picture as pictures
from core.errors import BadSource, UserFacingError
from core.ingest.fetch import PAGE_ALLOWANCE
from core.service import Service
from tests.fakes.media_server import Stream
from tests.reliability.hostile import big_png


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


@pytest.fixture
def asking(indexed_lectures) -> Service:
    """A service on the indexed volcano channel that may fetch from 127.0.0.1 (the fake server)."""
    s = indexed_lectures.service
    settings = dataclasses.replace(s.settings, allow_hosts=("127.0.0.1",))
    return Service(settings, s.catalog, s.vectors, s.models, None)


def _left(svc: Service) -> list[Path]:
    asked = svc.settings.data_dir / "asked"
    return [p for p in asked.rglob("*") if p.is_file()] if asked.exists() else []


async def test_a_decompression_bomb_is_refused_from_its_header(asking: Service, indexed_lectures, server,
                                                               tmp_path: Path) -> None:
    """7,000×7,000 RGBA (196 MB once decoded, ~0.3 MB posted): over the pixel limit, never decoded."""
    server.files["bomb.png"] = await asyncio.to_thread(lambda: big_png(tmp_path / "bomb.png", 7000).read_bytes())
    with pytest.raises(UserFacingError, match="too large"):
        await asking.ask_picture(indexed_lectures.volcano, f"{server.base}/bomb.png", {})
    assert not _left(asking)


async def test_an_endless_picture_is_cut_at_the_limit(asking: Service, indexed_lectures, server) -> None:
    server.streams["endless.png"] = Stream("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 65528)
    with pytest.raises(BadSource, match="larger than my limit"):
        await asking.ask_picture(indexed_lectures.volcano, f"{server.base}/endless.png", {})
    # read no further than the limit, and what the sockets' buffers held
    assert server.sent["endless.png"] < pictures.MAX_BYTES + PAGE_ALLOWANCE + 8 * 2**20
    assert not _left(asking)


async def test_a_picture_that_redirects_to_a_private_address_is_not_fetched(asking: Service, indexed_lectures,
                                                                            server) -> None:
    server.redirects["shot.png"] = "http://169.254.169.254/latest/meta-data/shot.png"
    with pytest.raises(BadSource):
        await asking.ask_picture(indexed_lectures.volcano, f"{server.base}/shot.png", {"Authorization": "Bearer t"})
    assert [n for n, _ in server.requests] == ["shot.png"]


async def test_a_video_named_png_is_not_read_as_a_picture(asking: Service, indexed_lectures, server, lecture) -> None:
    server.files["slide.png"] = (await asyncio.to_thread(lecture[0].read_bytes))[: 2**20]
    with pytest.raises(UserFacingError, match="JPEG, PNG or WebP"):
        await asking.ask_picture(indexed_lectures.volcano, f"{server.base}/slide.png", {})


def test_a_text_chunk_bomb_is_refused_not_inflated() -> None:
    """A PNG of 8×8 pixels with a compressed text chunk that inflates to 200 MB."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
    text = _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * (200 * 2**20), 9))
    idat = _chunk(b"IDAT", zlib.compress(b"\0" * (9 * 8)))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + text + idat + _chunk(b"IEND", b"")
    try:
        im = pictures.load(data)
    except UserFacingError:
        return
    assert im.size == (8, 8) and len(im.info.get("Comment", "")) <= 2**20  # PIL's own text limit held


def test_a_jpeg_that_claims_a_huge_size_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width in the frame header
    with pytest.raises(UserFacingError, match="too large"):
        pictures.load(bytes(data))

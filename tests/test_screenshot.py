"""A screenshot finds its moment (core/answer/screenshot.py, core/answer/shown.py): a posted
picture of a slide is answered with the slide's timestamp and the stored frame; a picture that is
not in the channel's videos is answered with a sentence saying so; the picture is read as hostile
input (core/answer/picture.py); every frame's perceptual hash is stored, and the frames stored
before the hash existed are hashed by the migration (core/store/phash.py)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFilter

from core.answer import picture as pictures
from core.answer.shown import NOT_SHOWN
from core.config import Settings
from core.errors import Refused
from core.models import Scope
from core.store.catalog import Catalog, open_catalog
from core.store.phash import distances, fill_phash, phash_bytes
from tests.backends import BACKENDS, catalog, catalog_backend, database_url  # noqa: F401 - fixtures


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


async def _stored_frame(indexed, slide: int) -> tuple[float, Image.Image]:
    """The stored frame in the middle of the volcano lecture's `slide`."""
    start, end = indexed.lecture.times[slide]
    store = indexed.service.store(indexed.volcano)
    frames = [f for f in await store.frames(indexed.volcano_video.id) if start - 0.1 <= f.time < end - 0.1]
    f = frames[len(frames) // 2]
    data = await store.frame_jpeg(indexed.volcano_video.id, f.time)
    assert data is not None
    return f.time, Image.open(io.BytesIO(data)).convert("RGB")


def _phone_photo(im: Image.Image) -> Image.Image:
    """A 90 % crop, half size, a blur and JPEG quality 40: what a phone photo of a slide becomes."""
    w, h = im.size
    cut = im.crop((int(w * 0.05), int(h * 0.05), int(w * 0.95), int(h * 0.95)))
    small = cut.resize((cut.width // 2, cut.height // 2)).filter(ImageFilter.GaussianBlur(1))
    return Image.open(io.BytesIO(_jpeg(small, 40)))


async def test_a_phone_photo_of_a_slide_finds_its_moment_and_frame(indexed_lectures) -> None:
    svc = indexed_lectures.service
    slide = 1
    start, end = indexed_lectures.lecture.times[slide]
    _, frame = await _stored_frame(indexed_lectures, slide)
    answer = await svc.ask_image(indexed_lectures.volcano, _jpeg(_phone_photo(frame), 40))
    assert answer.text != NOT_SHOWN, answer.text
    first = answer.citations[0]
    assert first.video_id == indexed_lectures.volcano_video.id
    assert first.start <= end + 0.5 and start - 0.5 <= first.end, (first, start, end)
    assert answer.frame is not None and start - 0.5 <= answer.frame.time <= end + 0.5
    assert Image.open(answer.frame.path).size == frame.size  # the stored frame, not the posted picture
    assert not any((indexed_lectures.settings.data_dir / "asked").iterdir())  # the picture's copy is gone


async def test_a_slide_of_another_channel_is_not_found(indexed_lectures) -> None:
    """The volcano slide, asked in the kitchen channel (the bread lecture only)."""
    _, frame = await _stored_frame(indexed_lectures, 1)
    answer = await indexed_lectures.service.ask_image(indexed_lectures.bread, _jpeg(frame))
    assert answer.text == NOT_SHOWN and not answer.citations and answer.frame is None


async def test_an_unrelated_photo_is_not_found(indexed_lectures) -> None:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:360, 0:640]
    photo = np.stack([(x / 640 * 200 + rng.normal(0, 25, x.shape)), (y / 360 * 180 + 40),
                      (128 + 60 * np.sin(x / 40) * np.cos(y / 30))], axis=-1).clip(0, 255).astype(np.uint8)
    answer = await indexed_lectures.service.ask_image(indexed_lectures.volcano, _jpeg(Image.fromarray(photo)))
    assert answer.text == NOT_SHOWN


async def test_every_stored_frame_has_its_hash(indexed_lectures) -> None:
    store = indexed_lectures.service.store(indexed_lectures.volcano)
    hashes = await store.frame_hashes()
    frames = await store.frames(indexed_lectures.volcano_video.id)
    assert len(hashes) == len(frames) > 0
    t, _, h = hashes[0][1], None, hashes[0][2]
    data = await store.frame_jpeg(indexed_lectures.volcano_video.id, t)
    assert data is not None and phash_bytes(data) == h


def test_a_hash_moves_little_under_jpeg_and_half_size_and_much_for_another_picture() -> None:
    rng = np.random.default_rng(1)
    a = Image.fromarray((rng.random((90, 160)) * 255).astype(np.uint8)).resize((640, 360))
    b = Image.fromarray((rng.random((90, 160)) * 255).astype(np.uint8)).resize((640, 360))
    ha = phash_bytes(_jpeg(a))
    near = phash_bytes(_jpeg(a.resize((320, 180)), 40))
    far = phash_bytes(_jpeg(b))
    d = distances(ha, np.array([near, far], dtype=np.int64))
    assert d[0] <= 6 and d[1] >= 20, d


@pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)
async def test_frames_stored_before_the_hash_are_hashed_by_the_migration(catalog: Catalog) -> None:  # noqa: F811
    scope = Scope("console", "local", "old")
    jpegs = [_jpeg(Image.new("RGB", (64, 36), c)) for c in ("white", "black")]
    jpegs[1] = _jpeg(Image.fromarray((np.arange(64 * 36).reshape(36, 64) % 251).astype(np.uint8)))
    await catalog.put_frames(scope, "v1", [(0.0, "/x/0.jpg", "", jpegs[0]), (5.0, "/x/1.jpg", "", jpegs[1]),
                                           (10.0, "/x/2.jpg", "", None)])
    assert await catalog.frame_hashes(scope) == []  # stored as before the column was filled

    async with catalog._tx() as tx:
        await fill_phash(tx, batch=1)
    got = {t: h for _, t, h in await catalog.frame_hashes(scope)}
    assert got == {0.0: phash_bytes(jpegs[0]), 5.0: phash_bytes(jpegs[1])}


@pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)
async def test_a_catalog_from_before_the_hash_is_upgraded_in_place_with_its_frames_hashed(
        catalog: Catalog, database_url: str, tmp_path) -> None:  # noqa: F811
    """A catalog at the schema before the hash (its frames stored without one) reopened: the
    migration adds the column and hashes the stored frames; the schema version is recorded."""
    scope = Scope("console", "local", "older")
    jpeg = _jpeg(Image.fromarray((np.arange(64 * 36).reshape(36, 64) * 7 % 251).astype(np.uint8)))
    await catalog.put_frames(scope, "v1", [(2.5, "/x/a.jpg", "slide", jpeg)])
    version = await catalog.schema_version()
    hashed = next(v for v, steps in catalog.migrations if fill_phash in steps)  # not always the last
    async with catalog._tx() as tx:  # back to the schema before the hash
        await tx.run("ALTER TABLE frames DROP COLUMN phash")
        await tx.run("DELETE FROM schema_version WHERE version >= ?", (hashed,))
    await catalog.close()
    again = await open_catalog(Settings(data_dir=tmp_path / "data", database_url=database_url))
    try:
        assert await again.schema_version() == version
        assert await again.frame_hashes(scope) == [("v1", 2.5, phash_bytes(jpeg))]
    finally:
        await again.close()
    catalog.close = _nothing  # type: ignore[method-assign]  # closed above; the fixture closes it again


async def _nothing() -> None:
    return None


# ---- the posted picture is hostile input ---------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` and whose data is a few bytes: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def test_a_picture_too_large_in_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(Refused, match="too large"):
        pictures.load(_png_header(60_000, 60_000))
    with pytest.raises(Refused, match="too large"):
        pictures.load(_png_header(9_000, 9_000))  # under the side limit, over the pixel limit


def test_a_picture_too_large_in_bytes_is_refused() -> None:
    with pytest.raises(Refused, match="too large"):
        pictures.load(b"\xff\xd8\xff" + b"\0" * pictures.MAX_BYTES)


@pytest.mark.parametrize("data", [b"GIF89a" + b"\0" * 100, b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                  b"%PDF-1.4", b"", b"\x00\x00\x00\x18ftypmp42"])
def test_only_jpeg_png_and_webp_are_read(data: bytes) -> None:
    with pytest.raises(Refused, match="JPEG, PNG or WebP"):
        pictures.load(data)


def test_a_png_named_jpeg_by_its_bytes_is_refused() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "PNG")
    with pytest.raises(Refused):
        pictures.load(b"\xff\xd8\xff" + buf.getvalue()[3:])


def test_a_truncated_picture_is_unreadable() -> None:
    data = _jpeg(Image.new("RGB", (200, 100), "red"))
    with pytest.raises(Refused, match="couldn't read"):
        pictures.load(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_large_picture_is_read_at_working_width(fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1920, 1080), "white").save(buf, fmt)
    im = pictures.load(buf.getvalue())
    assert im.mode == "RGB" and im.width == pictures.WORK_WIDTH and im.height == 360


def _slide(title: str, lines: list[str]) -> Image.Image:
    from PIL import ImageDraw, ImageFont

    im = Image.new("RGB", (640, 360), (245, 240, 230))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 640, 70), fill=(40, 60, 110))
    big = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 30)
    small = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 22)
    d.text((30, 18), title, font=big, fill="white")
    for i, line in enumerate(lines):
        d.text((40, 110 + 45 * i), line, font=small, fill="black")
    return im


def test_a_slide_of_the_same_template_with_other_words_is_not_the_frame_and_the_same_words_are() -> None:
    """Two slides of one template look alike on the grid; the words on them decide."""
    from core.answer.screenshot import judge, query_of
    from core.store.phash import phash_image

    frame_text = "Calvin cycle\nenzyme: RuBisCO\nfixes 3 CO2 per G3P"
    frame = _slide("Calvin cycle", ["enzyme: RuBisCO", "fixes 3 CO2 per G3P"])
    other_text = "The explosion\noxygen tank 2 exploded\n56 hours after launch"
    other = _slide("The explosion", ["oxygen tank 2 exploded", "56 hours after launch"])
    row = [("v1", 10.0, frame_text, _jpeg(frame))]
    (foreign,) = judge(query_of(other, phash_image(other), other_text), row)
    (same,) = judge(query_of(frame, phash_image(frame), frame_text), row)
    (silent,) = judge(query_of(other, phash_image(other), ""), row)  # no words read on the picture
    assert foreign.look > 0.5 and foreign.words is not None and foreign.words < 0.3 and not foreign.shown
    assert same.shown and same.look > 0.99 and same.words == 1.0
    assert silent.words is None and silent.shown == (silent.look >= 0.95)

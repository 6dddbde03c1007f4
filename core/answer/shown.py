"""The answer to a posted picture: which moments of the channel's videos it shows
(core/answer/screenshot.py finds them), with their timestamps and the stored frame attached —
nothing of the posted picture itself is kept or sent back. A picture that matches no frame gets
`NOT_SHOWN` rather than a random moment.

The picture is read as hostile input (core/answer/picture.py) on a thread; the only file written
is the normalised JPEG the OCR engine reads, inside DATA_DIR, removed once read."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from core.answer import picture as pictures
from core.answer.compose import citations_for, ready_videos
from core.answer.retrieve import Moment
from core.answer.screenshot import Match, candidates, judge, query_of
from core.config import Settings
from core.models import Answer, FrameRef, Hit, Kind, Video, fmt_time
from core.store.phash import phash_image
from core.store.scoped import ScopedStore
from core.text.safety import neutralize

if TYPE_CHECKING:
    from PIL import Image

    from core.engines.registry import Models

NOT_SHOWN = "I couldn't find that picture in this channel's videos."
KEEP = 3
CLIP_CANDIDATES = 8


def _prepare(data: bytes, folder: Path) -> tuple[Image.Image, int, Path]:
    """Decode the picture (checked first), hash it and write the JPEG the OCR engine reads."""
    im = pictures.load(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.jpg"
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    path.write_bytes(buf.getvalue())
    return im, phash_image(im), path


async def answer_picture(store: ScopedStore, data: bytes, models: Models, settings: Settings,
                         thread: str | None = None) -> Answer:
    """The moments of `store`'s ready videos that the picture in `data` shows, its text safe to
    post (no mention, no link); recorded as a turn of `thread` when given."""
    answer = await _answer(store, data, models, settings.data_dir / "asked", settings.ocr, settings.frame_interval)
    answer = Answer(neutralize(answer.text), answer.citations, answer.frame)
    if thread:
        await store.add_turn(thread, "(a picture)", answer.text)
    return answer


async def _answer(store: ScopedStore, data: bytes, models: Models, folder: Path, read_text: bool,
                  frame_interval: float) -> Answer:
    """`answer_picture`'s search. `folder` (inside DATA_DIR) holds the picture's normalised copy
    while it is read."""
    ready = await ready_videos(store)
    im, phash, path = await asyncio.to_thread(_prepare, data, folder)
    try:
        text = await models.call_query(models.ocr.read, path) if read_text else ""
        clip: list[tuple[str, float]] = []
        image = await models.call_query(lambda: models.image)
        if image is not None and store.vectors.frames:
            vec = (await models.call_query(image.embed_images, [str(path)]))[0]
            clip = [(h.video_id, h.start) for h in await store.search_frames(vec, CLIP_CANDIDATES)]
    finally:
        await asyncio.to_thread(_unlink, path)
    q = await asyncio.to_thread(query_of, im, phash, text)
    found = [c for c in await candidates(store, q, clip) if c[0] in ready]
    rows = []
    shown: dict[str, dict[float, tuple[str, str]]] = {}
    for vid, t in found:
        if vid not in shown:
            shown[vid] = {f.time: (f.path, f.text) for f in await store.frames(vid)}
        jpeg = await store.frame_jpeg(vid, t)
        if jpeg is not None and t in shown[vid]:
            rows.append((vid, t, shown[vid][t][1], jpeg))
    matches = [m for m in await asyncio.to_thread(judge, q, rows) if m.shown]
    if not matches:
        return Answer(NOT_SHOWN)
    moments = await _moments(store, matches, frame_interval)
    cites = citations_for(moments, ready)
    best = matches[0]
    local = await store.frame_file(best.video_id, best.time, shown[best.video_id][best.time][0])
    frame = FrameRef(best.video_id, best.time, str(local)) if local is not None else None
    return Answer(_text(cites, ready), tuple(cites), frame)


async def _moments(store: ScopedStore, matches: list[Match], interval: float) -> list[Moment]:
    """Each match as the on-screen text span it falls in (the slide), else the frame's interval;
    one moment per span, the best few."""
    out: list[Moment] = []
    for m in matches:
        spans = [s for s in await store.segments(m.video_id, m.time, m.time + 0.01)
                 if s.kind == Kind.OCR and s.start <= m.time + 0.01]
        start, end = (spans[0].start, spans[0].end) if spans else (m.time, m.time + interval)
        if any(o.hit.video_id == m.video_id and o.hit.start < end and start < o.hit.end for o in out):
            continue
        text = spans[0].text if spans else ""
        out.append(Moment(Hit(m.video_id, start, end, text, Kind.OCR, m.score), ("picture", f"look:{m.look:.2f}")))
        if len(out) == KEEP:
            break
    return out


def _text(cites: list, videos: dict[str, Video]) -> str:
    first, rest = cites[0], cites[1:]
    lines = [f"That picture is from “{first.title}” at [{fmt_time(first.start)}]."]
    if rest:
        lines.append("It also looks like " + "; ".join(f"“{c.title}” at [{fmt_time(c.start)}]" for c in rest) + ".")
    return "\n".join(lines)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

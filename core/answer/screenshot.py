"""A screenshot finds its moment: the frames of the channel that a posted picture shows.

Three sources of candidate frames, as the text search has its dense and lexical ones: the
picture's perceptual hash against every stored frame's (core/store/phash.py; half size, JPEG
quality 40 and blur keep it within a few bits), the text read on it (OCR) against the stored
on-screen text (the full-text index), and CLIP's image vector against the frame collection when
CLIP is on. Each candidate is then compared with the picture itself (`look`): the picture against
the frame and against crops of it (90 % to 75 % of its side, at several places), grey, blurred and
normalised, so that a cropped, warped or blurred phone photo of a slide still finds it — and the
words both show (`text_match`). A picture that matches no frame well enough is said to match
nothing, rather than named a random moment: the thresholds are set on `vidrag eval
--screenshots`'s tune split and reported on its held-out one.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from core.models import Kind
from core.store.phash import distances
from core.store.scoped import ScopedStore

GRID = (48, 27)  # where the picture and a frame are compared
WORK = (256, 144)  # a frame's size before its crops are cut
SCALES = (1.0, 0.9, 0.8)  # a crop's side, as a share of the frame's
PLACES = 3  # offsets per axis for a crop smaller than the frame
HASH_CANDIDATES = 24
TEXT_CANDIDATES = 8  # on-screen text spans, each giving its frames
FRAMES_PER_SPAN = 3
# The decision (tuned on the eval's tune split): a picture shows a frame when they look alike this
# much on their own, or look alike LOOK_WITH_TEXT and share TEXT_AGREES of their words, or the
# picture bears SAME_WORDS words or more, nearly all the frame's (TEXT_SAME), and still looks a
# little like it (LOOK_FLOOR). A phone photo taken at an angle (a perspective warp of 5-7 % of
# the side) looks like its slide at only 0.3-0.45 on the grid, while its words are read whole
# (Dice 0.9-1.0 on the photosynthesis lecture of the tune split); a slide of another lecture
# shares few words.
# Unless their words disagree (Dice under TEXT_DISAGREES, both sides read): slides of one template
# (the same background, title bar and layout) look alike at 0.94-0.96 however different their
# text (slides of eval/naming's lectures against eval/lectures.json's, in the tune split).
LOOK_ALONE = 0.95
TEXT_DISAGREES = 0.3
LOOK_WITH_TEXT = 0.50
TEXT_AGREES = 0.6
TEXT_SAME = 0.8
SAME_WORDS = 5
LOOK_FLOOR = 0.2
MIN_WORDS = 3  # fewer words read on the picture say nothing about it
TEXT_WEIGHT = 0.3

_WORD = re.compile(r"[^\W_]{2,}")


@dataclass(frozen=True)
class Query:
    """What is compared of a posted picture: its hash, its grid, its shape and the words on it."""

    phash: int
    grid: np.ndarray
    aspect: float
    text: str


@dataclass(frozen=True)
class Match:
    video_id: str
    time: float
    look: float
    words: float | None  # None: too few words on the picture or none on the frame
    score: float
    asked_words: int = 0  # words read on the picture

    @property
    def shown(self) -> bool:
        if self.words is None:
            return self.look >= LOOK_ALONE
        if self.look >= LOOK_ALONE and self.words >= TEXT_DISAGREES:
            return True
        if self.words >= TEXT_AGREES and self.look >= LOOK_WITH_TEXT:
            return True
        return self.words >= TEXT_SAME and self.asked_words >= SAME_WORDS and self.look >= LOOK_FLOOR


def _normal(a: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    n = float(np.linalg.norm(a))
    return a / n if n > 1e-6 else a


def _grey(im: Image.Image, width: int) -> Image.Image:
    g = im.convert("L")
    return g.resize((width, max(1, round(g.height * width / g.width))), Image.Resampling.BOX).filter(
        ImageFilter.GaussianBlur(1))


def query_of(picture: Image.Image, phash: int, text: str) -> Query:
    grid = np.asarray(_grey(picture, WORK[0]).resize(GRID, Image.Resampling.BILINEAR), np.float32)
    return Query(phash, _normal(grid), picture.width / picture.height, text)


def look(q: Query, frame: Image.Image) -> float:
    """How alike the picture and the frame look (cosine of their normalised grey grids, 1 at best),
    at the best of the frame itself and its crops."""
    f = frame.convert("L").resize(WORK, Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(1))
    fw, fh = f.size
    best = -1.0
    for s in SCALES:
        wf, hf = s, min(1.0, s * (fw / fh) / q.aspect)
        for ox in np.linspace(0.0, 1.0 - wf, PLACES) if wf < 1 else (0.0,):
            for oy in np.linspace(0.0, 1.0 - hf, PLACES) if hf < 1 else (0.0,):
                box = (ox * fw, oy * fh, (ox + wf) * fw, (oy + hf) * fh)
                cut = np.asarray(f.resize(GRID, Image.Resampling.BILINEAR, box=box), np.float32)
                best = max(best, float((_normal(cut) * q.grid).sum()))
    return best


def words_of(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def text_match(asked: str, shown: str) -> float | None:
    """The share of words the picture's text and the frame's have in common (Dice), or None when
    the picture has fewer than MIN_WORDS words or the frame none."""
    a, b = words_of(asked), words_of(shown)
    if len(a) < MIN_WORDS or not b:
        return None
    return 2 * len(a & b) / (len(a) + len(b))


async def candidates(store: ScopedStore, q: Query, clip: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Frames (video id, time) worth comparing with the picture, from the three sources."""
    found: dict[tuple[str, float], None] = {}
    stored = await store.frame_hashes()
    if stored:
        d = distances(q.phash, np.array([h for _, _, h in stored], dtype=np.int64))
        for i in np.argsort(d, kind="stable")[:HASH_CANDIDATES]:
            found[(stored[i][0], stored[i][1])] = None
    if len(words_of(q.text)) >= MIN_WORDS:
        spans = [h for h in await store.lexical(q.text, TEXT_CANDIDATES) if h.kind == Kind.OCR]
        for h in spans:
            frames = [f for f in await store.frames(h.video_id) if h.start - 0.01 <= f.time < h.end][:FRAMES_PER_SPAN]
            for f in frames:
                found[(h.video_id, f.time)] = None
    for key in clip:
        found[key] = None
    return list(found)


def judge(q: Query, frames: list[tuple[str, float, str, bytes]]) -> list[Match]:
    """Each candidate frame (video id, time, text read on it, JPEG) scored against the picture,
    best first. CPU work: call it on a thread."""
    out = []
    asked = len(words_of(q.text))
    for vid, t, shown, jpeg in frames:
        try:
            with Image.open(io.BytesIO(jpeg)) as im:
                alike = look(q, im)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        words = text_match(q.text, shown)
        out.append(Match(vid, t, alike, words, alike + TEXT_WEIGHT * (words or 0.0), asked))
    return sorted(out, key=lambda m: -m.score)

"""What a video is about: its chapters (`core.answer.chapters`) and a summary of 3-6 sentences,
each sentence citing a moment of the video, made from what the catalog holds of it.

- Without an LLM the summary is extractive: the most central chapters (their stored vectors
  closest to the whole video's, each one unlike those already taken), one sentence each, in time
  order — the chapter's heading and its most central sentence. On-screen text is preferred: a
  spoken sentence is taken when it agrees with the slide shown over it (tiny speech models
  mishear; the slide is read exactly), else the slide's own lines are.
- With an LLM the summary is written from the chapters' excerpts (`core.answer.written`), every
  sentence citing a chapter that exists; fewer than 3 such sentences, a failed call or one past
  LLM_TIMEOUT_S, and the extractive summary is used.

`make` returns what the catalog stores (`StoredSummary`); `present` turns that into a `Summary`
with links, for a video as it is now (its title and link may be known only after indexing).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import numpy as np

from core.answer import chapters as chaptering
from core.answer.chapters import inside as _inside
from core.answer.compose import ChatModel, citations_for, indexed_so_far
from core.answer.naming import name_tokens
from core.answer.retrieve import Moment
from core.answer.written import MAX_SENTENCES, MIN_SENTENCES, cited_sentences, written

__all__ = ["MAX_SENTENCES", "MIN_SENTENCES", "cited_sentences", "extractive", "make", "pick", "present", "written"]
from core.errors import NotFound, UserFacingError
from core.models import (
    Chapter,
    Citation,
    Hit,
    Kind,
    Segment,
    StoredSummary,
    Summary,
    Turn,
    Video,
    VideoStatus,
    fmt_time,
)
from core.store.scoped import ScopedStore
from core.text.safety import neutralize, one_line

log = logging.getLogger(__name__)

JOIN_GAP, JOIN_WORDS = 0.8, 40  # segments joined into one sentence: at most this far apart, this long
OVERVIEW_TITLES = 12  # chapter titles named in the last sentence of a summary at most
AGREE = 0.3  # a spoken sentence this close (cosine) to the slide over it is taken as heard right
LLM_TIMEOUT_S = 180.0  # all of a summary's LLM calls; past it, the extractive summary

# ---- extractive ---------------------------------------------------------------------------------
def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else None


def _centre(vectors: Sequence[np.ndarray | None]) -> np.ndarray | None:
    got = [v for v in vectors if v is not None]
    return _unit(np.mean(np.stack(got), axis=0)) if got else None


def _cos(a: np.ndarray | None, b: np.ndarray | None) -> float:
    return float(_unit(a) @ _unit(b)) if a is not None and b is not None else 0.0  # type: ignore[operator]


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    return text if not text or text[-1] in ".!?…" else text + "."


_ENDS = re.compile(r"(?<=[.!?…])\s+(?=[\"“(]?[^\W\d_])")


def _pieces(s: Segment) -> list[Segment]:
    """A segment's sentences ("Welcome. Today we talk about volcanoes."), each given its share of
    the segment's time by its length."""
    parts = [p for p in _ENDS.split(s.text.strip()) if p]
    if len(parts) < 2:
        return [s]
    total, at, out = sum(len(p) for p in parts), s.start, []
    for p in parts:
        end = at + (s.end - s.start) * len(p) / total
        out.append(Segment(round(at, 2), round(end, 2), p, s.kind))
        at = end
    return out


def sentences(speech: Sequence[tuple[Segment, np.ndarray | None]]) -> list[tuple[Segment, np.ndarray | None]]:
    """What was said, as sentences: whisper cuts where the voice pauses, not where a sentence ends
    ("...they build sugar and" / "release oxygen as a by-product.", or "Welcome. Today we..."). A
    segment is split at its full stops, and joined to the next when it ends without one, the next
    follows within a breath, and the sentence stays short. A sentence's vector is the mean of its
    segments' (a segment's own for a part of it: the catalog keeps one per segment)."""
    out: list[tuple[Segment, np.ndarray | None]] = []
    run: list[tuple[Segment, np.ndarray | None]] = []

    def close() -> None:
        if run:
            out.append((Segment(run[0][0].start, run[-1][0].end, " ".join(x.text.strip() for x, _ in run),
                                run[0][0].kind), _centre([x for _, x in run])))
            run.clear()

    for s, v in sorted(((p, v) for seg, v in speech for p in _pieces(seg)), key=lambda x: x[0].start):
        if run and (run[-1][0].text.rstrip()[-1:] in ".!?…" or s.start - run[-1][0].end > JOIN_GAP
                    or sum(len(x.text.split()) for x, _ in run) + len(s.text.split()) > JOIN_WORDS):
            close()
        run.append((s, v))
    close()
    return out


def point(stored: chaptering.Stored, said_all: Sequence[tuple[Segment, np.ndarray | None]],
          chapter: Chapter) -> tuple[str, float, float, np.ndarray | None]:
    """One chapter's sentence, the moment it cites (start, end) and its vector: the heading and
    the spoken sentence nearest the chapter's centre when it agrees with the slide, else the
    slide's own lines."""
    said = [(s, v) for s, v in said_all if _inside(s, chapter)]
    shown = [(s, v) for s, v in stored.screen if s.start < chapter.end and s.end > chapter.start]
    slide = max(shown, key=lambda x: min(chapter.end, x[0].end) - max(chapter.start, x[0].start)) if shown else None
    centre = _centre([v for _, v in said] + [v for _, v in shown])
    best: tuple[float, Segment, np.ndarray | None] | None = None
    for s, v in said:
        words = len(s.text.split())
        score = _cos(v, centre) + (_cos(v, slide[1]) if slide else 0.0) - (0.3 if words < 5 or words > 45 else 0.0)
        if best is None or score > best[0]:
            best = (score, s, v)
    lines = [ln.strip() for ln in slide[0].text.splitlines()[1:] if ln.strip()] if slide else []
    use_slide = slide is not None and lines and (best is None or _cos(best[2], slide[1]) < AGREE)
    if use_slide and slide is not None:
        body, (start, end), vec = "; ".join(lines), (slide[0].start, slide[0].end), slide[1]
    elif best is not None:
        body, (start, end), vec = best[1].text, (best[1].start, best[1].end), best[2]
    else:
        body, start, end, vec = "", chapter.start, chapter.end, centre
    body = _sentence(body)
    head = chapter.title if chapter.title and not chapter.title.startswith("Part ") else ""
    if head and body.lower().startswith(head.lower()):
        head = ""
    colon = " " if head[-1:] in "?!.…" else ": "
    text = f"{head}{colon}{body}" if head and body else (head + "." if head and head[-1] not in "?!.…" else head or body)
    return text, start, end, vec


def mmr(vectors: Sequence[np.ndarray | None], whole: np.ndarray | None, k: int) -> list[int]:
    """The first `k` of `vectors` by maximal marginal relevance: each the closest to `whole` once
    half its closest likeness to those ranked before it is taken off (central, and not the same
    point again)."""
    if not vectors:
        return []
    dim = next((len(v) for v in vectors if v is not None), 1)
    m = np.stack([u if (u := _unit(v)) is not None else np.zeros(dim, np.float32) for v in vectors])
    central = m @ whole if whole is not None else np.zeros(len(m))
    like = np.zeros(len(m))
    ranked: list[int] = []
    for _ in range(min(k, len(m))):
        gain = central - 0.5 * like
        gain[ranked] = -np.inf
        i = int(np.argmax(gain))
        ranked.append(i)
        like = np.maximum(like, m @ m[i])
    return ranked


def extractive(stored: chaptering.Stored, chapters: Sequence[Chapter]) -> tuple[str, list[tuple[float, float]]]:
    """3-6 sentences in time order, each ending with its [m:ss]; the moments they cite. One per
    chapter when there are six or fewer; else five, from the most central chapters (each unlike
    those taken before it), and a last one naming the next most central (up to OVERVIEW_TITLES)."""
    said = sentences(stored.speech)
    points = [(c, *point(stored, said, c)) for c in chapters]
    points = [p for p in points if p[1]]
    if not points:
        return "", []
    n = len(points) if len(points) <= MAX_SENTENCES else MAX_SENTENCES - 1
    ranked = mmr([p[4] for p in points], _centre([v for _, v in stored.speech + stored.screen]),
                 n + OVERVIEW_TITLES)
    out = [(t, s, e) for _, t, s, e, _ in (points[i] for i in sorted(ranked[:n]))]
    rest = [points[i][0] for i in sorted(ranked[n:n + OVERVIEW_TITLES]) if not points[i][0].title.startswith("Part ")]
    if rest:  # the next most central chapters, in time order
        more = len(points) - n - OVERVIEW_TITLES
        named = "; ".join(c.title for c in rest) + (f"; and {more} more" if more > 0 else "")
        out.append((f"Also covered: {named}.", rest[0].start, rest[0].end))
    text = " ".join(f"{t[:-1] if t[-1] in '.!?' else t} [{fmt_time(s)}]{t[-1] if t[-1] in '.!?' else '.'}"
                    for t, s, _ in out)
    return text, [(s, e) for _, s, e in out]


# ---- the whole ----------------------------------------------------------------------------------
def _citations(video: Video, moments: Sequence[tuple[float, float]]) -> list[Citation]:
    """Citations of `video`'s moments, made as an answer's are (title bounded, link at the second)."""
    hits = [Moment(Hit(video.id, s, e, "", Kind.SPEECH, 0.0), ()) for s, e in moments]
    return citations_for(hits, {video.id: video})


async def make(store: ScopedStore, video: Video, chat: ChatModel | None = None) -> StoredSummary:
    """Chapters and summary of `video` from what the catalog holds of it, to be stored."""
    stored = await chaptering.load(store, video.id, video.duration)
    chapters, (text, moments) = await asyncio.to_thread(_extract, stored)
    method = "extractive"
    if chat is not None and chapters:
        cites = _citations(video, [(c.start, c.end) for c in chapters])
        try:
            got = await asyncio.wait_for(written(chat, stored, chapters, cites), LLM_TIMEOUT_S)
        except Exception:
            log.exception("the LLM call for the summary of %s failed; using the extractive one", video.id)
            got = None
        if got is not None:
            text, moments, method = got[0], [(c.start, c.end) for c in got[1]], chat.model_id
    return StoredSummary(neutralize(text), tuple(chapters), tuple(moments), method, stored.duration)


def _extract(stored: chaptering.Stored) -> tuple[list[Chapter], tuple[str, list[tuple[float, float]]]]:
    found = [Chapter(c.start, c.end, one_line(c.title, chaptering.TITLE_CHARS + 1)) for c in chaptering.chapters(stored)]
    return found, extractive(stored, found)


def present(video: Video, stored: StoredSummary) -> Summary:
    """The stored summary of `video` with links: each chapter opens the video at its start, each
    citation at its moment."""
    links = _citations(video, [(c.start, c.end) for c in stored.chapters])
    chapters = tuple(Chapter(c.start, c.end, c.title, link.url) for c, link in zip(stored.chapters, links, strict=True))
    return Summary(video, stored.text, chapters, tuple(_citations(video, stored.moments)), stored.method)


# ---- which video ---------------------------------------------------------------------------------
NO_VIDEOS = "No videos are indexed in this channel yet. Post a video link or upload a video first."


def pick(videos: Sequence[Video], words: str | None, turns: Sequence[Turn] = ()) -> Video:
    """The video a summary request means: the one `words` name (its id, its title, or words of its
    title: the title sharing the rarest of them), else the one a conversation's earlier `turns`
    name (the latest turn quoting a title), else the latest indexed. A `UserFacingError` says why
    there is none."""
    if words:
        return _named(videos, words)
    ready = [v for v in videos if v.status == VideoStatus.READY]
    for turn in reversed(turns):
        said = turn.answer.lower()
        named = [v for v in ready if v.id in said or (len(v.title) >= 3 and v.title.lower() in said)]
        if named:
            return max(named, key=lambda v: len(v.title))
    if ready:
        return ready[-1]
    if videos:
        raise UserFacingError("This channel's videos are still being indexed; ask again when one is ready.")
    raise UserFacingError(NO_VIDEOS)


def _named(videos: Sequence[Video], words: str) -> Video:
    key = words.strip().strip("`'\"").lower()
    for v in videos:
        if v.id == key or (len(key) >= 6 and v.id.startswith(key)) or v.title.strip().lower() == key:
            return v
    asked = set(name_tokens(words))
    df: dict[str, int] = {}
    titles = {v.id: set(name_tokens(v.title)) for v in videos}
    for toks in titles.values():
        for t in toks:
            df[t] = df.get(t, 0) + 1
    scores = {v.id: sum(1.0 / df[t] for t in asked & titles[v.id]) for v in videos}
    best = max(scores.values(), default=0.0)
    found = [v for v in videos if scores[v.id] == best] if best > 0 else []
    if len(found) != 1:
        what = "several videos" if found else "no video"
        raise NotFound(f"“{one_line(words, 80)}” names {what} in this channel; `videos` lists them with their ids.")
    return found[0]


def not_ready(video: Video) -> UserFacingError:
    """Why `video` has no summary yet."""
    title = one_line(video.title, 120)
    if video.status == VideoStatus.FAILED:
        return UserFacingError(f"“{title}” could not be indexed, so it has no summary.")
    return UserFacingError(f"“{title}” is still being indexed; its summary comes when it is ready.")


async def so_far(store: ScopedStore, video: Video) -> Summary:
    """A video still being indexed has no summary yet (it is made once, from all of it): it
    gets the chapters of its committed windows, made from what is stored as at the end, and a
    sentence saying how far it is. Nothing of it is kept."""
    stored = await chaptering.load(store, video.id, video.indexed_to)
    found = await asyncio.to_thread(chaptering.chapters, stored)
    chapters = tuple(Chapter(c.start, min(c.end, video.indexed_to), one_line(c.title, chaptering.TITLE_CHARS + 1))
                     for c in found)
    text = (f"“{one_line(video.title, 120)}” is still being indexed ({indexed_so_far(video)}); its summary "
            f"comes when it is ready. " + ("The chapters so far:" if chapters else "No chapter is known yet."))
    return present(video, StoredSummary(text, chapters, (), "so far", video.indexed_to))

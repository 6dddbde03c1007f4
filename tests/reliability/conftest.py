"""Fixtures of the reliability suite: the short lectures of tests/conftest.py (two slides, 640×360,
so that many ingests fit in the time), settings with OCR off where on-screen text is beside the
point, the catalog backend (SQLite, or PostgreSQL in modules parametrized with
`tests.backends.BACKENDS`), and helpers that read the stores directly (Milvus, the catalog, the
file tree) rather than through the service."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from core.config import Settings
from core.engines.registry import Models
from core.models import Scope
from core.service import Service
from core.store.catalog import open_catalog
from tests import backends
from tests.conftest import short_lecture  # noqa: F401 - re-exported for the modules here
from tests.fakes.media_server import FakeMediaServer

catalog_backend, database_url, catalog = backends.catalog_backend, backends.database_url, backends.catalog


@pytest.fixture
def rel_settings(settings: Settings, database_url: str) -> Settings:
    return replace(settings, ocr=False, database_url=database_url)


@pytest.fixture
async def rel_service(rel_settings: Settings, models):
    async with Service.open(rel_settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        yield svc


def console(channel: str) -> Scope:
    return Scope("console", "local", channel)


def milvus_rows(svc: Service, scope: Scope, video_id: str | None = None) -> list[dict]:
    """Every vector row of `scope` (optionally of one video), read straight from Milvus."""
    out: list[dict] = []
    flt = f'video_id == "{video_id}"' if video_id else 'video_id != ""'
    for coll in filter(None, (svc.vectors.text, svc.vectors.frames)):
        if scope.partition in set(svc.vectors.client.list_partitions(coll)):
            out += svc.vectors.client.query(coll, filter=flt, output_fields=["id", "video_id"],
                                            partition_names=[scope.partition], limit=16384)
    return out


async def catalog_rows(svc: Service, scope: Scope) -> dict[str, int]:
    """Rows of `scope` in every catalog table (videos, jobs, segments, units, frames, turns)."""
    return await svc.catalog.counts(scope)


NOTHING = dict.fromkeys(("videos", "jobs", "segments", "units", "frames", "turns"), 0)


async def vector_counts(svc: Service, scope: Scope, video_id: str | None = None) -> dict[str, int]:
    """Vectors of `scope` (or of one video) in each Milvus collection, counted by Milvus, whatever
    the layout: {"text vectors": n, "frame vectors": n}."""
    vs = svc.vectors
    expr = f'video_id == "{video_id}"' if video_id else ""
    loop = asyncio.get_running_loop()
    return {name: await loop.run_in_executor(vs.executor, vs.count, coll, scope.partition, expr) if coll else 0
            for name, coll in (("text vectors", vs.text), ("frame vectors", vs.frames))}


async def text_index_entries(svc: Service, scope: Scope, words: str, video_id: str | None = None) -> int:
    """Entries of the catalog's full-text index for any of `words`: those a search of `scope` finds
    (of `video_id`), plus, on SQLite, those left pointing at no segment. SQLite's FTS5 index is a
    table of its own, kept by triggers; a search joins it to `segments` and would hide an entry
    whose segment is gone, so the index is read bare. (PostgreSQL's tsvector is a column of the
    segment's own row: it goes with the row.)"""
    hits = [h for h in await svc.catalog.lexical(scope, words, 10_000) if video_id in (None, h.video_id)]
    if svc.catalog.backend != "sqlite":
        return len(hits)
    match = " OR ".join(f'"{w}"' for w in words.split())
    rows = await svc.catalog.rows("SELECT COUNT(*) AS n FROM segments_fts WHERE segments_fts MATCH ? "
                                  "AND rowid NOT IN (SELECT id FROM segments)", (match,))
    return len(hits) + int(rows[0]["n"])


async def stored(svc: Service, scope: Scope, words: str, video_id: str | None = None) -> dict[str, int]:
    """Everything vidrag keeps of `scope` (or of one video), counted where it is kept: the rows of
    every catalog table, the full-text index entries for `words`, the text and frame vectors in
    Milvus."""
    return {**await svc.catalog.counts(scope, video_id), "text index": await text_index_entries(svc, scope, words, video_id),
            **await vector_counts(svc, scope, video_id)}


@pytest.fixture
async def server():
    """The fake media server on 127.0.0.1, empty: a test puts the files it serves in `.files`."""
    s = FakeMediaServer({})
    await s.start()
    yield s
    await s.stop()


class SlowTranscriber:
    """The session's tiny.en, after `seconds` of thinking: an ingest that is still transcribing
    when the test takes a server away. `started` is set when it begins."""

    def __init__(self, inner: object, seconds: float, started: threading.Event | None = None) -> None:
        self.inner = inner
        self.seconds = seconds
        self.model_id = getattr(inner, "model_id", "slow")
        self.started = started or threading.Event()

    def detect(self, wav, title=""):  # noqa: ANN001, ANN201
        return self.inner.detect(wav, title)  # type: ignore[attr-defined]

    def speaking(self, language: str) -> SlowTranscriber:
        return SlowTranscriber(self.inner.speaking(language), self.seconds, self.started)  # type: ignore[attr-defined]

    def transcribe(self, wav):  # noqa: ANN001, ANN201
        self.started.set()
        time.sleep(self.seconds)
        return self.inner.transcribe(wav)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def two_workers(settings: Settings, models: Models,
                      slow_s: float = 0.0) -> AsyncIterator[tuple[Service, Service, SlowTranscriber]]:
    """Two services on one catalog and one Milvus, as two hosts' workers would be (neither started):
    `a`, whose transcriber thinks `slow_s` seconds first (the SlowTranscriber, also yielded), and
    `b` beside it on the session's plain models."""
    slow = SlowTranscriber(models.transcriber, seconds=slow_s)
    a_models = Models(settings, text=models.text, image=models.image, transcriber=slow) if slow_s else models
    async with Service.open(settings, models=a_models, chat=None) as a:
        b = Service(settings, await open_catalog(settings), a.vectors, models, None)
        try:
            yield a, b, slow
        finally:
            await b.stop_workers()
            await b.catalog.close()

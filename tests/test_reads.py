"""What one question reads from the catalog (core/answer/reads.py, core/answer/cover.py), on both
backends: the candidates' units in one statement, the same rows as one bounded read each; a ready
video's cover read once and kept until the video is forgotten or filed anew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.answer.cover import cover_spans
from core.models import Kind, Scope, Segment
from core.store.catalog import Catalog
from core.store.scoped import ScopedStore, VectorStore
from tests.backends import BACKENDS, catalog, catalog_backend, database_url  # noqa: F401 - fixtures

both = pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)

SCOPE = Scope("console", "ws", "reads")
TITLE = "Volcanoes of Iceland"


def _units(video: str) -> list[Segment]:
    """A cover slide, two slides of facts, and speech over them."""
    return [Segment(0.0, 5.0, f"{TITLE}\nA lecture ({video})", Kind.OCR),
            Segment(5.0, 10.0, "Magma\nrises because it is lighter", Kind.OCR),
            Segment(10.0, 15.0, "Lava\nbasalt flows far", Kind.OCR),
            *[Segment(float(t), t + 2.5, f"speech {video} {t}", Kind.SPEECH) for t in range(0, 15, 2)]]


async def _file(cat: Catalog, video: str) -> None:
    await cat.add_video(SCOPE, video, f"/{video}.mp4", "", TITLE)
    units = _units(video)
    vecs = np.random.default_rng(len(video)).normal(size=(len(units), 4)).astype(np.float32)
    await cat.put_text(SCOPE, video, units, units, vecs)


@both
async def test_one_statement_reads_what_one_bounded_read_each_would(catalog: Catalog) -> None:  # noqa: F811
    for v in ("v1", "v2"):
        await _file(catalog, v)
    wanted = [("v1", 0.0, 15.0, None, 64), ("v2", 4.0, 11.0, str(Kind.SPEECH), 2), ("v1", 0.0, 1e12, str(Kind.OCR), 200),
              ("v2", 0.0, 15.0, str(Kind.SPEECH), 3), ("nothing", 0.0, 15.0, None, 64)]
    got = await catalog.units_within(SCOPE, wanted)
    for (video, start, end, kind, limit), found in zip(wanted, got, strict=True):
        one = await catalog.units(SCOPE, video, start, end, kind, limit)
        assert [s for s, _ in found] == [s for s, _ in one]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(found, one, strict=True))
    assert [len(f) for f in got] == [10, 2, 3, 3, 0]
    shown = await catalog.on_screen(SCOPE, ["v2", "nothing", "v1"], 2)
    assert shown == [[s for s in _units(v) if s.kind == Kind.OCR][:2] for v in ("v2",)] + [[]] + [
        [s for s in _units("v1") if s.kind == Kind.OCR][:2]]
    many = [("v1", float(t), t + 2.5, str(Kind.SPEECH), 1) for t in range(0, 15, 2)] * 20  # over one statement's reads
    assert [len(f) for f in await catalog.units_within(SCOPE, many)] == [1] * len(many)


@pytest.fixture
def vectors(tmp_path: Path):
    vs = VectorStore(str(tmp_path / "milvus.db"), "t", 4, None, 0)
    yield vs
    vs.close()


@both
async def test_a_ready_videos_cover_is_read_once_and_again_when_filed_anew(catalog: Catalog,  # noqa: F811
                                                                          vectors: VectorStore) -> None:
    store = ScopedStore(SCOPE, vectors, catalog)
    for v in ("v1", "v2"):
        await _file(catalog, v)
    reads: list[int] = []
    real = catalog.on_screen

    async def counted(scope, video_ids, limit):  # noqa: ANN001, ANN202 - the real read, counted
        reads.append(len(video_ids))
        return await real(scope, video_ids, limit)

    catalog.on_screen = counted  # type: ignore[method-assign]
    titles = {"v1": TITLE, "v2": TITLE}
    versions = {v.id: v.created for v in await store.videos()}
    first = await cover_spans(store, ["v1", "v2"], titles, versions)
    assert first == {"v1": [(0.0, 5.0)], "v2": [(0.0, 5.0)]} and reads == [2]
    assert await cover_spans(store, ["v1", "v2"], titles, versions) == first and reads == [2]  # kept
    assert await cover_spans(store, ["v1"], titles, {}) == {"v1": [(0.0, 5.0)]} and reads == [2, 1]  # not ready: read
    await store.delete_video("v1")  # forgotten here: dropped
    assert not [k for k in store.memo.values if k[0] == SCOPE.key and k[1] == "v1"]
    await _file(catalog, "v1")  # posted again: filed anew, a new version
    versions = {v.id: v.created for v in await store.videos()}
    assert await cover_spans(store, ["v1", "v2"], titles, versions) == first and reads == [2, 1, 1]

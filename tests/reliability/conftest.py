"""Fixtures of the reliability suite: short lectures (two slides, 640×360) so that many ingests
fit in the time, settings with OCR off where on-screen text is beside the point, the catalog
backend (SQLite, or PostgreSQL in modules parametrized with `tests.backends.BACKENDS`), and helpers
that read the stores directly (Milvus, the catalog, the file tree) rather than through the service."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core import synth
from core.config import Settings
from core.models import Scope
from core.service import Service
from tests import backends

catalog_backend, database_url, catalog = backends.catalog_backend, backends.database_url, backends.catalog


def short_lecture(title: str, slides: list[tuple[str, str]], dst: Path, lines: tuple[str, ...] = ()) -> Path:
    lec = synth.Lecture(title, [synth.Slide(t, lines, say, hold=0.5) for t, say in slides])
    return synth.render(lec, dst, size="640x360")


TOPICS = {
    "volcano": [("Volcanoes", "Magma rises because molten rock is lighter than the solid rock around it."),
                ("Eruptions", "Sticky andesite magma traps gas and makes explosive eruptions.")],
    "bread": [("Bread", "Yeast feeds on sugar in the flour and releases carbon dioxide."),
              ("Kneading", "Kneading the dough for ten minutes develops the gluten network.")],
    "tides": [("Tides", "The moon pulls the oceans and makes two high tides every day."),
              ("Spring tides", "When the sun and the moon line up the tides are strongest.")],
    "bees": [("Bees", "Honey bees dance to tell their sisters where the flowers are."),
             ("Hives", "A hive keeps its brood warm at thirty five degrees.")],
    "rust": [("Rust", "Iron rusts when oxygen and water react with it to form iron oxide."),
             ("Zinc", "A zinc coating protects steel because zinc corrodes first.")],
}


@pytest.fixture(scope="session")
def short_lectures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("short")
    return {name: short_lecture(name.title(), slides, d / f"{name}.mp4") for name, slides in TOPICS.items()}


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

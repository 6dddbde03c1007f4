"""A catalog written by an earlier vidrag upgrades in place (core/store/catalog/migrations.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from core.jobs.queue import JobQueue
from core.models import Scope, Stage
from core.store.catalog.sqlite import SqliteCatalog


async def test_stages_stored_as_words_become_stage_ids(tmp_path: Path) -> None:
    """Jobs of an earlier vidrag keep their stage: the words it stored ("transcribing") are read as
    the ids stored now, which present.py words for people."""
    path = tmp_path / "catalog.db"
    catalog = await SqliteCatalog.open(path)
    queue = JobQueue(catalog)
    scope = Scope("console", "local", "general")
    jobs = [await queue.enqueue(scope, f"v{i}", f"/tmp/v{i}.mp4") for i in range(3)]
    await catalog.close()

    def as_the_earlier_version_left_them() -> None:
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            for job, words in zip(jobs, ("transcribing", "reading the screen", "indexing"), strict=True):
                db.execute("UPDATE jobs SET stage=? WHERE id=?", (words, job.id))
            db.execute("DELETE FROM schema_version WHERE version >= 5")  # the stage ids' and those after it

    await asyncio.to_thread(as_the_earlier_version_left_them)
    catalog = await SqliteCatalog.open(path)
    try:
        stages = [(await JobQueue(catalog).get(j.id)).stage for j in jobs]  # type: ignore[union-attr]
    finally:
        await catalog.close()
    assert stages == [Stage.TRANSCRIBE, Stage.OCR, Stage.EMBED]

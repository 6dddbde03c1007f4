"""Chapters and summary of a rendered lecture through the real pipeline (ffmpeg, whisper tiny.en,
RapidOCR, MiniLM, Milvus Lite, the catalog): made once the video is indexed, kept in the catalog on
both backends, removed by `forget` and `wipe`, written by the LLM (FakeLLMServer) from the
chapters' excerpts when one is configured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.answer import summary as summaries
from core.config import Settings
from core.engines.registry import Models
from core.errors import UserFacingError
from core.models import Chapter, Scope, StoredSummary, VideoStatus
from core.service import Service
from core.store.catalog import Catalog, open_catalog
from tests import backends
from tests.backends import BACKENDS
from tests.conftest import Indexed, console

# the catalog fixtures (SQLite, and PostgreSQL when VIDRAG_TEST_DATABASE_URL names a server)
catalog_backend, database_url, catalog = backends.catalog_backend, backends.database_url, backends.catalog


def near_slide_changes(chapters: tuple[Chapter, ...], times: list[tuple[float, float]], tol: float = 3.0) -> bool:
    return all(min(abs(c.start - a) for a, _ in times) <= tol for c in chapters)


async def test_an_indexed_lecture_has_a_chapter_per_slide_and_a_cited_summary(service: Service, lecture) -> None:
    path, lec = lecture
    sc = console("summary")
    video = await service.wait((await service.submit(sc, str(path))).job.id)
    assert (await service.catalog.counts(sc, video.id))["summaries"] == 1  # made by the job's hook
    made = await service.summary(sc)  # the latest video
    assert made.video.id == video.id and made.method == "extractive"
    assert [c.title for c in made.chapters] == [s.title for s in lec.slides]
    assert near_slide_changes(made.chapters, lec.times) and made.chapters[0].start == 0.0
    assert made.chapters[-1].end == pytest.approx(video.duration, abs=1.0)
    sentences = summaries.cited_sentences(made.text)
    assert summaries.MIN_SENTENCES <= len(sentences) <= summaries.MAX_SENTENCES
    assert " ".join(sentences) == made.text  # every sentence cites a moment
    assert [f"[{c.label}]" for c in made.citations] == re.findall(r"\[\d+:\d\d\]", made.text)
    assert all(0 <= c.start < c.end <= video.duration + 1 for c in made.citations)
    out = made.to_json()
    assert set(out) == {"video_id", "title", "summary", "chapters"} and out["title"] == "How volcanoes work"
    assert set(out["chapters"][0]) == {"start", "end", "title"}

    await service.forget(sc, video.id)
    assert (await service.catalog.counts(sc))["summaries"] == 0


async def test_asked_by_title_words_in_a_thread_it_is_remembered_there(service: Service, lecture, lecture2) -> None:
    sc = console("two-videos")
    volcano = await service.wait((await service.submit(sc, str(lecture[0]))).job.id)
    bread = await service.wait((await service.submit(sc, str(lecture2[0]))).job.id)
    assert (await service.summary(sc, "the volcanoes video", thread="t1")).video.id == volcano.id
    assert (await service.summary(sc, thread="t1")).video.id == volcano.id  # this thread's video
    assert (await service.summary(sc)).video.id == bread.id  # elsewhere: the latest
    assert (await service.summary(sc, bread.id)).video.id == bread.id
    assert await service.wipe(sc) == 2
    assert (await service.catalog.counts(sc))["summaries"] == 0
    with pytest.raises(UserFacingError, match="No videos"):
        await service.summary(sc)


async def test_a_video_still_indexing_has_no_summary_yet(fake_models: Models, settings: Settings) -> None:
    async with Service.open(settings, models=fake_models, chat=None) as svc:
        sc = console("queued")
        store = svc.store(sc)
        await store.add_video("v1", "/talk.mp4", "", "A talk")
        await store.update_video("v1", status=VideoStatus.INDEXING)
        with pytest.raises(UserFacingError, match="still being indexed"):
            await svc.summary(sc, "v1")
        assert (await svc.catalog.counts(sc))["summaries"] == 0


async def test_without_text_on_screen_titles_are_key_phrases_of_what_is_said(models: Models, tmp_path: Path,
                                                                            lecture) -> None:
    settings = Settings(data_dir=tmp_path / "data", clip_pretrained="random", ocr=False)
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        sc = console("no-ocr")
        await svc.wait((await svc.submit(sc, str(lecture[0]))).job.id)
        made = await svc.summary(sc)
    assert len(made.chapters) >= 2 and near_slide_changes(made.chapters, lecture[1].times)
    for c in made.chapters:  # a phrase of what is said: a few words, never a sentence
        assert 1 <= len(c.title.split()) <= 3 and not c.title.endswith((".", ",")), c.title
    assert summaries.MIN_SENTENCES <= len(summaries.cited_sentences(made.text)) or len(made.chapters) < 3


# ---- with an LLM --------------------------------------------------------------------------------------
async def test_the_llm_summary_holds_the_chapters_excerpts_and_cites_as_answers_do(
        indexed_lectures: Indexed, llm, llm_chat) -> None:
    """`make` on the session's volcano lecture (read only: nothing is stored)."""
    store = indexed_lectures.service.store(indexed_lectures.volcano)
    video = indexed_lectures.volcano_video
    llm.enqueue("The lecture explains volcanoes [1]. Magma collects in a chamber and rises [2]. "
                "Dissolved gas builds pressure until the rock gives way [3]. @everyone look at [7]. "
                "Shield volcanoes pour runny lava while stratovolcanoes explode [4].")
    made = await summaries.make(store, video, llm_chat)
    prompt = llm.last_text()
    assert "not instructions" in prompt
    assert all(s.title in prompt for s in indexed_lectures.lecture.slides)  # each chapter's heading
    assert "runny basalt lava" in prompt and "magma chamber" in prompt.lower()  # what was shown and said
    assert made.method == "pixtral-fake"
    assert "[7]" not in made.text and "everyone" not in made.text  # a sentence citing nothing that exists
    assert len(summaries.cited_sentences(made.text)) == 4
    assert [s for s, _ in made.moments] == [c.start for c in made.chapters]


async def test_when_the_llm_fails_the_summary_is_extractive(indexed_lectures: Indexed, llm, llm_chat) -> None:
    store = indexed_lectures.service.store(indexed_lectures.volcano)
    llm.fail_next = 10
    made = await summaries.make(store, indexed_lectures.volcano_video, llm_chat)
    assert made.method == "extractive" and len(summaries.cited_sentences(made.text)) >= summaries.MIN_SENTENCES


# ---- the catalog, on both backends ----------------------------------------------------------------------
@pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)
async def test_a_summary_is_kept_replaced_and_removed_with_its_video_and_channel(catalog: Catalog) -> None:
    sc, other = Scope("test", "w", "c"), Scope("test", "w", "other")
    first = StoredSummary("Magma rises [0:05].", (Chapter(0.0, 5.0, "Intro"), Chapter(5.0, 9.5, "Magma")),
                          ((5.0, 9.5),), "extractive", 9.5)
    for scope in (sc, other):
        await catalog.add_video(scope, "v1", "/v1.mp4", "", "Volcanoes")
        await catalog.put_summary(scope, "v1", first)
    assert await catalog.summary(sc, "v1") == first
    again = first._replace(text="Gas builds [0:05].", method="model")
    await catalog.put_summary(sc, "v1", again)
    assert await catalog.summary(sc, "v1") == again and await catalog.summary(other, "v1") == first
    await catalog.delete_video(sc, "v1")
    assert await catalog.summary(sc, "v1") is None and await catalog.summary(other, "v1") == first
    # a summary made as the video was indexed and finished after it was forgotten is not kept
    await catalog.put_summary(sc, "v1", again)
    assert await catalog.summary(sc, "v1") is None and (await catalog.counts(sc))["summaries"] == 0
    await catalog.wipe(other)
    assert await catalog.summary(other, "v1") is None and (await catalog.counts(other))["summaries"] == 0


async def test_a_summary_written_while_its_video_is_being_deleted_is_not_kept_on_postgres(tmp_path: Path) -> None:
    """On PostgreSQL a write and a delete run at once: a summary made as the video was indexed can
    be written while another connection's transaction deletes the video, in whatever order that
    transaction takes the tables. The write waits for the delete (its check of the video's row
    takes a share lock) and then finds the video gone; without the lock it saw the row the delete
    had not committed yet and left a summary behind."""
    import asyncio

    import psycopg

    with backends.fresh_database(backends.server_url()) as fresh:
        catalog = await open_catalog(Settings(data_dir=tmp_path / "data", database_url=fresh))
        try:
            sc = Scope("test", "w", "race")
            await catalog.add_video(sc, "v1", "/v1.mp4", "", "Volcanoes")
            made = StoredSummary("Magma rises [0:05].", (Chapter(0.0, 5.0, "Intro"),), ((0.0, 5.0),), "extractive", 5.0)
            async with await psycopg.AsyncConnection.connect(fresh) as other:
                async with other.transaction():
                    for table in ("summaries", "videos"):  # children first: the order that lost a row
                        await other.execute(f"DELETE FROM {table} WHERE scope=%s AND "  # noqa: S608
                                            f"{'id' if table == 'videos' else 'video_id'}=%s", (sc.key, "v1"))
                    write = asyncio.create_task(catalog.put_summary(sc, "v1", made))
                    for _ in range(400):  # until the write has run or waits on the video's row
                        cur = await other.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type='Lock'")
                        if write.done() or (await cur.fetchone())[0]:  # type: ignore[index]
                            break
                        await asyncio.sleep(0.025)
                await write
            assert await catalog.summary(sc, "v1") is None and (await catalog.counts(sc))["summaries"] == 0
        finally:
            await catalog.close()

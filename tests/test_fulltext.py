"""The catalog's full-text search in every language vidrag transcribes, on both backends alike:
each segment's words are stemmed in its video's language before they reach SQLite FTS5 or
PostgreSQL's tsvector (core.text.words.terms), and a question's words in each of the channel's
languages; an index built before that is rebuilt by the migration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.models import Kind, Scope, Segment
from core.store.catalog import Catalog, SqliteCatalog
from core.store.catalog.migrations import POSTGRES, SQLITE
from core.text.words import query_terms, stem, terms, tokens
from tests.backends import BACKENDS, catalog, catalog_backend, database_url  # noqa: F401 - fixtures

both = pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)

SCOPE = Scope("console", "ws", "fulltext")
# One video per language; each sentence holds a word whose question form differs from it.
SAID = {
    "v_it": ("it", "Le eruzioni dell'Etna rendono fertili le montagne intorno."),
    "v_es": ("es", "Las islas nacieron de volcanes que atraviesan la placa africana."),
    "v_de": ("de", "Die ersten Lokomotiven zogen zehn Tonnen Eisen."),
    "v_fr": ("fr", "Les glaciers reculent chaque année dans les Alpes."),
    "v_en": ("en", "The eruptions buried the town under ash."),
}


async def _index(cat: Catalog) -> None:
    for vid, (lang, text) in SAID.items():
        await cat.add_video(SCOPE, vid, f"/{vid}.mp4", "", vid)
        await cat.update_video(SCOPE, vid, language=lang)
        seg = Segment(0.0, 5.0, text, Kind.SPEECH)
        await cat.put_text(SCOPE, vid, [seg], [seg], np.zeros((1, 4), np.float32), lang)


async def _found(cat: Catalog, question: str) -> list[str]:
    return [h.video_id for h in await cat.lexical(SCOPE, question, 10)]


@both
@pytest.mark.parametrize(("question", "video"), [
    ("Che cosa fa ogni eruzione alla montagna?", "v_it"),  # eruzioni / eruzione, montagne / montagna
    ("¿Qué volcán atraviesa la placa?", "v_es"),      # volcanes / volcán, with its accent
    ("Wie viel zog die erste Lokomotive?", "v_de"),   # Lokomotiven / Lokomotive
    ("Pourquoi le glacier fond-il ?", "v_fr"),         # glaciers / glacier
    ("What erupted over the town?", "v_en"),          # eruptions / erupted
])
async def test_a_question_finds_its_words_in_any_form_in_the_video_language(catalog: Catalog, question: str,  # noqa: F811
                                                                          video: str) -> None:
    await _index(catalog)
    assert (await _found(catalog, question))[:1] == [video]


@both
async def test_stop_words_of_every_language_are_left_out_of_the_query(catalog: Catalog) -> None:  # noqa: F811
    await _index(catalog)
    assert await _found(catalog, "il la de die les the") == []


@both
async def test_an_index_built_before_is_stemmed_in_each_video_language_by_the_migration(
        catalog_backend: str, database_url: str, tmp_path: Path) -> None:  # noqa: F811
    """A catalog at the schema before `terms` (English stemming for all), with an Italian video:
    the migration fills `terms` in Italian and rebuilds the index, and the Italian word form the
    old index missed ("eruzione" for "eruzioni") is found."""
    if catalog_backend == "sqlite":
        class Old(SqliteCatalog):
            migrations = [m for m in SQLITE if m[0] < 6]
        old: Catalog = await Old.open(tmp_path / "catalog.db")
        reopen = lambda: SqliteCatalog.open(tmp_path / "catalog.db")  # noqa: E731
    else:
        from core.store.catalog.postgres import PostgresCatalog

        class OldPg(PostgresCatalog):
            migrations = [m for m in POSTGRES if m[0] < 5]
        old = await OldPg.open(database_url)
        reopen = lambda: PostgresCatalog.open(database_url)  # noqa: E731
    try:
        await old.add_video(SCOPE, "v_it", "/v_it.mp4", "", "v_it")
        await old.update_video(SCOPE, "v_it", language="it")
        await old._run('INSERT INTO segments (scope, video_id, start, "end", kind, text) VALUES (?,?,?,?,?,?)',
                       (SCOPE.key, "v_it", 0.0, 5.0, "speech", SAID["v_it"][1]))
        missed = ("SELECT rowid FROM segments_fts WHERE segments_fts MATCH 'eruzione'" if catalog_backend == "sqlite"
                  else "SELECT id FROM segments WHERE tsv @@ to_tsquery('english', 'eruzione')")
        assert await old.rows(missed) == []  # stemmed as English, "eruzioni" is not "eruzione"
    finally:
        await old.close()
    new = await reopen()
    try:
        rows = await new.rows("SELECT terms FROM segments")
        assert rows[0]["terms"] == terms(SAID["v_it"][1], "it")
        assert [h.video_id for h in await new.lexical(SCOPE, "eruzione", 5)] == ["v_it"]
    finally:
        await new.close()


def test_terms_are_stemmed_in_the_language_and_folded() -> None:
    assert stem("eruzioni", "it") == stem("eruzione", "it")
    assert stem("Lokomotiven".lower(), "de") == stem("lokomotive", "de")
    assert terms("La forêt", "fr") == "la foret"  # without its accent, as FTS5 would fold it
    assert terms("eruptions", "") == terms("eruptions", "en") == "erupt"  # unknown: English
    assert terms("eruptions", "xx") == "erupt"  # a language Snowball lacks: English
    assert query_terms("eruzioni", ("en", "it")) == ["eruzion", "eruzioni"]  # as Italian and as English
    assert tokens("I vulcani", "it") == {"vulcan"}  # "i" is a stop word in Italian


@both
async def test_the_migration_fills_every_segment_in_batches(catalog: Catalog) -> None:  # noqa: F811
    """`fill_terms` pages through the segments by id: none is left out at a page's edge."""
    from core.store.catalog.migrations import fill_terms

    await _index(catalog)
    await catalog._run("UPDATE segments SET terms=''")
    async with catalog._tx() as tx:
        await fill_terms(tx, batch=2)
    rows = await catalog.rows("SELECT s.text, s.terms, v.language FROM segments s JOIN videos v ON v.id = s.video_id")
    assert len(rows) == len(SAID) and all(r["terms"] == terms(r["text"], r["language"]) for r in rows)


@both
async def test_a_word_in_more_segments_than_the_cap_is_not_searched_and_a_rare_one_is(catalog: Catalog) -> None:  # noqa: F811
    """Each word of a question is counted (all in one statement) before the search: one in more
    than RANK_CAP segments of the channel is left out, the rare word beside it is searched."""
    from core.store.catalog.base import RANK_CAP

    await catalog.add_video(SCOPE, "big", "/big.mp4", "", "big")
    segs = [Segment(float(i), i + 1.0, "the senate voted" + (" tribune" if i == 7 else ""), Kind.SPEECH)
            for i in range(RANK_CAP + 1)]
    await catalog.put_text(SCOPE, "big", segs, [], np.zeros((0, 4), np.float32), "en")
    assert await catalog.lexical(SCOPE, "senate", 5) == []
    assert [h.start for h in await catalog.lexical(SCOPE, "senate tribune voted", 5)] == [7.0]

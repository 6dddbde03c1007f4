"""Catalog backends for tests: SQLite always, PostgreSQL when a server is at hand.

A test module that must hold on both backends sets
`pytestmark = pytest.mark.parametrize("catalog_backend", BACKENDS, indirect=True)`; its tests then
run twice, with ids `[sqlite]` and `[postgres]`. Every other test gets SQLite (`catalog_backend`
defaults to it).

PostgreSQL comes from `VIDRAG_TEST_DATABASE_URL` (scripts/test.sh starts a throw-away cluster with
scripts/postgres.sh and sets it). Each test gets a database of its own (`CREATE DATABASE`, dropped
afterwards), so tests never see each other's rows. Without the URL the postgres variants are
skipped, unless `VIDRAG_REQUIRE_POSTGRES` is set (scripts/test.sh sets it): then they fail, so CI
cannot pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from core.config import Settings
from core.store.catalog import Catalog, open_catalog

BACKENDS = ["sqlite", "postgres"]


def server_url() -> str:
    url = os.environ.get("VIDRAG_TEST_DATABASE_URL", "")
    if not url:
        if os.environ.get("VIDRAG_REQUIRE_POSTGRES"):
            pytest.fail("VIDRAG_REQUIRE_POSTGRES is set but VIDRAG_TEST_DATABASE_URL is not "
                        "(scripts/test.sh starts PostgreSQL with scripts/postgres.sh)")
        pytest.skip("no PostgreSQL: set VIDRAG_TEST_DATABASE_URL (scripts/postgres.sh start prints one)")
    return url


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@pytest.fixture
def catalog_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@contextlib.contextmanager
def fresh_database(base: str) -> Iterator[str]:
    """The URL of a new database on the server of `base`, dropped on exit."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(catalog_backend: str) -> Iterator[str]:
    """"" for SQLite (the file under DATA_DIR), or the URL of a fresh PostgreSQL database."""
    if catalog_backend == "sqlite":
        yield ""
        return
    with fresh_database(server_url()) as url:
        yield url


@pytest.fixture
async def catalog(database_url: str, tmp_path: Path) -> Catalog:
    cat = await open_catalog(Settings(data_dir=tmp_path / "data", database_url=database_url))
    yield cat  # type: ignore[misc]
    await cat.close()

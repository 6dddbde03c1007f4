"""The one owner of vidrag's catalog and job queue: every SQL statement lives in this package.

Two backends behind one interface (`Catalog`, in `base.py`):
- SQLite (default, embedded): `DATA_DIR/catalog.db`, WAL, one machine (`sqlite.py`);
- PostgreSQL when `DATABASE_URL=postgresql://…`: one database shared by chat and worker processes
  on any number of machines (`postgres.py`).

Both apply their numbered migrations (`migrations.py`) at start-up and record them in
`schema_version`.
"""

from __future__ import annotations

from core.config import Settings
from core.store.catalog.base import Catalog, Tx
from core.store.catalog.sqlite import SqliteCatalog

__all__ = ["Catalog", "SqliteCatalog", "Tx", "open_catalog"]


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


async def open_catalog(settings: Settings) -> Catalog:
    """The catalog `settings` name: PostgreSQL for a `postgresql://` DATABASE_URL, else SQLite."""
    url = settings.database_url.strip()
    if not url:
        return await SqliteCatalog.open(settings.catalog_path)
    if not is_postgres(url):
        raise ValueError("DATABASE_URL must be a postgresql:// URL (or empty for SQLite under DATA_DIR).")
    from core.store.catalog.postgres import PostgresCatalog  # psycopg is imported only where it is used

    return await PostgresCatalog.open(url, settings.database_pool_size, settings.server_timeout_seconds)

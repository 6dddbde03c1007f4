"""What every part of the catalog's SQL runs on: a row, a transaction, and the primitives a
backend supplies (`_fetch`, `_run`, `_tx`, its name in `backend`). `Catalog` and the tables'
mixins (`videos`, `jobs`, `windows`, `summaries`, `media`) are written against these alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]


class Tx(Protocol):
    """One open transaction."""

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int: ...

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`sql` once per row of arguments, in one call to the driver (executemany)."""
        ...


class Primitives(ABC):
    """The backend's primitives, as the catalog's SQL calls them."""

    backend: str = ""  # "sqlite" or "postgres": set by the backend's class

    @abstractmethod
    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    async def _run(self, sql: str, args: Sequence[Any] = ()) -> int: ...

    @abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction that takes the write lock at once (SQLite BEGIN IMMEDIATE)."""


def video_still_there(backend: str) -> str:
    """The condition of a write that must not outlive its video (a summary, a kept file's row made
    after indexing, which a `forget` may overtake): the video's row is there, two arguments (scope
    key, video id). On PostgreSQL with a share lock, so a write racing `delete_video` (which removes
    the video's row first) waits for it and then finds the row gone; SQLite writes one at a time."""
    lock = " FOR SHARE" if backend == "postgres" else ""
    return f"EXISTS (SELECT 1 FROM videos WHERE scope=? AND id=?{lock})"

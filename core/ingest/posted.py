"""A picture posted with a mention (a screenshot asked about), brought in as an attachment is:
from the platform's URL with the headers it needs, every hop checked by the URL guard, through
the guarding proxy, at most `max_bytes` — into a folder of DATA_DIR, read back and removed. What
it holds is read later as hostile input (core/answer/picture.py)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

from core.ingest.fetch import fetch_attachment
from core.ingest.guard import UrlGuard


async def fetch_picture(url: str, headers: dict[str, str], guard: UrlGuard, folder: Path, max_bytes: int) -> bytes:
    """The bytes at `url` (`BadSource` with a message for the channel when they cannot be had)."""
    work = folder / uuid.uuid4().hex
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    try:
        await asyncio.to_thread(guard.check, url)  # getaddrinfo: never on the loop
        got = await fetch_attachment(url, work, guard, max_bytes, dict(headers), None)
        return await asyncio.to_thread(got.path.read_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)

"""Structure that must hold: the core imports no chat library, and the event loop stays free
while a video is indexed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from core.service import Service
from tests.conftest import console


def test_core_imports_without_chat_libraries() -> None:
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'discord', 'slack_bolt', 'slack_sdk'}:
            raise ImportError('core must not import ' + name)
sys.meta_path.insert(0, Block())
import core.service, core.answer.compose, core.ingest.pipeline, core.answer.retrieve, core.store.scoped, core.ingest.fetch, core.jobs.queue
import core.chat.incoming, core.chat.present, core.jobs.worker, core.store.catalog
import adapters.console
print('ok')
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr[-2000:]


# A loop stalled by another test's processes would read as a stall of its own: scripts/test.sh runs
# the tests marked `alone` in a pytest of their own, with no other test beside them
@pytest.mark.alone("measures the event loop's gaps")
async def test_event_loop_is_not_blocked_while_indexing(service: Service, lecture) -> None:
    """Whisper, OCR and the embedders run on threads: a ticker on the loop keeps ticking.

    The bound is a blocked-or-not check (whisper on the loop would stall it for seconds), not a
    performance figure; the benchmarks measure the lag itself."""
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = asyncio.create_task(ticker())
    try:
        await service.wait((await service.submit(console("loop"), str(lecture[0]))).job.id)
    finally:
        t.cancel()
    assert len(gaps) > 50
    assert max(gaps) < 1.0, f"the loop stalled for {max(gaps):.2f} s"

"""Event-loop lag of the Discord bot while it indexes a ~1-minute video.

`.venv/bin/python -m bench.discord_loop_lag`

The real bot (discord.py client, gateway heartbeats every second) runs against FakeDiscord on
127.0.0.1 over the real core (Milvus Lite, SQLite, faster-whisper tiny.en, MiniLM, RapidOCR,
open_clip with random weights — same compute as real weights). A user posts a link to a rendered
1-minute lecture; while it is indexed a sampler asleep for 10 ms at a time records how late the
loop wakes it, and another channel asks a question. Prints the lag percentiles, the longest gap between
gateway heartbeats as the fake received them, and how long the question took to be answered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402  (MonkeyPatch points discord.py at the fake)

from adapters.discord_bot import VidragBot  # noqa: E402
from core import synth  # noqa: E402
from core.config import Settings  # noqa: E402
from core.service import Service  # noqa: E402
from tests.fakes.discord_server import FakeDiscord  # noqa: E402

MINUTE = synth.Lecture("Plate tectonics in one minute", [
    synth.Slide("Plate tectonics", ("Earth Science - Lecture 5",),
                "Welcome. In this short lecture we look at plate tectonics, the theory that explains why "
                "continents move, why mountains rise, and why earthquakes cluster along certain lines."),
    synth.Slide("The lithosphere", ("rigid plates", "float on the asthenosphere"),
                "The outer shell of the Earth, the lithosphere, is broken into about fifteen rigid plates. "
                "They ride on the hotter, softer asthenosphere beneath them, moving a few centimetres a year."),
    synth.Slide("Divergent boundaries", ("plates pull apart", "new crust at mid-ocean ridges"),
                "Where two plates pull apart, magma rises to fill the gap and new oceanic crust forms. "
                "The mid-Atlantic ridge is the best known example of such a divergent boundary."),
    synth.Slide("Convergent boundaries", ("subduction", "volcanic arcs and trenches"),
                "Where plates collide, the denser one sinks beneath the other in a subduction zone, "
                "building deep ocean trenches and chains of volcanoes such as the Andes."),
    synth.Slide("Transform faults", ("plates slide past", "San Andreas fault"),
                "At transform boundaries the plates slide past each other. Stress builds up and is "
                "released in earthquakes, as along the San Andreas fault in California."),
    synth.Slide("Summary", ("plates move", "boundaries shape the surface"),
                "To sum up, moving plates and their boundaries shape the surface of our planet."),
])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def sample_lag(into: list[float], stop: asyncio.Event, stage: Callable[[], str],
                     worst: dict[str, float], period: float = 0.01) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(period)
        lag = time.perf_counter() - t0 - period
        into.append(lag)
        now = stage()
        worst[now] = max(worst.get(now, 0.0), lag)


async def main(workdir: Path) -> None:
    video = workdir / "plate-tectonics.mp4"
    if not video.is_file():
        await asyncio.to_thread(synth.render, MINUTE, video)
    short = workdir / "volcanoes.mp4"
    if not short.is_file():
        await asyncio.to_thread(synth.render, synth.DEMO, short)
    duration = float(await asyncio.to_thread(synth._duration, video))
    settings = Settings(data_dir=workdir / f"data-{int(time.time())}", clip_pretrained="random",
                        allow_hosts=("127.0.0.1",))
    fake = FakeDiscord(heartbeat_ms=1000)
    await fake.start()
    fake.files.update({"plate-tectonics.mp4": video, "volcanoes.mp4": short})
    with pytest.MonkeyPatch.context() as mp:
        fake.point_discord_py_at(mp)
        async with Service.open(settings, chat=None) as svc:
            models = svc.models
            await models.call(lambda: (models.transcriber, models.ocr))  # loaded before measuring
            svc.start_workers(1)
            bot = VidragBot(svc, settings, guild_ready_timeout=0.1)
            running = asyncio.create_task(bot.start("bench-token"))
            await asyncio.wait_for(bot.wait_until_ready(), 30)
            # a video in another channel, so a question asked during the big ingest has something to find
            await index(fake, "random", "volcanoes.mp4")

            lags: list[float] = []
            stop = asyncio.Event()
            worst: dict[str, float] = {}
            posted: dict = {"id": ""}
            sampler = asyncio.create_task(sample_lag(
                lags, stop, lambda: progress_of(fake, posted).split("…")[0] or "posting", worst))
            beats_before = len(fake.heartbeats)
            t0 = time.perf_counter()
            posted = await fake.post("general", f"{fake.url}/media/plate-tectonics.mp4")
            await fake.wait_for(lambda: progress_of(fake, posted).startswith(
                ("⏳ Transcribing", "⏳ Reading", "⏳ Indexing", "✅", "❌")), within=300)
            asked_at = time.perf_counter()
            question = await fake.post("random", "Why do volcanoes erupt?", mention_bot=True)
            await fake.wait_for(lambda: fake.bot_messages(question["id"]), within=600)
            answered_in = time.perf_counter() - asked_at
            await fake.wait_for(lambda: progress_of(fake, posted).startswith(("✅", "❌")), within=600)
            elapsed = time.perf_counter() - t0
            stop.set()
            await sampler
            result = progress_of(fake, posted)
            await bot.close()
            await asyncio.gather(running, return_exceptions=True)
    await fake.stop()

    ms = [x * 1000 for x in lags]
    print(f"indexed a {duration:.0f} s video in {elapsed:.1f} s: {result}")
    print(f"event-loop lag over {len(ms)} samples (10 ms sleeps): p50 {statistics.median(ms):.1f} ms, "
          f"p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms")
    print("worst lag by stage: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in worst.items()))
    beats = fake.heartbeats[beats_before:]
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    print(f"gateway heartbeats during the ingest: {len(beats)} (every 1.0 s asked), longest gap "
          f"{max(gaps, default=float('nan')):.3f} s")
    print(f"a question in another channel, asked while transcribing, was answered in {answered_in:.2f} s")


def progress_of(fake: FakeDiscord, posted: dict) -> str:
    return next((m["content"] for m in fake.messages.values()
                 if m.get("message_reference", {}).get("message_id") == posted["id"]), "")


async def index(fake: FakeDiscord, channel: str, name: str) -> None:
    posted = await fake.post(channel, f"{fake.url}/media/{name}")
    await fake.wait_for(lambda: progress_of(fake, posted).startswith(("✅", "❌")), within=300)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "vidrag-bench-discord")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(args.workdir))

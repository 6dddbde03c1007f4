"""`make bench`, the SCALE part (issues 12 and 13): `Service.ask` latency with 5,000 channels of one
2-minute video each and with 1,000 ten-minute videos in one channel, on Milvus Lite and on a Milvus
server; rare-word recall in the big channel, dense-only against the hybrid first stage; ingest jobs
per minute with one and two `python -m bot worker` processes on PostgreSQL.

The 6,000 videos are loaded in bulk through the catalog's methods and `VectorStore.insert_many`
(64 videos a batch, one Milvus flush at the end), not ingested: each is the real lecture's rows
(bench/run.py, part 1), or its first two minutes, with every vector moved by noise to cosine ~0.8
of the original, as part 3's `add_synthetic` does, so every video competes for every question.
Ten videos of the big channel carry one planted sentence each, with a made-up name or number
spoken once, embedded by the real text embedder: the rare words a question may ask about.

Each store gets a throwaway home: `bench-out/scale-<store>-<part>/` for files, Milvus collections
named `bench<tag>…_` on the server and a database `vidrag_bench_<tag>` on PostgreSQL, all dropped at the
end. A sub-part whose server is not reachable is skipped with a printed line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from core import synth
from core.answer.compose import compose
from core.config import Settings
from core.engines.base import normalise
from core.engines.registry import Models
from core.models import Answer, Hit, Kind, Scope, Segment, VideoStatus
from core.service import Service

CHANNELS = 5000
BIG_VIDEOS = 1000
CLIP_S = 120.0  # a channel's one video: the lecture's first two minutes
ASKS = 60  # timed asks per figure (p50, p95)
JOB_VIDEOS = 10  # short lectures per jobs-per-minute run
LITE_CHANNELS_LAYOUT = "key"  # see part_scale

# (video index in the big channel, planted sentence, question): a made-up name or number, spoken
# once in the 1,000 videos; the question uses it and little else a dense vector could match
RARE = [
    (37, "The scribe Quellinor Vasht copied every new law onto bronze tablets.", "What did Quellinor Vasht copy?"),
    (112, "The harbour of Zembrotha could hold four hundred grain ships.", "What could the harbour of Zembrotha hold?"),
    (205, "A tribune named Oskevar Drume vetoed the land bill twice.", "What did Oskevar Drume veto?"),
    (288, "Legion 8821 marched north to the river in early spring.", "Where did legion 8821 march?"),
    (361, "The Pellucian pact bound the hill towns to send soldiers.", "What did the Pellucian pact bind the hill towns to do?"),
    (444, "Merchants paid the Varkentine toll at every bridge into the city.", "Where did merchants pay the Varkentine toll?"),
    (530, "The census of year 6493 counted every citizen and his property.", "What did the census of year 6493 count?"),
    (617, "General Thessamir Kolb lost his fleet in a storm off the coast.", "How did Thessamir Kolb lose his fleet?"),
    (802, "The Ulvatic games were held in the forum every fifth summer.", "How often were the Ulvatic games held?"),
    (951, "Grain from Brisquanda fed the poor of the city for a decade.", "Whom did the grain from Brisquanda feed?"),
]
RARE_SLACK = 1.0  # seconds: a citation within this of the planted span counts as the right time

JOB_TOPICS = [
    ("Volcanoes", "Magma rises because molten rock is lighter than the solid rock around it."),
    ("Bread", "Yeast feeds on sugar in the flour and releases carbon dioxide."),
    ("Tides", "The moon pulls the oceans and makes two high tides every day."),
    ("Bees", "Honey bees dance to tell their sisters where the flowers are."),
    ("Rust", "Iron rusts when oxygen and water react with it to form iron oxide."),
    ("Owls", "Owls hunt at night and hear mice moving under the snow."),
    ("Coffee", "Roasting turns green coffee beans brown and creates their aroma."),
    ("Whales", "Humpback whales sing long songs that travel across the ocean."),
    ("Glaciers", "A glacier is a river of ice that moves a few metres every year."),
    ("Comets", "A comet grows a tail of gas and dust when it comes close to the sun."),
]


def say(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(xs), p)), 1) if xs else float("nan")


# ---- the real lecture's rows, the material every synthetic video is made of ---------------------
@dataclass
class Source:
    chunks: list[Segment]  # what Milvus' text collection holds, with `chunk_vectors`
    chunk_vectors: np.ndarray
    segments: list[Segment]
    units: list[Segment]
    unit_vectors: np.ndarray
    frames: list[Hit]  # of kind "frame"
    duration: float

    def first(self, seconds: float) -> Source:
        """The rows of the video's first `seconds`: a shorter video of the same kind."""
        def keep(s: Segment) -> bool:
            return s.end <= seconds

        ci = [i for i, c in enumerate(self.chunks) if keep(c)]
        ui = [i for i, u in enumerate(self.units) if keep(u)]
        return Source([self.chunks[i] for i in ci], self.chunk_vectors[ci], [s for s in self.segments if keep(s)],
                      [self.units[i] for i in ui], self.unit_vectors[ui],
                      [f for f in self.frames if f.time <= seconds], seconds)


async def read_source(svc: Service, scope: Scope, vid: str) -> Source:
    store, vs = svc.store(scope), svc.vectors
    rows = await store._milvus(vs.rows, vs.text, scope.partition, f'video_id == "{vid}"',
                               ["vector", "start", "end", "kind", "text"])
    rows.sort(key=lambda r: (r["start"], r["kind"]))
    units = [u for kind in Kind for u in await store.units(vid, 0, 1e9, str(kind))]
    video = await store.video(vid)
    return Source([Segment(r["start"], r["end"], r["text"], Kind(r["kind"])) for r in rows],
                  np.asarray([r["vector"] for r in rows], np.float32), await store.segments(vid, 0, 1e9),
                  [u for u, _ in units], np.stack([v for _, v in units]), await store.frames(vid),
                  video.duration if video else 600.0)


def moved(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`v` moved by noise to cosine ~0.8 of itself (bench/run.py's add_synthetic)."""
    return normalise(v + rng.normal(0, 0.75 / np.sqrt(v.shape[1]), v.shape).astype(np.float32))


# ---- bulk loading -------------------------------------------------------------------------------
@dataclass
class Plant:
    video: str
    start: float
    end: float
    question: str


async def load_video(svc: Service, scope: Scope, vid: str, src: Source, rng: np.random.Generator,
                     extra: tuple[Segment, np.ndarray, int, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One ready video in `scope`'s catalog made of `src`'s rows (vectors moved by noise); returns
    its chunk rows for Milvus, as `ScopedStore.put_text` writes them. `extra` plants a segment:
    (segment, its vector, the index of the chunk it joins, that chunk's new vector)."""
    chunks, cv = list(src.chunks), moved(src.chunk_vectors, rng)
    segments, units, uv = list(src.segments), list(src.units), moved(src.unit_vectors, rng)
    if extra is not None:
        seg, vec, at, chunk_vec = extra
        c = chunks[at]
        chunks[at] = Segment(c.start, c.end, f"{c.text} {seg.text}", c.kind)
        cv[at] = chunk_vec
        segments.append(seg)
        units.append(seg)
        uv = np.vstack([uv, vec[None, :]])
    cat = svc.catalog
    await cat.add_video(scope, vid, f"synthetic://{scope.channel}/{vid}", "", f"Roman Republic {vid}")
    await cat.put_text(scope, vid, segments, units, uv)
    # frame rows as ingest writes them, without their JPEG bytes (the files are on this host)
    await cat.put_frames(scope, vid, [(f.time, f.path, f.text, None) for f in src.frames])
    await cat.update_video(scope, vid, status=VideoStatus.READY, duration=src.duration)
    return [{"id": f"{vid}:t{i}", "vector": v.tolist(), "video_id": vid, "start": c.start, "end": c.end,
             "kind": str(c.kind), "text": c.text[:8000]} for i, (c, v) in enumerate(zip(chunks, cv, strict=True))]


async def load_many(svc: Service, jobs: list[tuple[Scope, str, Any]], src: Source, rng: np.random.Generator,
                    label: str, batch: int = 64) -> float:
    """Load `jobs` (scope, video id, plant or None) `batch` videos at a time: their catalog rows
    (several transactions at once on PostgreSQL's pool), then their vectors in one bulk insert
    (`VectorStore.insert_many`), with one Milvus flush at the very end."""
    t0 = time.perf_counter()
    vs = svc.vectors
    loop = asyncio.get_running_loop()
    with vs.deferred_flush():
        for i in range(0, len(jobs), batch):
            part = jobs[i:i + batch]
            rows = await asyncio.gather(*(load_video(svc, sc, vid, src, rng, extra) for sc, vid, extra in part))
            by_channel: dict[str, list[dict[str, Any]]] = {}
            for (sc, _, _), got in zip(part, rows, strict=True):
                by_channel.setdefault(sc.partition, []).extend(got)
            await loop.run_in_executor(vs.executor, vs.insert_many, vs.text, by_channel)
            if (i // batch) % 16 == 0:
                say(f"    {label}: {i + len(part)}/{len(jobs)} videos, {time.perf_counter() - t0:.0f} s")
    took = time.perf_counter() - t0
    waited = await loop.run_in_executor(vs.executor, wait_indexed, svc)
    say(f"    {label}: {len(jobs)} videos loaded in {took:.0f} s, indexed {waited:.0f} s later")
    return took + waited


async def plants(svc: Service, src: Source) -> tuple[dict[str, tuple[Segment, np.ndarray, int, np.ndarray]], list[Plant]]:
    """The planted sentences of RARE: each in the middle of a speech chunk, embedded for real (the
    sentence as a unit, and its chunk's text with the sentence added)."""
    text = await svc.models.call_query(lambda: svc.models.text)
    speech = [i for i, c in enumerate(src.chunks) if c.kind == Kind.SPEECH]
    extras, out = {}, []
    for n, (k, sentence, question) in enumerate(RARE):
        k %= BIG_VIDEOS
        at = speech[(n * 7 + 3) % len(speech)]
        c = src.chunks[at]
        start = round(c.start + (c.end - c.start) / 2, 2)
        seg = Segment(start, start + 3.0, sentence, Kind.SPEECH)
        vec, chunk_vec = await svc.models.call_query(text.embed, [sentence, f"{c.text} {sentence}"])
        vid = f"v{k:04d}"
        extras[vid] = (seg, np.asarray(vec, np.float32), at, np.asarray(chunk_vec, np.float32))
        out.append(Plant(vid, seg.start, seg.end, question))
    return extras, out


# ---- measuring ----------------------------------------------------------------------------------
async def settle_lite(settings: Settings) -> float:
    """Milvus Lite (3.x, in this process) builds its segments' HNSW indexes in a background
    thread after a flush and reports every index "Finished" at once, so `wait_indexed` cannot see
    the build. Stopping the folder's server waits for that thread (its close joins it); the next
    `Service.open` starts it again on the indexes now on disk, as a restarted bot would. Asks
    timed during the build measured it (~200 ms p50 at 1,000 videos in a channel), not a channel
    that grew video by video. Returns the seconds waited; no-op on a Milvus server."""
    if "://" in settings.milvus:
        return 0.0
    from milvus_lite.server_manager import server_manager_instance

    t0 = time.perf_counter()
    await asyncio.to_thread(server_manager_instance.release_server, settings.milvus)
    waited = round(time.perf_counter() - t0, 1)
    say(f"    Milvus Lite's background index build finished {waited:.0f} s later")
    return waited


def wait_indexed(svc: Service, limit_s: float = 600) -> float:
    """Wait until Milvus has indexed every row just loaded (`describe_index`: nothing pending).
    Right after a bulk load Milvus builds its index in the background, and Milvus Lite does so
    inside this process: asks timed then measured that backlog (a search at 300 videos in one
    channel took ~600 ms while it ran, 15-25 ms after), not what a channel that grew video by
    video answers in. Returns the seconds waited."""
    t0 = time.perf_counter()
    vs = svc.vectors
    for c in filter(None, (vs.text, vs.frames)):
        index = vs.client.list_indexes(c)[0]
        while True:
            info = vs.client.describe_index(c, index)
            if not info.get("pending_index_rows") and info.get("indexed_rows", 0) >= info.get("total_rows", 0):
                break
            if time.perf_counter() - t0 > limit_s:
                say(f"    index of {c} still pending after {limit_s:.0f} s: {info}")
                break
            time.sleep(1.0)
    return round(time.perf_counter() - t0, 1)


async def timed_asks(svc: Service, pick: Callable[[int], Scope], questions: list[str], n: int) -> list[float]:
    for i in range(3):  # warm-up
        await svc.ask(pick(-1 - i), questions[i % len(questions)])
    ms = []
    for i in range(n):
        scope = pick(i)
        t = time.perf_counter()
        await svc.ask(scope, questions[i % len(questions)])
        ms.append((time.perf_counter() - t) * 1000)
    return ms


async def paired_asks(svc: Service, scope: Scope, questions: list[str], n: int) -> tuple[list[float], list[float]]:
    """Each question asked with the hybrid first stage and dense-only, in alternating order: an
    ask embeds the titles of hit videos it has not seen yet (retrieve's title cache), and with
    1,000 titles whichever mode asked first paid for them (hybrid +166 ms p50 on Milvus Lite when it
    always went first)."""
    for i in range(3):  # warm-up
        await svc.ask(scope, questions[i % len(questions)])
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(n):
        for mode in ((True, False) if i % 2 == 0 else (False, True)):
            t = time.perf_counter()
            await ask(svc, scope, questions[i % len(questions)], mode)
            times[mode].append((time.perf_counter() - t) * 1000)
    return times[True], times[False]


async def rare_recall(svc: Service, scope: Scope, planted: list[Plant], hybrid: bool) -> float:
    """Share of the rare-word questions whose answer cites the planted moment in its top 3."""
    hits = 0
    for p in planted:
        answer = await ask(svc, scope, p.question, hybrid)
        hits += any(c.video_id == p.video and c.start <= p.end + RARE_SLACK and p.start <= c.end + RARE_SLACK
                    for c in answer.citations[:3])
    return hits / len(planted)


async def ask(svc: Service, scope: Scope, question: str, hybrid: bool) -> Answer:
    """`svc.ask` with the first stage hybrid (dense and full-text) or dense-only: the answer path
    the service runs, told which (`compose`'s `hybrid`)."""
    return await compose(svc.store(scope), question, svc.models, svc.chat, (), svc.settings.top_k, hybrid=hybrid)


async def measure_channels(name: str, settings: Settings, models: Models, src: Source, questions: list[str],
                           asks: int) -> dict[str, Any]:
    """CHANNELS channels of one short video each; asks in random channels. `name` suffixes the keys."""
    rng = np.random.default_rng(12)
    out: dict[str, Any] = {}
    channels = [Scope("console", "scale", f"ch{i:05d}") for i in range(CHANNELS)]
    async with Service.open(settings, models=models, chat=None) as svc:
        say(f"  {name}: Milvus {svc.vectors.uri} ({svc.vectors.layout} layout), catalog {svc.catalog.backend}")
        out[f"load_channels_s_{name}"] = round(await load_many(
            svc, [(sc, "v0", None) for sc in channels], src.first(CLIP_S), rng, f"{CHANNELS} channels"), 1)
    out[f"load_channels_s_{name}"] += await settle_lite(settings)
    async with Service.open(settings, models=models, chat=None) as svc:
        order = np.random.default_rng(3).integers(0, CHANNELS, asks + 3)
        ms = await timed_asks(svc, lambda i: channels[int(order[i])], questions, asks)
        out.update({f"channels_p50_ms_{name}": pct(ms, 50), f"channels_p95_ms_{name}": pct(ms, 95)})
        say(f"  {name}: {CHANNELS} channels, ask p50 {pct(ms, 50)} ms, p95 {pct(ms, 95)} ms")
        if svc.vectors.uri.startswith("http"):
            await asyncio.to_thread(drop_collections, svc)
    return out


async def measure_big(name: str, settings: Settings, models: Models, src: Source, questions: list[str],
                      asks: int) -> dict[str, Any]:
    """BIG_VIDEOS videos in one channel, ten with a planted rare word: ask latency with the hybrid
    first stage and dense-only, and rare-word recall@3 of each."""
    rng = np.random.default_rng(13)
    out: dict[str, Any] = {}
    big = Scope("console", "scale", "big")
    async with Service.open(settings, models=models, chat=None) as svc:
        say(f"  {name}: Milvus {svc.vectors.uri} ({svc.vectors.layout} layout), catalog {svc.catalog.backend}")
        extras, planted = await plants(svc, src)
        jobs = [(big, f"v{k:04d}", extras.get(f"v{k:04d}")) for k in range(BIG_VIDEOS)]
        out[f"load_big_s_{name}"] = round(await load_many(svc, jobs, src, rng, f"{BIG_VIDEOS} videos"), 1)
    out[f"load_big_s_{name}"] += await settle_lite(settings)
    async with Service.open(settings, models=models, chat=None) as svc:
        ms, dense = await paired_asks(svc, big, questions, asks)
        out.update({f"big_channel_p50_ms_{name}": pct(ms, 50), f"big_channel_p95_ms_{name}": pct(ms, 95)})
        say(f"  {name}: {BIG_VIDEOS} videos in one channel, ask p50 {pct(ms, 50)} ms, p95 {pct(ms, 95)} ms")
        out[f"rare_recall3_dense_{name}"] = await rare_recall(svc, big, planted, hybrid=False)
        out[f"rare_recall3_hybrid_{name}"] = await rare_recall(svc, big, planted, hybrid=True)
        out[f"hybrid_added_ms_{name}"] = round(pct(ms, 50) - pct(dense, 50), 1)
        say(f"  {name}: rare-word recall@3 dense {out[f'rare_recall3_dense_{name}']}, hybrid "
            f"{out[f'rare_recall3_hybrid_{name}']}; hybrid adds {out[f'hybrid_added_ms_{name}']} ms p50 "
            f"(dense-only p50 {pct(dense, 50)} ms, p95 {pct(dense, 95)} ms)")
        if svc.vectors.uri.startswith("http"):
            await asyncio.to_thread(drop_collections, svc)
    return out


def drop_collections(svc: Service) -> None:
    for c in filter(None, (svc.vectors.text, svc.vectors.frames)):
        svc.vectors.client.drop_collection(c)


# ---- the servers --------------------------------------------------------------------------------
def milvus_up(uri: str) -> bool:
    import urllib.request

    health = urlunsplit(urlsplit(uri)._replace(netloc=f"{urlsplit(uri).hostname}:9091", path="/healthz"))
    try:
        with urllib.request.urlopen(health, timeout=3) as r:  # noqa: S310 - a local URL we were given
            return r.status == 200
    except OSError:
        return False


@contextlib.asynccontextmanager
async def throwaway_database(url: str, tag: str) -> AsyncIterator[str | None]:
    """A database of its own on the PostgreSQL server at `url` (None when it does not answer),
    dropped on exit."""
    import psycopg

    name = f"vidrag_bench_{tag}"
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
            await conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as e:
        say(f"  PostgreSQL at {url} does not answer ({str(e).strip()[:120]})")
        yield None
        return
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---- ingest jobs per minute with 1 and 2 worker processes ---------------------------------------
def job_videos(media: Path) -> list[Path]:
    """JOB_VIDEOS short lectures (~15 s, three narrated slides, 640x360), rendered once."""
    media.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (title, line) in enumerate(JOB_TOPICS[:JOB_VIDEOS]):
        dst = media / f"job{i:02d}.mp4"
        if not dst.is_file():
            slides = [synth.Slide(title, (), line, hold=0.5),
                      synth.Slide(f"{title}, again", (), f"In short: {line}", hold=0.5),
                      synth.Slide("Summary", (), f"That was a short lecture about {title.lower()}.", hold=0.5)]
            synth.render(synth.Lecture(title, slides), dst, size="640x360")
        out.append(dst)
    return out


@dataclass
class WorkerProc:
    proc: asyncio.subprocess.Process
    log: Path

    async def started(self) -> None:
        deadline = time.monotonic() + 180  # imports and model loads of a cold start on a busy machine
        while "started: worker" not in (self.log.read_text(errors="replace") if self.log.exists() else ""):
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log.read_text(errors='replace')[-2000:]}")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_worker(home: Path, env: dict[str, str]) -> WorkerProc:
    home.mkdir(parents=True, exist_ok=True)
    log = home / "worker.log"
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    root = str(Path(__file__).resolve().parent.parent)
    with log.open("w") as err:  # cwd: the worker's own folder, so no `.env` of the checkout is read
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "worker", cwd=str(home), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=err,
            env={**keep, "PYTHONPATH": root, **env, "DATA_DIR": str(home / "data")})
    return WorkerProc(proc, log)


async def serve(root: Path) -> tuple[Any, str]:
    """`root`'s files over HTTP on 127.0.0.1 (the runner to clean up, and the base URL)."""
    from aiohttp import web

    from tests.fakes.serve import serve as serve_app

    app = web.Application()
    app.router.add_static("/", root)
    return await serve_app(app)


async def jobs_per_minute(settings: Settings, models: Models, env: dict[str, str], videos: list[Path],
                          base: str, workers: int, home: Path) -> dict[str, Any]:
    """Start `workers` worker processes, wait until each is up (models loaded), queue every video
    in a channel of its own, and time the queue from the first submit to the last job done."""
    procs = [await start_worker(home / f"w{workers}-{i}", env) for i in range(workers)]
    try:
        await asyncio.gather(*(p.started() for p in procs))
        async with Service.open(settings, models=models, chat=None) as svc:
            t0 = time.perf_counter()
            ids = [(await svc.submit(Scope("console", "scale-jobs", f"w{workers}-{i}"), f"{base}/{v.name}")).job.id
                   for i, v in enumerate(videos)]
            while True:
                rows = await svc.catalog.rows(
                    f"SELECT status FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids)  # noqa: S608
                if any(r["status"] == "dead" for r in rows):
                    raise RuntimeError(f"an ingest job failed: {rows}")
                if sum(r["status"] == "done" for r in rows) == len(ids):
                    break
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError(f"jobs not done after 600 s: {rows}")
                await asyncio.sleep(0.1)
            took = time.perf_counter() - t0
            per = {r["worker"]: 0 for r in await svc.catalog.rows(
                f"SELECT worker FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids)}  # noqa: S608
            for r in await svc.catalog.rows(f"SELECT worker FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids):  # noqa: S608
                per[r["worker"]] += 1
    finally:
        for p in procs:
            await p.stop()
    say(f"  {workers} worker(s): {len(ids)} jobs in {took:.1f} s = {len(ids) / took * 60:.1f} jobs/min "
        f"(jobs per worker: {sorted(per.values())})")
    return {f"jobs_per_min_{workers}": round(len(ids) / took * 60, 1), f"jobs_s_{workers}": round(took, 1)}


async def part_jobs(settings: Settings, models: Models, media: Path, work: Path) -> dict[str, Any]:
    videos = await asyncio.to_thread(job_videos, media)
    runner, base = await serve(media)
    env = {"DATABASE_URL": settings.database_url, "MILVUS_URI": settings.milvus_uri,
           "MILVUS_LAYOUT": settings.milvus_layout, "MILVUS_PREFIX": settings.milvus_prefix,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ALLOW_HOSTS": "127.0.0.1",
           "INGEST_WORKERS": "1", "LOG_LEVEL": "INFO", "CLIP_PRETRAINED": settings.clip_pretrained}
    chat = replace(settings, ingest_workers=0, allow_hosts=("127.0.0.1",), max_jobs_per_channel=100)
    out: dict[str, Any] = {}
    try:
        for n in (1, 2):
            out.update(await jobs_per_minute(chat, models, env, videos, base, n, work))
    finally:
        await runner.cleanup()
    return out


# ---- the part -----------------------------------------------------------------------------------
def worse(out: dict[str, Any]) -> None:
    """Each figure unsuffixed: the worse of the stores measured (recall: the lower)."""
    for key in ("channels_p50_ms", "channels_p95_ms", "big_channel_p50_ms", "big_channel_p95_ms",
                "hybrid_added_ms", "rare_recall3_dense", "rare_recall3_hybrid"):
        got = [v for k, v in out.items() if k.startswith(key + "_") and k.rsplit("_", 1)[1] in ("lite", "server")]
        if got:
            out[key] = min(got) if key.startswith("rare") else max(got)


async def part_scale(base: Settings, models: Models, source: tuple[Service, Scope, str], questions: list[str],
                     out_dir: Path, milvus_server: str, database_url: str, asks: int = ASKS,
                     channels: int = CHANNELS, videos: int = BIG_VIDEOS, job_videos: int = JOB_VIDEOS) -> dict[str, Any]:
    """The whole scale part: figures of Milvus Lite (with SQLite), of the Milvus server (with a
    PostgreSQL database of its own when one answers, else SQLite), and jobs per minute.
    `channels` and `videos` smaller than the defaults are for trying the bench out quickly."""
    global CHANNELS, BIG_VIDEOS, JOB_VIDEOS
    CHANNELS, BIG_VIDEOS, JOB_VIDEOS = channels, videos, job_videos
    t0 = time.perf_counter()
    src = await read_source(*source)
    say(f"  source: {len(src.chunks)} chunk vectors, {len(src.segments)} segments, {len(src.units)} units, "
        f"{len(src.frames)} frames per {src.duration:.0f}-s video; {len(src.first(CLIP_S).chunks)} chunks "
        f"in its first {CLIP_S:.0f} s")
    tag = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {}
    for part, layout, measure in (("channels", LITE_CHANNELS_LAYOUT, measure_channels), ("big", "auto", measure_big)):
        lite = replace(base, data_dir=out_dir / f"scale-lite-{part}", milvus_uri="", milvus_layout=layout,
                       database_url="")
        await asyncio.to_thread(shutil.rmtree, lite.data_dir, True)
        out.update(await measure("lite", lite, models, src, questions, asks))
        await asyncio.to_thread(shutil.rmtree, lite.data_dir, True)

    server_ok = bool(milvus_server) and await asyncio.to_thread(milvus_up, milvus_server)
    if not server_ok:
        say(f"  SKIPPED: the Milvus server sub-part and jobs per minute: no Milvus server answers at "
            f"{milvus_server or '(none given: --milvus-server URI)'}")
    async with contextlib.AsyncExitStack() as stack:
        pg = await stack.enter_async_context(throwaway_database(database_url, tag)) if database_url else None
        if server_ok:
            if pg is None:
                say("  the Milvus server sub-part runs on SQLite: no PostgreSQL (--database-url URL)")
            for part, measure in (("channels", measure_channels), ("big", measure_big)):
                server = replace(base, data_dir=out_dir / f"scale-server-{part}", milvus_uri=milvus_server,
                                 milvus_layout="auto", milvus_prefix=f"bench{tag}{part[0]}_", database_url=pg or "")
                await asyncio.to_thread(shutil.rmtree, server.data_dir, True)
                try:
                    out.update(await measure("server", server, models, src, questions, asks))
                finally:
                    await asyncio.to_thread(drop_prefixed, milvus_server, server.milvus_prefix)
                    await asyncio.to_thread(shutil.rmtree, server.data_dir, True)
                    if pg:
                        await wipe_database(pg)
            if pg is None:
                say("  SKIPPED: jobs per minute: no PostgreSQL answers (--database-url URL)")
            elif not JOB_VIDEOS:
                say("  SKIPPED: jobs per minute (--scale-jobs 0)")
            else:
                jobs = replace(base, data_dir=out_dir / "scale-jobs" / "chat", milvus_uri=milvus_server,
                               milvus_layout="key", milvus_prefix=f"bench{tag}j_", database_url=pg)
                try:
                    out.update(await part_jobs(jobs, models, out_dir / "media" / "scale-jobs", out_dir / "scale-jobs"))
                finally:
                    await asyncio.to_thread(drop_prefixed, milvus_server, jobs.milvus_prefix)
                    await asyncio.to_thread(shutil.rmtree, out_dir / "scale-jobs", True)
    worse(out)
    out["scale_s"] = round(time.perf_counter() - t0, 1)
    return out


async def wipe_database(url: str) -> None:
    """Empty the throwaway database between sub-parts (the next `Service.open` migrates it again)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")


def drop_prefixed(uri: str, prefix: str) -> None:
    from core.store.vectors import _pymilvus_client

    client = _pymilvus_client()(uri=uri)
    try:
        for c in client.list_collections():
            if c.startswith(prefix):
                client.drop_collection(c)
    finally:
        client.close()

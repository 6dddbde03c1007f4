"""A vidrag process for the crash tests: `python -m tests.reliability.worker_proc PLAN.json`.

`mode: crash` opens a Service on the plan's DATA_DIR, queues the plan's jobs and runs them all at
once; a job whose plan names a `pause` stage stops there (after writing `MARKERS/<channel>`) and
waits to be killed with SIGKILL. `mode: resume` is the restart: reconcile, run every job to its
end, then write a report of what the stores hold (read straight from Milvus, SQLite and the file
tree) to the plan's `report` path.

The pauses are installed here by wrapping three core methods, so the core carries no test hook:
`JobQueue.stage` (any reported stage: downloading, probing, extracting frames, transcribing,
indexing), `ScopedStore.put_frames` ("storing": the text vectors are in Milvus, the frames not yet)
and `JobQueue.complete` ("finishing": everything stored, the job not yet marked done).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from core.config import Settings  # noqa: E402
from core.jobs import JobQueue  # noqa: E402
from core.models import Scope  # noqa: E402
from core.service import JobEvent, Service  # noqa: E402
from core.store import ScopedStore  # noqa: E402


def scope(channel: str) -> Scope:
    return Scope("console", "local", channel)


def install_pauses(plan: dict, markers: Path) -> None:
    pauses = {j["channel"]: j["pause"] for j in plan["jobs"] if j.get("pause")}

    async def pause(channel: str) -> None:
        (markers / channel).write_text(str(os.getpid()))
        await asyncio.Event().wait()  # until SIGKILL

    stage, put_frames, complete = JobQueue.stage, ScopedStore.put_frames, JobQueue.complete

    async def stage_(self, job_id, st):  # noqa: ANN001
        await stage(self, job_id, st)
        job = await self.get(job_id)
        if job is not None and pauses.get(job.scope.channel) == st.value:
            await pause(job.scope.channel)

    async def put_frames_(self, video_id, *args):  # noqa: ANN001
        if pauses.get(self.scope.channel) == "storing":
            await pause(self.scope.channel)
        return await put_frames(self, video_id, *args)

    async def complete_(self, job, worker, **video):  # noqa: ANN001
        if pauses.get(job.scope.channel) == "finishing":
            await pause(job.scope.channel)
        return await complete(self, job, worker, **video)

    JobQueue.stage, ScopedStore.put_frames, JobQueue.complete = stage_, put_frames_, complete_  # type: ignore[method-assign]


async def report(svc: Service, channels: list[str]) -> dict:
    out: dict = {}
    vs = svc.vectors
    for ch in channels:
        sc = scope(ch)
        rows = {}
        for coll in filter(None, (vs.text, vs.frames)):
            got = vs.client.query(coll, filter='video_id != ""', output_fields=["id", "video_id"],
                                  partition_names=[sc.partition], limit=16384) \
                if sc.partition in set(vs.client.list_partitions(coll)) else []
            rows[coll] = [(r["id"], r["video_id"]) for r in got]
        cat = svc.catalog
        videos = [dict(r) for r in await cat.rows("SELECT id, status, error FROM videos WHERE scope=?", (sc.key,))]
        jobs = [dict(r) for r in await cat.rows("SELECT id, status, attempts, error FROM jobs WHERE scope=?",
                                                (sc.key,))]
        segs = (await cat.rows("SELECT COUNT(*) AS n FROM segments WHERE scope=?", (sc.key,)))[0]["n"]
        frames = (await cat.rows("SELECT COUNT(*) AS n FROM frames WHERE scope=?", (sc.key,)))[0]["n"]
        root = svc.settings.data_dir / "videos" / sc.partition
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
        out[ch] = {"text": rows[vs.text], "frames": rows.get(vs.frames or "", []), "videos": videos,
                   "jobs": jobs, "segments": segs, "frame_rows": frames, "files": files}
    return out


async def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    settings = Settings(data_dir=Path(plan["data_dir"]), clip_pretrained="random", ocr=False,
                        allow_hosts=tuple(plan.get("allow_hosts", ())), ingest_workers=len(plan["jobs"]),
                        max_jobs_per_channel=100)
    channels = [j["channel"] for j in plan["jobs"]]
    if plan["mode"] == "crash":
        markers = Path(plan["markers"])
        install_pauses(plan, markers)
        async with Service.open(settings, chat=None) as svc:
            for j in plan["jobs"]:
                if not j.get("submit_on_resume"):
                    await svc.submit(scope(j["channel"]), j["source"])
            svc.start_workers(len(plan["jobs"]))
            (markers / "_started").write_text(str(os.getpid()))
            await asyncio.Event().wait()
    events: list[dict] = []

    async def on_event(e: JobEvent) -> None:
        events.append({"channel": e.job.scope.channel, "stage": e.progress.stage.value,
                       "message": e.progress.message, "listened": e.listened})

    async with Service.open(settings, chat=None) as svc:
        svc.on_job_event(on_event)
        before = await report(svc, channels)
        counts = await svc.reconcile()
        after_reconcile = await report(svc, channels)
        svc.start_workers(len(plan["jobs"]))
        ids = [r["id"] for r in await svc.catalog.rows("SELECT id FROM jobs WHERE status IN ('queued','running')")]
        for j in plan["jobs"]:
            if j.get("submit_on_resume"):  # a control: the same video indexed with no crash
                ids.append((await svc.submit(scope(j["channel"]), j["source"])).job.id)
        outcomes = {}
        for job_id in ids:
            try:
                v = await asyncio.wait_for(svc.wait(job_id), 240)
                outcomes[job_id] = v.status.value
            except Exception as e:  # noqa: BLE001 - reported, asserted by the test
                outcomes[job_id] = f"error: {e}"
        final = await report(svc, channels)
    Path(plan["report"]).write_text(json.dumps({"reconcile": counts, "before": before,
                                                "after_reconcile": after_reconcile, "final": final,
                                                "events": events, "outcomes": outcomes}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

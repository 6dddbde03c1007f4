"""The command line, as score.py and a person use it: real processes, real stores."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import console, ffmpeg

VIDRAG = [sys.executable, "-m", "adapters.console"]


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "SLACK", "LLM", "MISTRAL"))}
    env.update(DATA_DIR=str(data), MILVUS_URI=str(data / "milvus.db"), HF_HUB_OFFLINE="1")
    return subprocess.run(VIDRAG + list(args), env=env, capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).parent.parent)


@pytest.mark.timeout(300)  # twelve vidrag processes, each loading what it needs, on a busy 2-core machine
def test_ingest_ask_videos_forget_with_json(tmp_path: Path, lecture) -> None:
    path, lec = lecture
    p = cli(tmp_path, "ingest", str(path), "--channel", "c1", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(out) == {"video_id", "title", "duration"} and out["title"] == "How volcanoes work"

    p = cli(tmp_path, "ask", "What kind of lava do shield volcanoes pour out?", "--channel", "c1", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr  # the answer alone: no INFO chatter (CLIP's state, migrations), no gRPC noise
    ans = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(ans) == {"answer", "citations", "frame"}
    c = ans["citations"][0]
    assert set(c) == {"video_id", "title", "start", "end", "url"} and c["video_id"] == out["video_id"]
    a, b = lec.times[3]
    assert c["start"] <= b and c["end"] >= a
    assert Path(ans["frame"]["path"]).is_file() and a - 0.5 <= ans["frame"]["time"] <= b + 0.5

    p = cli(tmp_path, "summary", "--channel", "c1", "--json")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(summary) == {"video_id", "title", "summary", "chapters"} and summary["video_id"] == out["video_id"]
    assert [c["title"] for c in summary["chapters"]] == [s.title for s in lec.slides]
    assert all(set(c) == {"start", "end", "title"} for c in summary["chapters"]) and "[0:" in summary["summary"]
    p = cli(tmp_path, "summary", "volcanoes", "--channel", "c1")
    assert p.returncode == 0 and "Chapters:" in p.stdout and "Magma chambers" in p.stdout, p.stdout
    p = cli(tmp_path, "ask", "What is this video about? Summarize it.", "--channel", "c1", "--json")
    about = json.loads(p.stdout.strip().splitlines()[-1])  # the summary, in ask's shape
    assert about["answer"].startswith(summary["summary"]) and "\n\nChapters:\n[0:00] How volcanoes work" in about["answer"]
    assert about["citations"] and about["frame"] is None

    # a screenshot of slide 3 (a crop of the video's own 1280x720 picture), and a picture of nothing
    shot, blank = tmp_path / "shot.png", tmp_path / "blank.webp"
    ffmpeg("-ss", f"{(a + b) / 2:.2f}", "-i", str(path), "-frames:v", "1", "-vf", "crop=1160:650:40:50", str(shot))
    ffmpeg("-f", "lavfi", "-i", "gradients=s=400x300:seed=3", "-frames:v", "1", str(blank))
    p = cli(tmp_path, "ask", "--image", str(shot), "--channel", "c1", "--json")
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    assert seen["answer"].startswith("That picture is from") and seen["citations"][0]["video_id"] == out["video_id"]
    assert seen["citations"][0]["start"] <= b and seen["citations"][0]["end"] >= a, seen
    assert Path(seen["frame"]["path"]).is_file() and a - 0.5 <= seen["frame"]["time"] <= b + 0.5
    p = cli(tmp_path, "ask", "--image", str(blank), "--channel", "c1")
    assert p.returncode == 0 and "I couldn't find that picture in this channel's videos." in p.stdout, p.stdout
    p = cli(tmp_path, "ask", "--image", str(path), "--channel", "c1")  # a video is not a picture
    assert p.returncode == 1 and "JPEG, PNG or WebP" in p.stderr and "Traceback" not in p.stderr

    p = cli(tmp_path, "videos", "--channel", "c1")
    assert out["video_id"] in p.stdout and "ready" in p.stdout
    assert "No videos" in cli(tmp_path, "videos", "--channel", "c2").stdout

    p = cli(tmp_path, "forget", out["video_id"], "--channel", "c1")
    assert p.returncode == 0 and "Forgot" in p.stdout
    p = cli(tmp_path, "ask", "lava?", "--channel", "c1", "--json")
    assert p.returncode == 1 and "No videos are indexed" in p.stderr and "Traceback" not in p.stderr


def test_bad_file_gives_one_clear_line(tmp_path: Path, bad_media) -> None:
    p = cli(tmp_path, "ingest", str(bad_media["text"]), "--channel", "c1")
    assert p.returncode == 1
    assert "isn't a video" in p.stderr and "Traceback" not in p.stderr


def test_chat_console_indexes_a_path_and_answers(tmp_path: Path, lecture) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "SLACK", "LLM", "MISTRAL"))}
    env.update(DATA_DIR=str(tmp_path), HF_HUB_OFFLINE="1")
    p = subprocess.run(VIDRAG + ["chat", "--channel", "c1"], input=f"{lecture[0]}\nWhy does molten rock rise?\n",
                       env=env, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent)
    assert p.returncode == 0, p.stderr
    assert "Indexed 'How volcanoes work'" in p.stdout
    assert "Sources:" in p.stdout and "Frame:" in p.stdout


async def test_starting_the_workers_again_does_not_add_loops(service) -> None:
    """The console's chat starts the worker at start-up and again with every video pasted in it;
    the loops used to pile up, one more per video."""
    def loops() -> int:
        return sum(1 for t in asyncio.all_tasks() if t.get_name().startswith("ingest-worker-") and not t.done())

    assert loops() == 1  # the fixture's
    for _ in range(3):
        service.start_workers(1)
    assert loops() == 1
    service.start_workers(2)
    assert loops() == 2


async def test_a_finished_job_leaves_nothing_in_memory(service, short_lectures) -> None:
    """A bot runs for weeks: what it holds of a job in memory (its followers, its waiters, its
    running task) goes when the job ends, whoever waited for it."""
    heard = []

    async def follow(p) -> None:  # noqa: ANN001
        heard.append(p.stage)

    sub = await service.submit(console("memory"), str(next(iter(short_lectures.values()))), on_progress=follow)
    assert len(service.runner.jobs) == 1
    await service.wait(sub.job.id)
    assert heard and len(service.runner.jobs) == 0

"""The command line when another vidrag process holds the data folder, or was killed mid-ingest:
real processes on one DATA_DIR (Milvus Lite + SQLite), as a person runs them."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_cli import VIDRAG

ROOT = Path(__file__).parent.parent
MID_INDEXING = ("frames", "transcribe", "ocr", "embed")  # Stage ids, as the catalog keeps them


def cli_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "SLACK", "LLM", "MISTRAL"))}
    env.update(DATA_DIR=str(data), MILVUS_URI=str(data / "milvus.db"), HF_HUB_OFFLINE="1")
    return env


def cli(data: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(VIDRAG + list(args), env=cli_env(data), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def readline(stream, timeout: float) -> str:  # noqa: ANN001
    """One line of a child's pipe, or "" when none comes within `timeout` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def job_stage(data: Path) -> tuple[str, str] | None:
    """(status, stage) of the one job in the catalog, read as a second process would."""
    if not (data / "catalog.db").exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{data / 'catalog.db'}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("SELECT status, stage FROM jobs").fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return None
    return (row[0], row[1]) if row else None


def test_second_process_on_a_held_data_dir_gets_one_sentence(tmp_path: Path) -> None:
    with subprocess.Popen(VIDRAG + ["chat", "--channel", "c1"], env=cli_env(tmp_path), cwd=ROOT, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as chat:
        try:
            assert "vidrag console" in readline(chat.stdout, 50)  # the console has opened DATA_DIR

            p = cli(tmp_path, "videos", "--channel", "c1")

            assert p.returncode != 0
            assert "Traceback" not in p.stderr and "Sorry, something went wrong" not in p.stderr
            last = p.stderr.strip().splitlines()[-1]
            assert last.startswith("Another vidrag process is using") and str(tmp_path) in last
            assert "MILVUS_URI" in last
        finally:
            chat.stdin.close()  # type: ignore[union-attr]  # end of input: the console quits
            chat.wait(30)
    assert chat.returncode == 0
    assert cli(tmp_path, "videos", "--channel", "c1").returncode == 0  # free again once the console quits


def kill_mid_indexing(data: Path, video: Path) -> None:
    """Start `vidrag ingest video` and SIGKILL it once it is extracting frames, transcribing or
    indexing: its job stays `running` under the dead process's lease (120 s by default)."""
    proc = subprocess.Popen(VIDRAG + ["ingest", str(video), "--channel", "c1"], env=cli_env(data), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while (state := job_stage(data)) is None or state[1] not in MID_INDEXING:
            assert proc.poll() is None, f"the ingest ended before it was killed: {state}"
            assert time.monotonic() < deadline, f"the ingest never reached indexing: {state}"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # vidrag and the ffmpeg it may be running
        proc.wait()
    assert job_stage(data)[0] == "running"  # type: ignore[index]


QUESTION = "What kind of lava do shield volcanoes pour out?"


# Three vidrag processes, each loading its models (an ingest killed mid-way, a second ingest of the
# whole lecture, an ask): about 40 s here, more on a loaded machine.
@pytest.mark.timeout(240)
def test_ingest_after_a_killed_ingest_resumes_at_once(tmp_path: Path, lecture) -> None:
    path, _ = lecture
    kill_mid_indexing(tmp_path, path)

    p = cli(tmp_path, "ingest", str(path), "--channel", "c1", timeout=90)  # the dead lease has 120 s to run
    assert p.returncode == 0, p.stderr
    assert "Indexed 'How volcanoes work'" in p.stdout and "already indexed" not in p.stdout

    p = cli(tmp_path, "ask", QUESTION, "--channel", "c1", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["citations"]
    p = cli(tmp_path, "videos", "--channel", "c1", "--json")
    assert [v["status"] for v in json.loads(p.stdout)] == ["ready"]


def test_ask_after_a_killed_ingest_says_how_to_finish_it(tmp_path: Path, lecture) -> None:
    path, _ = lecture
    kill_mid_indexing(tmp_path, path)

    for _ in range(2):  # the first ask re-queues the job; the second still says what to do
        p = cli(tmp_path, "ask", QUESTION, "--channel", "c1")
        assert p.returncode == 1 and "Traceback" not in p.stderr
        assert "still indexing" not in p.stderr and f"vidrag ingest {path}" in p.stderr
    p = cli(tmp_path, "videos", "--channel", "c1", "--json")
    assert [v["status"] for v in json.loads(p.stdout)] == ["queued"]  # not "indexing": nobody is

"""`python -m bot [worker|chat|web]` as an operator starts it: real processes with real stores.

Each role logs one start line and stops with status 0 on SIGTERM; a configuration a role cannot run
is refused with status 2 and one sentence; an adapter that crashes takes the whole process down
with status 1, after the other adapters and the stores have closed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.test_store import SERVER, _server_up

REPO = Path(__file__).resolve().parents[1]
START = "started: worker "


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    """A bare environment: no token or setting of the developer's shell, no `.env` (cwd is tmp)."""
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**keep, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "DATA_DIR": str(tmp / "data"), **extra}


def bot(tmp: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env_for(tmp, **env), cwd=tmp, input=stdin,
                          capture_output=True, text=True, timeout=120)


class Running:
    """A role started in the background; `wait_for` reads its log until a line shows up."""

    def __init__(self, tmp: Path, *args: str, **env: str) -> None:
        self.log = tmp / "bot.log"
        with self.log.open("w") as log:  # the child has its own copy of the descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", *args], env=env_for(tmp, **env), cwd=tmp,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text()[-3000:]}"
            time.sleep(0.2)
        return next(line for line in self.text().splitlines() if needle in line)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def milvus_server() -> str:
    if not _server_up():
        if os.environ.get("VIDRAG_REQUIRE_MILVUS_SERVER") == "1":
            pytest.fail(f"no Milvus server at {SERVER}, and VIDRAG_REQUIRE_MILVUS_SERVER=1")
        pytest.skip(f"no Milvus server at {SERVER} (start one: scripts/milvus-server.sh start)")
    return SERVER


# ---- refusals -----------------------------------------------------------------------------------
REFUSED = [
    (["chat"], {}, "needs DISCORD_TOKEN"),
    (["chat"], {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "INGEST_WORKERS": "0"},
     "need a Milvus server"),
    (["web"], {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, "SLACK_SIGNING_SECRET"),
    (["worker"], {}, "needs a Milvus server"),
    (["worker"], {"MILVUS_URI": "http://127.0.0.1:19530", "INGEST_WORKERS": "0"}, "would run no job"),
    ([], {"SLACK_BOT_TOKEN": "xoxb-1"}, "only part of it is set"),
    (["ingest"], {}, "Unknown role 'ingest'"),
]


@pytest.mark.parametrize(("args", "env", "words"), REFUSED, ids=[f"{a}-{w}" for a, _, w in REFUSED])
def test_configuration_a_role_cannot_run_is_refused_in_one_sentence(tmp_path: Path, args: list[str],
                                                                     env: dict[str, str], words: str) -> None:
    p = bot(tmp_path, *args, **env)
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and " ERROR bot: " in lines[0] and words in lines[0], p.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was opened


# ---- roles that run -----------------------------------------------------------------------------
def test_worker_logs_its_id_and_stores_and_stops_on_sigterm(tmp_path: Path) -> None:
    uri = milvus_server()
    run = Running(tmp_path, "worker", MILVUS_URI=uri, INGEST_WORKERS="2")
    line = run.wait_for(START)
    assert "vidrag worker started" in line and "2 ingest worker(s)" in line and "no chat connection" in line
    assert f"SQLite {tmp_path / 'data' / 'catalog.db'}" in line and f"vectors {uri}" in line
    assert run.stop() == 0, run.text()[-3000:]
    assert "stopping on a signal" in run.text() and "Traceback" not in run.text()


def test_web_serves_slack_http_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    run = Running(tmp_path, "web", SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s3cret", PORT=str(port))
    assert "Slack HTTP" in run.wait_for(START)
    run.wait_for(f"listening on :{port}")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=b'{"type":"url_verification"}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(req, timeout=10)  # noqa: S310 - a local URL
    unsigned.value.close()
    assert unsigned.value.code == 401  # the real adapter answers: signatures are checked
    assert run.stop(signal.SIGINT) == 0, run.text()[-3000:]


def test_chat_runs_the_adapters_whose_tokens_are_set(tmp_path: Path) -> None:
    run = Running(tmp_path, "chat", SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", PORT=str(free_port()))
    line = run.wait_for(START)
    assert "vidrag chat started" in line and "Slack HTTP" in line and "1 ingest worker(s)" in line
    assert run.stop() == 0, run.text()[-3000:]


def test_no_role_and_no_token_is_the_console(tmp_path: Path) -> None:
    p = bot(tmp_path, stdin="")
    assert p.returncode == 0, p.stderr
    assert "starting the console" in p.stderr and "vidrag console" in p.stdout


# ---- crashes ------------------------------------------------------------------------------------
def test_adapter_that_crashes_stops_the_process_non_zero(tmp_path: Path) -> None:
    with socket.socket() as taken:  # the web role's port is in use: the Slack adapter cannot bind
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the adapter binds 0.0.0.0 too
        taken.listen()
        p = bot(tmp_path, "web", SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s",
                PORT=str(taken.getsockname()[1]))
    assert p.returncode == 1, p.stderr
    assert "stopping: the Slack HTTP adapter crashed" in p.stderr and "address already in use" in p.stderr


TWO_ADAPTERS = """
import asyncio, sys
import bot.__main__ as m

async def crashes(svc, settings):
    await asyncio.sleep(0.5)
    raise ConnectionError("gateway closed")

async def serves(svc, settings):
    try:
        await asyncio.Event().wait()
    finally:
        print("other adapter closed", flush=True)

m.adapters_for = lambda role, settings: [m.Adapter("Flaky", crashes), m.Adapter("Steady", serves)]
sys.exit(asyncio.run(m.main([])))
"""


def test_one_adapter_crash_cancels_the_others_and_closes_the_stores(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-c", TWO_ADAPTERS], env=env_for(tmp_path), cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "stopping: the Flaky adapter crashed: ConnectionError('gateway closed')" in p.stderr
    assert p.stdout.splitlines() == ["other adapter closed"]  # cancelled, not left running
    assert "MilvusLite server stopped" in p.stderr  # the stores closed after the adapters


# ---- deployment files ---------------------------------------------------------------------------
def test_procfile_runs_the_three_roles() -> None:
    procs = dict(line.split(": ", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip())
    assert procs == {"worker": "python -m bot worker", "chat": "python -m bot chat", "web": "python -m bot web"}


def test_compose_is_valid_and_uses_real_settings() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "milvus", "vllm", "chat", "worker"} <= set(services)
    assert services["chat"]["command"] == ["python", "-m", "bot", "chat"]
    assert services["worker"]["command"] == ["python", "-m", "bot", "worker"]
    known = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
             if line and not line.startswith("#")}
    for name in ("chat", "worker"):
        env = set(services[name].get("environment", {}))
        assert env <= known, f"{name} sets variables vidrag does not read: {env - known}"
        assert {"DATABASE_URL", "MILVUS_URI"} <= env

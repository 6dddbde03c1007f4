"""Servers of a test's own, to stop, restart and kill: the shared PostgreSQL and Milvus server that
scripts/test.sh starts serve every other test at once, so a test that takes a server down brings
up its own.

- `PrivatePostgres`: a throw-away cluster on a free port (scripts/postgres.sh with its own PG_PORT
  and PG_STATEFILE), restarted with `pg_ctl restart -m fast` as an operator would for a minor
  upgrade, or stopped and started again with its data.
- `LiteServer`: `milvus-lite server` on a free port of 127.0.0.1, a Milvus that speaks the server's
  protocol and starts in about a second: what a test kills to see the client heal.
- `NetnsMilvus`: the real Milvus 2.3 standalone (PyPI `milvus`), in a network namespace of its
  own. Two such servers on one host collide on their embedded etcd (2379) and health port (9091)
  even with different proxy ports, and the shared one holds those; in its own namespace (`ip netns
  add`, a veth pair with a /30 of 10.213.0.0/16) it has its own ports, and processes of the host
  reach it at its veth address. Killed with SIGKILL and started again on the same data, it waits
  for its previous etcd session to expire: `common.session.ttl` is cut from 30 to 10 s for that.

All need root (the cluster belongs to the `postgres` user; namespaces and veth pairs are root's).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_root() -> bool:
    return os.geteuid() == 0


# ---- PostgreSQL ---------------------------------------------------------------------------------
class PrivatePostgres:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.statefile = tmp / "pg.state"
        self.env = {**os.environ, "PG_PORT": str(self.port), "PG_STATEFILE": str(self.statefile)}
        self.url = ""

    def _script(self, *args: str) -> str:
        p = subprocess.run([str(REPO / "scripts" / "postgres.sh"), *args], env=self.env, capture_output=True,
                           text=True, timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    def start(self) -> str:
        self.url = self._script("start")
        return self.url

    def destroy(self) -> None:
        self._script("stop")

    def _pg_ctl(self, action: str) -> None:
        home = self.statefile.read_text().strip()
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        opts = f"-h 127.0.0.1 -p {self.port} -k {home} -c fsync=off -c max_connections=200"
        cmd = f"{bindir}/pg_ctl -D {home}/data -m fast -w -l {home}/log -o '{opts}' {action}"
        p = subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", cmd], capture_output=True, text=True,
                           timeout=120, check=False)
        assert p.returncode == 0, p.stdout + p.stderr

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is ended, the server is back within a second."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        self._pg_ctl("stop")

    def resume(self) -> None:
        self._pg_ctl("start")


# ---- Milvus Lite's server -----------------------------------------------------------------------
class LiteServer:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "milvus-lite"), "server", "--data-dir", str(self.data), "--host", "127.0.0.1",
             "--port", str(self.port)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, "milvus-lite server exited at start-up"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert time.monotonic() < deadline, "milvus-lite server did not listen within 60 s"
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# ---- a Milvus 2.3 server in a network namespace ---------------------------------------------------
def netns_available() -> bool:
    return is_root() and shutil.which("ip") is not None and (BIN / "milvus-server").exists()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class NetnsMilvus:
    COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")

    def __init__(self, data: Path, session_ttl: int = 10) -> None:
        n = random.randrange(1, 16000)  # noqa: S311 - a free subnet, not a secret
        self.name = f"vidrag-mv{n}"
        a, b = divmod(n * 4, 256)
        self.host_ip, self.ns_ip = f"10.213.{a}.{b + 1}", f"10.213.{a}.{b + 2}"
        self.uri = f"http://{self.ns_ip}:19530"
        self.data = data
        self.log = data.parent / f"{self.name}.log"
        self.session_ttl = session_ttl
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def create(self) -> None:
        veth = self.name[-10:]
        _ip("netns", "add", self.name)
        _ip("link", "add", f"h{veth}", "type", "veth", "peer", "name", f"n{veth}")
        _ip("link", "set", f"n{veth}", "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", f"h{veth}")
        _ip("link", "set", f"h{veth}", "up")
        _ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", f"n{veth}")
        _ip("netns", "exec", self.name, "ip", "link", "set", f"n{veth}", "up")
        _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    def healthy(self) -> bool:
        """The wrapper prints its banner once its health check passed, after every start (its
        health port moves off 9091 on a restart, when the old port is still in TIME_WAIT)."""
        return self.log.exists() and self.log.read_text(errors="replace").count("Ctrl+C to exit") >= self.starts

    def start(self, wait: bool = True) -> None:
        extra = [a for c in self.COMPONENTS for a in ("--extra-config", f"{c}.ip=127.0.0.1")]
        extra += ["--extra-config", f"common.session.ttl={self.session_ttl}"]
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.name, str(BIN / "milvus-server"), "--data", str(self.data),
                 "--proxy-port", "19530", *extra], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 180) -> float:
        t0 = time.monotonic()
        while not self.healthy():
            assert self.proc is not None and self.proc.poll() is None, f"milvus exited:\n{self.tail()}"
            assert time.monotonic() - t0 < timeout, f"milvus not healthy in {timeout} s:\n{self.tail()}"
            time.sleep(0.25)
        return time.monotonic() - t0

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the whole process group: the wrapper, etcd and the standalone binary."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # SIGTERM would orphan the server process
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def destroy(self) -> None:
        self.stop()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "link", "del", f"h{self.name[-10:]}"], capture_output=True, timeout=30, check=False)

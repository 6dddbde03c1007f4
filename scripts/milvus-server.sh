#!/usr/bin/env bash
# Start or stop a real Milvus standalone server (PyPI `milvus==2.3.5`, bundled binaries; nothing
# downloaded at run time) on 127.0.0.1:19530 for tests and benchmarks.
#
#   scripts/milvus-server.sh start [DATA_DIR]   # waits for http://127.0.0.1:9091/healthz
#   scripts/milvus-server.sh stop               # SIGINT: SIGTERM would orphan the server process
#   scripts/milvus-server.sh status             # exit 0 when one answers on /healthz
#
# Every component is pinned to 127.0.0.1 (otherwise they talk over a non-loopback address, which
# some machines forbid). The pid goes to $MILVUS_PIDFILE (default /tmp/vidrag-milvus.pid).
set -euo pipefail
cd "$(dirname "$0")/.."
PIDFILE=${MILVUS_PIDFILE:-/tmp/vidrag-milvus.pid}
LOG=${MILVUS_LOG:-/tmp/vidrag-milvus.log}
PORT=${MILVUS_PORT:-19530}

healthy() { .venv/bin/python - <<'PY'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:9091/healthz", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

case "${1:-}" in
  start)
    if healthy; then echo "milvus: already running on 127.0.0.1:$PORT"; exit 0; fi
    [ -x .venv/bin/milvus-server ] || .venv/bin/pip install -q --disable-pip-version-check \
        -c constraints-cpu.txt "milvus==2.3.5"
    data=${2:-${MILVUS_DATA:-$(mktemp -d /tmp/vidrag-milvus.XXXXXX)}}
    extra=()
    for c in rootCoord proxy queryCoord queryNode indexNode dataCoord dataNode; do
      extra+=(--extra-config "$c.ip=127.0.0.1")
    done
    # setsid: its own process group, so a Ctrl-C in the calling shell does not reach it
    setsid .venv/bin/milvus-server --data "$data" --proxy-port "$PORT" "${extra[@]}" >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 120); do
      if healthy; then echo "milvus: up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), data $data)"; exit 0; fi
      kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "milvus: exited during start-up" >&2; tail -20 "$LOG" >&2; exit 1; }
      sleep 1
    done
    echo "milvus: not healthy after 120 s" >&2; tail -20 "$LOG" >&2; exit 1
    ;;
  stop)
    [ -f "$PIDFILE" ] || { echo "milvus: no pid file"; exit 0; }
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill -INT "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && { echo "milvus: still running after SIGINT, sending SIGKILL" >&2; kill -KILL "$pid"; }
    fi
    rm -f "$PIDFILE"; echo "milvus: stopped"
    ;;
  status) healthy ;;
  *) echo "usage: $0 start [DATA_DIR] | stop | status" >&2; exit 2 ;;
esac

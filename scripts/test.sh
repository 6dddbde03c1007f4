#!/usr/bin/env bash
# Install what the tests need, then run them. pytest's exit 5 ("no tests collected") is a failure
# here: a suite that runs nothing must not pass.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
echo "setup: ${SECONDS} s"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The type checker first: a wrong field or a changed signature fails here in seconds.
.venv/bin/mypy core adapters bot || exit 1
# A real Milvus server (PyPI milvus==2.3.5) for the server variant of tests/test_store.py; started
# here unless one already answers (then it is left alone), stopped with SIGINT when pytest ends.
if [ -z "${MILVUS_SERVER_URI:-}" ] && ! scripts/milvus-server.sh status; then
  scripts/milvus-server.sh start || exit 1
  MILVUS_STARTED=1
  trap 'scripts/milvus-server.sh stop' EXIT
fi
export VIDRAG_REQUIRE_MILVUS_SERVER=1
# A throw-away PostgreSQL cluster (Debian's package, installed when missing) for the catalog and
# job-queue tests that run on both backends; each test creates and drops its own database.
if [ -z "${VIDRAG_TEST_DATABASE_URL:-}" ]; then
  if scripts/postgres.sh status; then
    VIDRAG_TEST_DATABASE_URL=postgresql://vidrag@127.0.0.1:${PG_PORT:-54329}/postgres
  else
    VIDRAG_TEST_DATABASE_URL=$(scripts/postgres.sh start) || exit 1
    trap 'scripts/postgres.sh stop; [ -n "${MILVUS_STARTED:-}" ] && scripts/milvus-server.sh stop' EXIT
  fi
fi
export VIDRAG_TEST_DATABASE_URL VIDRAG_REQUIRE_POSTGRES=1
# The whole suite runs in four pytest runs (on a shared 2-core machine much of the suite waits on
# processes and servers rather than computing, so the first three overlap):
#  1. every test but those below, in two processes (pytest-xdist; each gets whole modules, so a
#     module's fixtures are built once), beside
#  2. in the background, the Milvus-server tests (tests/test_store.py, tests/test_vectors.py:
#     mostly waiting on the server's flushes), and beside them
#  3. the tests marked `processes` (the chaos, two-host and crash tests: vidrag processes on leases
#     and deadlines, one module at a time, each on servers of its own); the output of 2 and 3 is
#     shown when they end; then
#  4. the tests marked `alone` (they measure the event loop's gaps and the bot's RSS), with nothing
#     beside them.
# The arguments go to every run. Naming tests (a path or a node id), or VIDRAG_TEST_SERIAL=1, runs
# them in one plain pytest instead.
PYTEST=(.venv/bin/python -m pytest)
SERVER=(tests/test_store.py tests/test_vectors.py)
serial=${VIDRAG_TEST_SERIAL:-0}
for a in "$@"; do case "$a" in tests*|*.py|*::*) serial=1 ;; esac; done
if [ "$serial" = 1 ]; then
  "${PYTEST[@]}" "$@"
  codes=($?)
else
  codes=()
  side=$(mktemp -d)  # the background lanes' output, exit codes and pytest temp folders
  start=$SECONDS
  lane() {  # lane N ARGS...: pytest ARGS in the background; its output, exit code and end in $side
    local n=$1; shift
    ( "${PYTEST[@]}" --basetemp="$side/tmp$n" "$@"; echo $? >"$side/code$n"; echo $((SECONDS - start)) >"$side/s$n"
    ) >"$side/log$n" 2>&1 &
  }
  lane 1 -m "not alone and not processes" "${SERVER[@]}" "$@"
  server_lane=$!
  lane 2 -m processes --durations=5 "$@"
  processes_lane=$!
  trap 'kill "$server_lane" "$processes_lane" 2>/dev/null; exit 130' INT TERM
  "${PYTEST[@]}" -n 2 --dist loadscope -m "not alone and not processes" "${SERVER[@]/#/--ignore=}" "$@"
  codes+=($?)
  main_s=$((SECONDS - start))
  wait $server_lane $processes_lane
  echo "lanes: the main run ${main_s} s, the server tests $(cat "$side/s1" 2>/dev/null) s," \
       "the processes tests $(cat "$side/s2" 2>/dev/null) s"
  codes+=("$(cat "$side/code1" 2>/dev/null || echo 1)" "$(cat "$side/code2" 2>/dev/null || echo 1)")
  echo "--- ${SERVER[*]} (ran beside the run above)"
  cat "$side/log1"
  echo "--- the tests marked processes (ran beside the run above)"
  cat "$side/log2"
  rm -rf "$side"
  "${PYTEST[@]}" -m alone --durations=8 "$@"  # the slowest alone tests named: they set the run's length
  codes+=($?)
  echo "test.sh: ${SECONDS} s in all"
fi
# pytest's exit 5 is "no tests collected": fine for one run (a -k that matches none of its tests),
# a failure when no run collected any
ran=0
for code in "${codes[@]}"; do
  case $code in 0) ran=1 ;; 5) ;; *) exit "$code" ;; esac
done
if [ $ran -eq 0 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit 0

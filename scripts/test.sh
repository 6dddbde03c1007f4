#!/usr/bin/env bash
# Install what the tests need, then run them. pytest's exit 5 ("no tests collected") is a failure
# here: a suite that runs nothing must not pass.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
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
# The whole suite runs in three pytest runs (about 10 min instead of 15 on a shared 2-core machine,
# where much of the suite waits on processes and servers rather than computing):
#  1. every test but those below, in two processes (pytest-xdist; each gets whole modules, so a
#     module's fixtures are built once), beside
#  2. the Milvus-server tests (tests/test_store.py, tests/test_vectors.py: mostly waiting on the
#     server's flushes) in the background, their output shown when they end; then
#  3. the tests marked `alone` (the crash and two-host tests' vidrag processes, the event loop's
#     gaps while indexing), one at a time with nothing beside them.
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
  side=$(mktemp -d)  # the background run's output and its own pytest temp folder
  "${PYTEST[@]}" -m "not alone" --basetemp="$side/tmp" "${SERVER[@]}" "$@" >"$side/log" 2>&1 &
  server=$!
  trap 'kill "$server" 2>/dev/null; exit 130' INT TERM
  "${PYTEST[@]}" -n 2 --dist loadscope -m "not alone" "${SERVER[@]/#/--ignore=}" "$@"
  codes+=($?)
  wait $server
  codes+=($?)
  echo "--- ${SERVER[*]} (ran beside the run above)"
  cat "$side/log"
  rm -rf "$side"
  "${PYTEST[@]}" -m alone --durations=8 "$@"  # the slowest alone tests named: they set the run's length
  codes+=($?)
fi
# pytest's exit 5 is "no tests collected": fine for one run (a -k that matches none of its tests),
# a failure when no run collected any
ran=0
for code in "${codes[@]}"; do
  case $code in 0) ran=1 ;; 5) ;; *) exit "$code" ;; esac
done
if [ $ran -eq 0 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit 0

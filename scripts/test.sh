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
.venv/bin/python -m pytest "$@"
code=$?
if [ $code -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $code

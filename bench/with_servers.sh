#!/usr/bin/env bash
# Run a command (make bench) with the Milvus server and PostgreSQL that bench's scale part measures
# (bench/scale.py): each is started with its script (scripts/milvus-server.sh, scripts/postgres.sh)
# unless one already answers, and stopped afterwards only if started here, as scripts/test.sh does.
# One that cannot start is left out: the bench skips its sub-parts with a line saying so.
set -uo pipefail
cd "$(dirname "$0")/.."
started=()
cleanup() { for s in "${started[@]}"; do "scripts/$s.sh" stop >&2 || true; done; }
trap cleanup EXIT
if [ -z "${BENCH_MILVUS_SERVER:-}" ]; then
  if scripts/milvus-server.sh status || { scripts/milvus-server.sh start >&2 && started+=(milvus-server); }; then
    export BENCH_MILVUS_SERVER=http://127.0.0.1:${MILVUS_PORT:-19530}
  else
    echo "bench: no Milvus server (scripts/milvus-server.sh start failed)" >&2
  fi
fi
if [ -z "${BENCH_DATABASE_URL:-}" ]; then
  if scripts/postgres.sh status; then
    export BENCH_DATABASE_URL=postgresql://vidrag@127.0.0.1:${PG_PORT:-54329}/postgres
  elif url=$(scripts/postgres.sh start); then
    started+=(postgres)
    export BENCH_DATABASE_URL=$url
  else
    echo "bench: no PostgreSQL (scripts/postgres.sh start failed)" >&2
  fi
fi
"$@"

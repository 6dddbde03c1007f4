#!/usr/bin/env bash
# Install what the tests need, then run them. pytest's exit 5 ("no tests collected") is a failure
# here: a suite that runs nothing must not pass.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# A real Milvus server (PyPI milvus==2.3.5) for the server variant of tests/test_store.py; started
# here unless one already answers (then it is left alone), stopped with SIGINT when pytest ends.
if [ -z "${MILVUS_SERVER_URI:-}" ] && ! scripts/milvus-server.sh status; then
  scripts/milvus-server.sh start || exit 1
  trap 'scripts/milvus-server.sh stop' EXIT
fi
export VIDRAG_REQUIRE_MILVUS_SERVER=1
.venv/bin/python -m pytest "$@"
code=$?
if [ $code -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $code

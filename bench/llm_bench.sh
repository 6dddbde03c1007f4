#!/usr/bin/env bash
# The benchmark with answer latency through vLLM + Pixtral: on a GPU machine, start the server
# (bench/vllm_serve.sh), wait until it answers, then run `make bench` with --llm pointed at it.
#
#   bench/llm_bench.sh                      # starts vLLM here, benchmarks, stops it
#   LLM_URL=http://gpu-host:8000/v1 bench/llm_bench.sh   # a server that already runs elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
url=${LLM_URL:-}
if [ -z "$url" ]; then
  url=http://127.0.0.1:${PORT:-8000}/v1
  bench/vllm_serve.sh >/tmp/vllm.log 2>&1 &
  vllm_pid=$!
  trap 'kill -INT $vllm_pid 2>/dev/null; wait $vllm_pid 2>/dev/null' EXIT
  echo "waiting for vLLM on $url (weights load in minutes; log: /tmp/vllm.log)"
  for _ in $(seq 1 180); do
    curl -sf "${url%/v1}/health" >/dev/null && break
    kill -0 $vllm_pid 2>/dev/null || { tail -30 /tmp/vllm.log; exit 1; }
    sleep 5
  done
fi
make bench BENCH_ARGS="--llm $url --llm-model ${LLM_MODEL:-mistralai/Pixtral-12B-2409} ${BENCH_ARGS:-}"

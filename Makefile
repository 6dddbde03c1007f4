# The two commands of the README: `make demo` (install, then index a generated lecture and ask
# about it) and `make test` (install, then run the test suite).
.PHONY: demo test setup lint typecheck bench

setup:
	./scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/vidrag demo --channel demo

test:
	./scripts/test.sh -q

lint: setup
	.venv/bin/ruff check bot core adapters tests

typecheck: setup
	.venv/bin/mypy core bot adapters

# Benchmarks (issue 8): vidrag against the seed recipe, retrieval latency, loop lag, memory.
# Offline, CPU only, < 20 min; prints tables and one final JSON line (docs/benchmarks.md).
# BENCH_ARGS="--llm http://host:8000/v1" adds answer latency through an OpenAI-compatible server.
bench: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.run $(BENCH_ARGS)

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

# Benchmarks (issues 8, 12, 13, 15): vidrag against the seed recipe, retrieval latency, loop lag,
# memory, and the scale part (5,000 channels, 1,000 videos in a channel, rare words, jobs per minute
# with 1 and 2 workers) on Milvus Lite and on the Milvus server and PostgreSQL that
# bench/with_servers.sh starts when none answers. Offline, CPU only, < 30 min; prints tables and one
# final JSON line (docs/benchmarks.md).
# BENCH_ARGS="--llm http://host:8000/v1" adds answer latency through an OpenAI-compatible server;
# BENCH_ARGS="--no-scale" leaves the scale part out, "--only scale" runs it alone.
bench: setup
	HF_HUB_OFFLINE=1 ./bench/with_servers.sh .venv/bin/python -m bench.run $(BENCH_ARGS)

# The two commands of the README: `make demo` (install, then index a generated lecture and ask
# about it) and `make test` (install, then run the test suite).
.PHONY: demo test setup lint

setup:
	./scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/vidrag demo --channel demo

test:
	./scripts/test.sh -q

lint: setup
	.venv/bin/ruff check bot core adapters tests

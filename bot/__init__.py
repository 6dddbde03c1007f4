"""vidrag's entry point: `python -m bot` starts every adapter whose tokens are set."""

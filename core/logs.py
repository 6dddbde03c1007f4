"""Logging, set up once per process by its entry point (`python -m bot`, `vidrag`): what the
operator reads, without the chatter of the libraries underneath.

- LOG_LEVEL unset: INFO for the bot (a service's log), WARNING for the command line, whose output
  is its answer (`vidrag ask` printed the catalog's migrations and CLIP's state before it).
- gRPC's C core writes straight to stderr (Milvus Lite's in-process server answers pymilvus'
  keep-alive pings with "too_many_pings" GOAWAY lines after long idle periods): silenced unless
  GRPC_VERBOSITY is set or LOG_LEVEL is DEBUG. It reads the variable when it starts, so this module
  sets it on import, and the entry points import it before anything that imports grpc.
- Milvus Lite's gRPC server logs a traceback for every method it does not implement
  (`AllocTimestamp`, asked by pymilvus when a collection is created): harmless, filtered out.
"""

from __future__ import annotations

import logging
import os
import sys

from core.config import Settings, SettingsError

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

QUIET = ("httpx", "discord.gateway", "slack_bolt", "slack_sdk", "sentence_transformers", "grpc")


class _Unimplemented(logging.Filter):
    """Drops Milvus Lite's "Method not implemented!" tracebacks from grpc._server."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage() and "AllocTimestamp" not in record.getMessage()


def start(command_line: bool = False) -> Settings | None:
    """An entry point's first step: the settings from the environment, then logging set up by
    them; None (each problem printed as one line on stderr) when the settings are wrong."""
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        for problem in e.problems:
            print(f"vidrag: {problem}", file=sys.stderr)
        return None
    setup(settings.log_level, command_line)
    return settings


def setup(level: str, command_line: bool = False) -> None:
    """Configure the root logger once: `level` (LOG_LEVEL; empty: INFO, WARNING on the command line)."""
    chosen = level or ("WARNING" if command_line else "INFO")
    logging.basicConfig(level=chosen, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.DEBUG if chosen == "DEBUG" else logging.WARNING)
    logging.getLogger("grpc._server").addFilter(_Unimplemented())
    if chosen == "DEBUG" and os.environ.get("GRPC_VERBOSITY") == "NONE":
        os.environ["GRPC_VERBOSITY"] = "ERROR"

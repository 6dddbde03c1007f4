"""A loop-blocking detector on every test (a pytest plugin, loaded by tests/conftest.py).

vidrag serves every channel from one event loop, so one blocking call on it stalls them all
(STYLE.md rule 6). blockbuster replaces the blocking functions of the standard library —
`time.sleep`, socket and SSL I/O on blocking sockets, sqlite3, file reads and writes, lock waits,
`input` — with wrappers that raise `BlockingError` when they are called from a thread whose event
loop is running. Code in `asyncio.to_thread`, an executor or a plain thread is not touched.

Two gaps of blockbuster 1.5 are closed here: name resolution (`socket.getaddrinfo` and friends,
the call a slow resolver turns into a stall of every channel) and waiting for a child process
(`os.waitpid` without `WNOHANG`, i.e. `subprocess.run` on the loop).

A `BlockingError` raised deep inside the service can be swallowed by the code under test (a job
that fails is reported, not raised), so each one is also recorded with its stack, and the test
errors at teardown when any was recorded, naming the call and where it came from.

Allowed, each for a stated reason (`ALLOWED`, `HARMLESS`); a test that must block on purpose is
marked `@pytest.mark.allow_blocking("why")`.
"""

from __future__ import annotations

import os
import socket
import stat
import traceback
from collections.abc import Iterator
from typing import Any

import blockbuster.blockbuster as bb_mod
import pytest
from blockbuster import BlockBuster, BlockBusterFunction, BlockingError

# Metadata calls on the local disk (stat, mkdir, unlink, listdir, ...) cost microseconds; the
# project decided they may run on the loop (ruff's ASYNC240 is off for the same reason). What
# blocks for real — reading or writing file contents, the network, sleeping, waiting — stays on.
HARMLESS = {
    "os.stat", "os.mkdir", "os.rmdir", "os.remove", "os.unlink", "os.rename", "os.replace",
    "os.listdir", "os.scandir", "os.access", "os.getcwd", "os.readlink", "os.link", "os.symlink",
    "os.path.islink", "os.path.abspath", "os.path.ismount", "os.path.samestat", "os.path.sameopenfile",
}

# (file suffix, functions) in whose stack a blocking call is allowed, and why.
ALLOWED: dict[str, list[tuple[str, set[str]]]] = {
    # Python's import system reads module source on first import; an import happens once per
    # process, and a lazy import inside a coroutine is not what this detector is for.
    "io.BufferedReader.read": [("<frozen importlib._bootstrap_external>", {"get_data"}),
                               ("<frozen importlib._bootstrap>", {"_find_and_load"})],
    "io.TextIOWrapper.read": [("<frozen importlib._bootstrap>", {"_find_and_load"})],
    # asyncio's own start-up of a child process (fork + exec handshake over a pipe) is built to
    # run on the loop.
    "os.waitpid": [("asyncio/unix_events.py", {"_do_waitpid", "_do_wait"})],
}


# File contents read or written on the loop in one call: up to this many bytes is a page-cache copy
# of microseconds (a subtitle file, a 64 KiB download chunk); past it the call counts as blocking.
FILE_IO_LIMIT = 256 * 1024


def _small_read(file: Any, size: int | None = -1, *_: Any, **__: Any) -> bool:
    """True when a read on the loop is known to be short: from a regular file, a sized read under
    the limit or a read-to-end whose remainder is under it. A pipe may wait forever: blocking,
    unless it is in non-blocking mode."""
    try:
        fd = file.fileno()
    except (OSError, ValueError, AttributeError):
        return True  # not a file descriptor (an in-memory buffer): nothing to wait for
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return not os.get_blocking(fd)
        if size is not None and 0 <= size <= FILE_IO_LIMIT:
            return True
        return st.st_size - os.lseek(fd, 0, os.SEEK_CUR) <= FILE_IO_LIMIT
    except OSError:
        return False


def _small_write(file: Any, data: Any = b"", *_: Any, **__: Any) -> bool:
    """True when a write on the loop is under the limit (or goes to a terminal or memory)."""
    try:
        file.fileno()
    except (OSError, ValueError, AttributeError):
        return True
    return len(data) <= FILE_IO_LIMIT


class RecordedBlockingError(BlockingError):
    """A BlockingError that also remembers itself, so a swallowed one still fails the test."""

    seen: list[str] = []

    def __init__(self, func: str) -> None:
        super().__init__(func)
        stack = "".join(traceback.format_stack(limit=14)[:-1])
        RecordedBlockingError.seen.append(f"Blocking call to {func} on the event loop:\n{stack}")


def _name_resolution(name: str) -> BlockBusterFunction:
    return BlockBusterFunction(socket, name)


def _waitpid_blocks(pid: int, options: int, *_: Any, **__: Any) -> bool:
    return bool(options & os.WNOHANG)


def detector() -> BlockBuster:
    """A BlockBuster over every module, with name resolution and child waits added and the
    harmless metadata calls removed."""
    bb_mod.BlockingError = RecordedBlockingError  # type: ignore[misc]
    bb = BlockBuster()
    for name in HARMLESS:
        bb.functions.pop(name, None)
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        bb.functions[f"socket.{name}"] = _name_resolution(name)
    for name in ("io.BufferedReader.read", "io.BufferedRandom.read", "io.TextIOWrapper.read"):
        bb.functions[name].can_block_predicate = _small_read
    for name in ("io.BufferedWriter.write", "io.BufferedRandom.write", "io.TextIOWrapper.write"):
        bb.functions[name].can_block_predicate = _small_write
    bb.functions["os.waitpid"] = BlockBusterFunction(None, "os.waitpid", can_block_predicate=_waitpid_blocks)
    for name, places in ALLOWED.items():
        for filename, functions in places:
            bb.functions[name].can_block_in(filename, functions)
    return bb


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_blocking(reason): this test may block the event loop on purpose")


@pytest.fixture(autouse=True)
def no_blocking_on_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test when anything it ran on the event loop made a blocking call."""
    if request.node.get_closest_marker("allow_blocking"):
        yield
        return
    bb = detector()
    RecordedBlockingError.seen.clear()
    bb.activate()
    try:
        yield
    finally:
        bb.deactivate()
    if RecordedBlockingError.seen:
        found = RecordedBlockingError.seen[:]
        RecordedBlockingError.seen.clear()
        pytest.fail(f"{len(found)} blocking call(s) on the event loop; the first:\n{found[0]}", pytrace=False)

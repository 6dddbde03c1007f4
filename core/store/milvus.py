"""The Milvus client, and a Milvus server that goes away.

pymilvus' sync client does the work (Milvus Lite's async client cannot create collections) on one
dedicated thread, so Milvus Lite sees one caller at a time and the event loop never waits on it.

A Milvus server may go away (a pod rescheduled, a restart) and come back. pymilvus reconnects by
itself; what it does not do is wait for the server: a call fails at once while it is down, waits
for its connect timeout (10 s) while it starts, and answers "collection not loaded" for a few
seconds after, while the server loads its collections again. So every call that may be repeated
(reads, deletes, flushes, schema calls) is retried with a growing delay for up to
SERVER_TIMEOUT_SECONDS (`healing`; a second while the server is known to be down), and
collections a server lost the load of are loaded again; an insert is
never repeated here (Milvus does not deduplicate primary keys: a batch the server took before the
connection dropped would be stored twice), its caller decides (`core.jobs.worker` drops the
video's rows and stores them again). A server still unreachable raises `Unavailable`, logged once
per outage in one sentence that names MILVUS_URI.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from core.errors import Outage, Unavailable, chain
from core.store.lite_lock import is_lite

# What pymilvus says when the server, not the request, is the trouble (lower case): down, starting,
# or loading its collections again after a restart
GONE = ("fail connecting", "server unavailable", "unavailable", "not ready", "not loaded", "deadline exceeded",
        "connection refused", "timed out", "no available", "recovering", "stopping", "connection reset",
        "state 'released'")
# ... and what it says when a server came back without loading the collections (`milvus-lite server`
# does not load them again; a Milvus 2.3 server does, a few seconds after it starts)
UNLOADED = ("not loaded", "state 'released'", "call load()")
T = TypeVar("T")


def connection_lost(e: BaseException) -> bool:
    """Did `e` (or what caused it) come from the server being unreachable or not ready?"""
    for x in chain(e):
        if isinstance(x, Unavailable):
            return False  # reported already, by an inner call
        code = getattr(x, "code", None)
        if callable(code) and type(x).__module__.startswith("grpc"):
            with contextlib.suppress(Exception):
                if getattr(code(), "name", "") in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    return True
        if type(x).__module__.startswith(("pymilvus", "grpc")) and any(g in str(x).lower() for g in GONE):
            return True
    return False


def server_name(uri: str) -> str:
    """The Milvus of `uri` for the log, without credentials."""
    if is_lite(uri):
        return f"Milvus Lite at {uri}"
    parts = urlsplit(uri)
    return f"the Milvus server at {parts.scheme}://{parts.hostname}:{parts.port or 19530}"


def _cause(e: BaseException) -> str:
    """pymilvus' one-line reason (`<MilvusException: (code=2, message=…)>` → the message)."""
    text = str(getattr(e, "message", "") or e)
    return " ".join(text.split())[:200] or type(e).__name__


class Patient:
    """A client of one Milvus that waits for it while it is away: the base of `VectorStore`."""

    uri: str
    timeout: float  # SERVER_TIMEOUT_SECONDS: how long a call waits for a server that went away
    outage: Outage

    def _patiently(self, fn: Callable[[], T], repeat: bool) -> T:
        """`fn()`; while the server is unreachable, `fn()` again after 0.2, 0.4, … s for up to
        `timeout` seconds (`repeat`; one try while an outage is known), then `Unavailable`."""
        wait = min(1.0, self.timeout) if self.outage.down else self.timeout
        deadline = time.monotonic() + (wait if repeat else 0.0)
        delay = 0.2
        while True:
            try:
                out = fn()
            except Exception as e:
                if not connection_lost(e):
                    raise
                if any(u in str(e) for u in UNLOADED):
                    self._reload()
                if time.monotonic() + delay > deadline:
                    err = Unavailable(server_name(self.uri), "MILVUS_URI", _cause(e))
                    self.outage.failed(err.detail)
                    raise err from e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.outage.ok()
            return out

    def _reload(self) -> None:
        """Load the collections again after a server lost them (see `core.store.layouts`)."""


def healing(method: Callable[..., T]) -> Callable[..., T]:
    """A VectorStore call that may be repeated: retried while the server is away (see the module)."""

    @functools.wraps(method)
    def call(self: Patient, *args: Any, **kw: Any) -> T:
        return self._patiently(lambda: method(self, *args, **kw), repeat=True)

    return call


def once(method: Callable[..., T]) -> Callable[..., T]:
    """A VectorStore call that must not be repeated (an insert): `Unavailable` at its first failure."""

    @functools.wraps(method)
    def call(self: Patient, *args: Any, **kw: Any) -> T:
        return self._patiently(lambda: method(self, *args, **kw), repeat=False)

    return call



def _pymilvus_client() -> type:
    """pymilvus reads MILVUS_URI itself when imported and refuses a file path there, which is
    exactly what vidrag's MILVUS_URI holds for Milvus Lite: hide it during that import (vidrag
    has read it into Settings already)."""
    saved = os.environ.pop("MILVUS_URI", None)
    try:
        from pymilvus import MilvusClient  # type: ignore[import-untyped]
    finally:
        if saved is not None:
            os.environ["MILVUS_URI"] = saved
    return MilvusClient


def _quiet_pymilvus() -> None:
    """pymilvus logs every failed call with its traceback at ERROR (on its own handler): an outage
    of a minute printed hundreds. vidrag raises those errors and reports an outage once."""
    for name in ("pymilvus", "pymilvus.milvus_client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def connect(uri: str, timeout: float = 5.0) -> Any:
    """A MilvusClient for `uri`, or `Unavailable` within about `timeout` seconds."""
    client_type = _pymilvus_client()
    _quiet_pymilvus()
    try:
        return client_type(uri=uri, timeout=timeout)
    except Exception as e:
        if not connection_lost(e):
            raise
        raise Unavailable(server_name(uri), "MILVUS_URI", _cause(e)) from e


def existing_collections(uri: str, timeout: float = 5.0) -> list[str]:
    """The collections of the Milvus at `uri`; none for a Milvus Lite folder not made yet."""
    if is_lite(uri) and not os.path.exists(uri):
        return []
    client = connect(uri, timeout)
    try:
        return list(client.list_collections())
    finally:
        client.close()

"""Errors a user may see.

Anything raised as `UserFacingError` carries a short, plain-language message that adapters post
as is. Every other exception is a bug or an outage: it is logged with its detail and the user gets
one short apology (see `APOLOGY`), never a stack trace or a token.

Two outages are the operator's, never the video's or the user's, and have their own types:
`Unavailable` (PostgreSQL or the Milvus server cannot be reached: the channel hears that the index
is unavailable for now, the operator's log names the server and its setting) and `DiskFull` (the
disk under DATA_DIR is full: the video waits in the queue for room). `disk_full` recognises the
second in whatever exception an ingest ended with.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterator

APOLOGY = "Sorry, something went wrong on my side. The details are in the bot's log."
UNAVAILABLE = "The index is unavailable right now, try again in a minute."
DISK_FULL = "The bot is out of disk space; your video will be indexed when there is room."
NOT_QUEUED = "The bot is out of disk space; please post the video again when there is room."
# What a full disk looks like in text: the OS (ffmpeg and yt-dlp print it), SQLite, PostgreSQL
NO_SPACE = ("No space left on device", "database or disk is full", "Disk quota exceeded")


class UserFacingError(Exception):
    """A failure whose message is safe and useful to show in the channel."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadSource(UserFacingError):
    """The link or file cannot be indexed: unreachable, refused, not a video, too long, too big."""


class NotFound(UserFacingError):
    """The video named does not exist in this channel."""


class Refused(UserFacingError):
    """A limit said no: queue full, rate limited, question too long."""


class Unavailable(UserFacingError):
    """PostgreSQL or the Milvus server did not answer in time. `message` is the channel's sentence
    (`UNAVAILABLE`); `detail` the operator's, one sentence naming the server, the setting that
    points at it, and why (`vidrag` prints it; the store logs it once per outage)."""

    def __init__(self, server: str, setting: str, cause: str) -> None:
        super().__init__(UNAVAILABLE)
        self.server = server
        self.setting = setting
        cause = " ".join(cause.split()) or "no answer"
        self.detail = f"{server[:1].upper()}{server[1:]} ({setting}) is unreachable: {cause[:300]}"

    def __str__(self) -> str:
        return self.detail


class DiskFull(UserFacingError):
    """The disk under DATA_DIR is full, or below MIN_FREE_MB: the channel is told that its video
    waits for room (`DISK_FULL`), or, when not even its job could be written (`queued=False`),
    that it must be posted again (`NOT_QUEUED`); `path` is what was full, for the operator's log."""

    def __init__(self, path: str = "", queued: bool = True) -> None:
        super().__init__(DISK_FULL if queued else NOT_QUEUED)
        self.path = path

    def __str__(self) -> str:
        return f"no space left at {self.path or 'DATA_DIR'}"


def disk_full(exc: BaseException | None) -> DiskFull | None:
    """The `DiskFull` behind `exc`, or None. Walks the whole chain (causes, contexts, the members
    of exception groups): a full disk shows up as an OSError with ENOSPC or EDQUOT (Python writing
    a file), SQLite's "database or disk is full", or the OS's sentence in a message (ffmpeg and
    yt-dlp print "No space left on device"), often wrapped in an error that blames the video."""
    for e in chain(exc):
        if isinstance(e, DiskFull):
            return e
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFull(str(e.filename or ""))
        if any(s in str(e) for s in NO_SPACE):
            return DiskFull()
    return None


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and every exception behind it, each once: causes, contexts, the members of
    exception groups."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]


class Outage:
    """One server's (or the disk's) state as the operator's log tells it: the first failure of an
    outage is logged as one sentence, the next ones are not (a loop that retries every second
    logged a traceback every second), and the first success after it says how long it lasted."""

    def __init__(self, log: logging.Logger, name: str) -> None:
        self.log = log
        self.name = name
        self.since: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, sentence: str) -> bool:
        """Record a failure; True (and logged) when it starts an outage."""
        if self.since is not None:
            self.log.debug("%s", sentence)
            return False
        self.since = time.monotonic()
        self.log.error("%s", sentence)
        return True

    def ok(self) -> None:
        if self.since is not None:
            self.log.warning("%s is back after %.1f s", self.name, time.monotonic() - self.since)
            self.since = None


class Forbidden(Refused):
    """The person may not do that here (remove a video someone else posted, not being an admin)."""

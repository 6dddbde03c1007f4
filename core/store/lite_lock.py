"""Whether this process may open a Milvus Lite folder, said in one sentence before pymilvus tries.

Milvus Lite serves its folder from inside one process and takes the folder's `LOCK` (an exclusive
`flock`) for as long as that process runs; a second process cannot open it, and pymilvus would only
say "Open local milvus failed" after logging Milvus Lite's traceback. `Service.open` asks `check`
first and tells `opened` what it opened: a later open of the same folder *in this process* shares
that server, so its LOCK is then no sign of another process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from core.config import Settings
from core.errors import UserFacingError

# Milvus Lite folders this process has opened (absolute paths).
_OPENED: set[str] = set()


def is_lite(uri: str) -> bool:
    """A Milvus URI that names a local folder (Milvus Lite) rather than a server."""
    return "://" not in uri


def opened(settings: Settings) -> None:
    """Record that this process now serves `settings`' Milvus Lite folder (no-op for a server)."""
    if is_lite(settings.milvus):
        _OPENED.add(os.path.abspath(settings.milvus))


def check(settings: Settings) -> None:
    """Refuse, with a `UserFacingError`, a Milvus Lite folder that another process holds.

    The lock is tried without waiting and given straight back: a process that got it would have
    opened the folder too. (A process that takes the folder in the moment between this check and
    the open still gets the old apology: rare, and never a wrong sentence.) Blocks (file calls):
    run it in a thread."""
    uri = settings.milvus
    if not is_lite(uri) or os.path.abspath(uri) in _OPENED:
        return
    try:
        fd = os.open(Path(uri) / "LOCK", os.O_RDWR)
    except OSError:  # no LOCK yet: a folder nobody has opened (or a path Milvus Lite will refuse itself)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserFacingError(
            f"Another vidrag process is using DATA_DIR={settings.data_dir.resolve()} (its Milvus Lite folder {uri} "
            "is open there): stop it first, or use a Milvus server (MILVUS_URI) to share it.") from None
    except OSError:  # a file system without locks: leave the verdict to Milvus Lite
        return
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

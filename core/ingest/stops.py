"""Why a jailed ingest was stopped, in the user's words: a limit of the jail (memory, CPU time, file
size), the wall-clock deadline, or a reader that crashed on the file. core/ingest/media.py raises
`LimitHit` for a program a limit killed; core/ingest/jail.py for the child itself."""

from __future__ import annotations

from core.errors import BadSource


class LimitHit(BadSource):
    """A program of the ingest, or the jailed child itself, was stopped: `kind` is one of
    `LIMIT_MESSAGES` ("memory", "cpu", "time", "file", "crash")."""

    def __init__(self, kind: str) -> None:
        super().__init__(LIMIT_MESSAGES[kind])
        self.kind = kind


LIMIT_MESSAGES = {
    "memory": "That video needed more memory than I allow, so I stopped reading it.",
    "cpu": "That video needed more processing time than I allow, so I stopped reading it.",
    "time": "That video took longer to read than I allow, so I stopped.",
    "file": "That video would have written more to disk than I allow, so I stopped reading it.",
    "crash": "Reading that file crashed my video reader; it may be corrupt or made to do that.",
}

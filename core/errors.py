"""Errors a user may see.

Anything raised as `UserFacingError` carries a short, plain-language message that adapters post
as is. Every other exception is a bug or an outage: it is logged with its detail and the user gets
one short apology (see `APOLOGY`), never a stack trace or a token.
"""

APOLOGY = "Sorry, something went wrong on my side. The details are in the bot's log."


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

"""What can go wrong with a bag, as exceptions: each a :class:`~pai_ros.errors.UserError` (one line, no traceback)."""

from __future__ import annotations

from pai_ros.errors import UserError


class CorruptBag(UserError):
    """A bag whose data cannot be read (truncated, corrupt, an index that does not match)."""


class UnknownMessageType(UserError):
    """No definition for a message type: it can be neither embedded nor played back."""


class BagWriteError(UserError):
    """Writing the bag failed (disk full, I/O error); the bag is closed as far as it can be.

    ``errno`` is the operating system's error number (``errno.ENOSPC`` for a full disk).
    """

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_

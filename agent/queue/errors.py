"""Errors raised by the durable queue, each with a message an operator can act on."""

from __future__ import annotations


class QueueError(RuntimeError):
    """A queue operation failed; nothing of it was committed."""


class UnknownStreamError(QueueError):
    """A stream name that is not configured was used."""

    def __init__(self, name: str) -> None:
        super().__init__(f"stream {name!r} is not configured")
        self.name = name


class QueueClosedError(QueueError):
    """The queue is closing or closed and takes no more work."""


class CommitFailedError(QueueError):
    """The group transaction could not commit (disk full, I/O error, read-only file)."""

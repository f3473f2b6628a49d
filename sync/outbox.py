"""The contract between a durable queue and the uplink.

The uplink never imports the agent: it reads through this small interface, which the
agent's SQLite queue satisfies. Keeping the contract here, beside the wire format,
means the hub, the uplink and any other store-and-forward producer agree on what an
event and a gap are without depending on the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as the queue holds it: immutable once committed.

    `seq` is monotonic per stream and never reused within a queue epoch; times are
    seconds since the Unix epoch (float, microsecond precision).
    """

    seq: int
    event_time: float
    ingest_time: float
    key: str | None
    topic: str | None
    payload: bytes
    headers: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """A range of sequence numbers that will never be delivered, and why.

    Gaps are how a drop becomes visible at the hub instead of a silent hole:
    retention (`max_bytes`, `max_age`), `drop_newest` overflow, or corruption.
    """

    first_seq: int
    last_seq: int
    reason: str
    recorded_at: float

    @property
    def count(self) -> int:
        """How many sequence numbers the gap covers."""
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    """What a consumer reads after its cursor: events in order, plus gaps in range.

    `upto_seq` is the position the cursor may move to once the batch is
    acknowledged: the last event's seq, or the end of a trailing gap.
    """

    stream: str
    events: Sequence[StoredEvent]
    gaps: Sequence[Gap]
    upto_seq: int

    @property
    def empty(self) -> bool:
        """True when there is nothing to send and no gap to report."""
        return not self.events and not self.gaps


class Outbox(Protocol):
    """Read-from-cursor and ack-up-to over named streams of a durable queue."""

    @property
    def epoch(self) -> str:
        """Random id made when the queue was created; part of every event's identity."""
        ...

    async def read_batch(
        self, stream: str, consumer: str, max_events: int, max_bytes: int
    ) -> OutboxBatch:
        """Events after the consumer's cursor, oldest first, bounded by count and bytes."""
        ...

    async def read_after(
        self,
        stream: str,
        after_seq: int,
        max_events: int,
        max_bytes: int,
        before_seq: int | None = None,
    ) -> OutboxBatch:
        """Events after a position the consumer tracks itself (ahead of its cursor).

        With `before_seq`, only events and gaps below it: a hole under a range the
        consumer already sent (draining newest first).
        """
        ...

    async def newest_start(
        self, stream: str, after_seq: int, max_events: int, max_bytes: int
    ) -> int:
        """The position to read after for the newest events past `after_seq`, bounded."""
        ...

    async def load_state(self, owner: str) -> dict[str, bytes]:
        """Named state a consumer saved (its acked ranges, its daily byte count)."""
        ...

    async def save_state(self, owner: str, values: Mapping[str, bytes]) -> None:
        """Save named state durably, so a restart resumes instead of starting over."""
        ...

    async def cursor(self, stream: str, consumer: str) -> int:
        """The consumer's committed position (0 before its first acknowledgement)."""
        ...

    async def ack(self, stream: str, consumer: str, upto_seq: int) -> None:
        """Move the consumer's cursor to `upto_seq` durably (never backwards)."""
        ...

    async def wait_for_data(self, stream: str, after_seq: int, timeout: float) -> bool:
        """Wait until the stream holds something after `after_seq`, or the timeout."""
        ...

"""What one uplink stream sends next, and what the hub has acked of it.

Two drain orders share one plan (`next_batch`):

- `oldest_first` (the default): fill any hole below the acked ranges, then read after
  the top. Without ranges this is the strict per-stream order of the protocol.
- `newest_first`: first the newest events above everything acked (the last batch of
  them), then the holes below, oldest hole first. Live data goes out at once after
  an outage and the backlog follows; between two backfill batches any new events go
  first, so the present is never more than one batch behind. Filling holes oldest
  first moves the cursor as it goes, so retention frees disk during the backfill.

After the hub acks a batch (`acked`), its range joins the acked ranges, the cursor
moves over the contiguous prefix (committed behind the sends by `commit_cursor`) and
the ranges above it are saved in the queue's state table, so a restart mid-backfill
does not send them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from sync.acked_ranges import AckedRanges
from sync.backoff import retry_until_done
from sync.outbox import Outbox, OutboxBatch
from sync.uplink_config import UplinkConfig
from sync.uplink_state import StateWriter, ranges_key

log = logging.getLogger(__name__)

CONSUMER: Final = "uplink"

MAX_RANGES: Final = 64
"""Above this many acked ranges, new events are read oldest first instead of newest first.

Each newest-first batch that skips older unsent events opens a hole; when events
arrive faster than the link drains them, every batch would. This bound keeps the
saved state (and the work of each ack) small whatever the backlog.
"""


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """A batch and the position it was read after: its acked range is `(after, upto_seq]`."""

    after: int
    batch: OutboxBatch


class CursorTrail:
    """The acked position of one stream, and how far its commits have caught up."""

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.target = committed
        self._moved = asyncio.Event()

    def advance(self, position: int) -> None:
        """The hub acked everything up to `position`."""
        self.target = max(self.target, position)
        self._moved.set()

    async def next_target(self) -> int:
        """Wait until there is something newer than the last commit to commit."""
        while self.target <= self.committed:
            self._moved.clear()
            await self._moved.wait()
        return self.target


class StreamDrain:
    """The read plan and the ack bookkeeping of one uplink stream."""

    def __init__(self, config: UplinkConfig, outbox: Outbox, stream: str, state: StateWriter):
        self.config = config
        self.outbox = outbox
        self.stream = stream
        self.newest_first = config.stream(stream).drain_order == "newest_first"
        self._state = state
        self.acked_ranges = AckedRanges(0)
        self.trail = CursorTrail(0)

    async def restore(self, saved: dict[str, bytes]) -> None:
        """Resume from the committed cursor and the saved ranges above it."""
        cursor = await self.outbox.cursor(self.stream, CONSUMER)
        self.acked_ranges = AckedRanges.restore(cursor, saved.get(ranges_key(self.stream)))
        self.trail = CursorTrail(cursor)

    async def next_batch(self, max_events: int) -> PlannedBatch:
        """Wait for something to send and return it (Step 1 of the protocol)."""
        while True:
            planned = await self._plan(max_events)
            if planned is not None:
                return planned
            await self.outbox.wait_for_data(self.stream, self.acked_ranges.top, 5.0)

    def acked(self, planned: PlannedBatch) -> None:
        """The hub committed the batch: record its range, move the cursor (Step 4)."""
        had_ranges = bool(self.acked_ranges.ranges)
        self.acked_ranges.add(planned.after, planned.batch.upto_seq)
        self.trail.advance(self.acked_ranges.cursor)
        if had_ranges or self.acked_ranges.ranges:
            self._state.put(ranges_key(self.stream), self.acked_ranges.snapshot())

    async def commit_cursor(self) -> None:
        """Commit the cursor behind the acks, coalesced, until cancelled."""
        while True:
            target = await self.trail.next_target()
            await retry_until_done(
                lambda: self.outbox.ack(self.stream, CONSUMER, target),  # noqa: B023 awaited here
                what=f"Moving the uplink cursor of {self.stream}",
                errors=(Exception,),  # the outbox's own error type belongs to the agent
                logger=log,
            )
            self.trail.committed = target

    async def _plan(self, max_events: int) -> PlannedBatch | None:
        if self.newest_first:
            return await self._fresh(max_events) or await self._backfill(max_events)
        return await self._backfill(max_events) or await self._fresh(max_events)

    async def _fresh(self, max_events: int) -> PlannedBatch | None:
        """Events above everything acked: the newest batch of them, or the oldest."""
        top = self.acked_ranges.top
        start = top
        if self.newest_first and len(self.acked_ranges.ranges) < MAX_RANGES:
            start = await self.outbox.newest_start(
                self.stream, top, max_events, self.config.batch_max_bytes
            )
        read = self._reader(start, max_events, None)
        batch = await read()
        if batch.empty:
            return None
        return PlannedBatch(start, await self._linger(batch, read, max_events))

    async def _backfill(self, max_events: int) -> PlannedBatch | None:
        """The oldest hole below an acked range, read up to that range."""
        while (hole := self.acked_ranges.first_hole()) is not None:
            after, before = hole
            batch = await self._reader(after, max_events, before)()
            if not batch.empty:
                return PlannedBatch(after, batch)
            # Nothing stored there (deleted or never written): nothing to send.
            self.acked(PlannedBatch(after, OutboxBatch(self.stream, (), (), before - 1)))
        return None

    def _reader(
        self, after: int, max_events: int, before: int | None
    ) -> Callable[[], Awaitable[OutboxBatch]]:
        max_bytes = self.config.batch_max_bytes
        return lambda: self.outbox.read_after(self.stream, after, max_events, max_bytes, before)

    async def _linger(
        self, batch: OutboxBatch, read: Callable[[], Awaitable[OutboxBatch]], max_events: int
    ) -> OutboxBatch:
        """Wait for a fuller batch, but never hold the oldest event past `batch_max_delay`."""
        if not batch.events or len(batch.events) >= max_events:
            return batch
        delay = self.config.batch_max_delay
        waited = time.time() - batch.events[0].ingest_time
        # Clamped: after the wall clock steps back, `waited` is negative.
        remaining = min(delay, delay - waited)
        if remaining <= 0:
            return batch
        await asyncio.sleep(remaining)
        return await read()

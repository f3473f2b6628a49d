"""Run a source's read on a fixed interval and store what it returns.

The schedule is anchored on the monotonic clock: poll k is due at start + k * interval,
so it never drifts however long each read takes. A read that overruns its slot skips
the slots it missed (counted) instead of piling up reads. A read that fails is counted
and retried at the next slot; it is logged when the failure starts or changes, then at
most every few minutes with a count, and when it clears, never once per interval (a
missing sensor must not flood the log; see sync/condition_log.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.queue import DurableQueue, NewEvent, QueueError, encode_payload
from sync import condition_log
from sync.condition_log import Wording

log = logging.getLogger(__name__)


class Reading(NamedTuple):
    """One sample a source produced: its key, fields and (optionally) its own time."""

    key: str | None
    fields: dict[str, Any]
    time: float | None = None


Read = Callable[[], Awaitable[list[Reading]]]


@dataclass(slots=True)
class PollingStats:
    """Counters of one polling source since start."""

    polls: int = 0
    stored: int = 0
    errors: int = 0
    skipped_slots: int = 0
    slot_delays: list[float] = field(default_factory=list)
    """How late each poll started after its slot (seconds), last 1,000."""


_SOURCE_WORDING = Wording(
    started="Source %(subject)s: %(detail)s",
    still="Source %(subject)s still fails: %(count)s more time(s) in the last %(interval)s; "
    "latest: %(detail)s",
    cleared="Source %(subject)s recovered after %(repeats)d more failure(s) of: %(detail)s",
)


class ConditionLog(condition_log.ConditionLog):
    """A source's condition log: its lines name the source and go to this module's logger."""

    def __init__(self, name: str) -> None:
        super().__init__(name, logger=log, wording=_SOURCE_WORDING)


class PollingSource:
    """Calls `read` every `interval` seconds and appends the readings to `stream`."""

    def __init__(
        self,
        name: str,
        stream: str,
        interval: float,
        tags: dict[str, str],
        queue: DurableQueue,
        read: Read,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.stream, self.interval = name, stream, interval
        self.tags = dict(tags)
        self.queue = queue
        self.read = read
        self.release = release
        """Called when the source stops: gives back what reads hold open (GPIO lines)."""
        self.stats = PollingStats()
        self.conditions = ConditionLog(name)

    async def run(self) -> None:
        """Poll until cancelled, on slots anchored at the first poll."""
        start = time.monotonic()
        slot = 0
        try:
            while True:
                delay = time.monotonic() - (start + slot * self.interval)
                self.stats.slot_delays = [*self.stats.slot_delays[-999:], delay]
                await self.poll_once()
                slot = self._next_slot(start, slot, time.monotonic())
                await asyncio.sleep(max(0.0, start + slot * self.interval - time.monotonic()))
        finally:
            if self.release is not None:
                self.release()

    def _next_slot(self, start: float, slot: int, now: float) -> int:
        """The next slot still in the future; the ones a slow read overran are skipped."""
        due = math.floor((now - start) / self.interval) + 1
        nxt = max(slot + 1, due)
        self.stats.skipped_slots += nxt - slot - 1
        return nxt

    async def poll_once(self) -> None:
        """One read, stored; a failure is counted and logged by condition."""
        self.stats.polls += 1
        try:
            readings = await self.read()
        except Exception as exc:  # a sensor that fails must never stop the source
            self.stats.errors += 1
            self.conditions.failed(f"read failed: {exc}")
            return
        self.conditions.cleared()
        if readings:
            await self._store(readings)

    async def _store(self, readings: list[Reading]) -> None:
        now = time.time()
        events = [
            NewEvent(
                now if r.time is None else r.time,
                now,
                r.key,
                None,
                encode_payload({**r.fields, **self.tags}),
            )
            for r in readings
        ]
        try:
            await self.queue.append(self.stream, events)
        except QueueError as exc:
            self.stats.errors += 1
            self.conditions.failed(f"could not store {len(events)} reading(s): {exc}")
            return
        self.stats.stored += len(events)

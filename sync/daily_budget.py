"""A daily data budget for a metered link: count the bytes published per UTC day, stop at the cap.

The day is the UTC calendar day. A device's local time zone is often unset (UTC) or
changes with daylight saving, which would make a "day" 23 or 25 hours long; UTC days
are the same everywhere in a fleet, so one budget means one thing. When the clock jumps
(NTP after a boot without RTC) to another day, the count starts again: a clock that
was wrong can cost at most one extra day's budget, never a stop of several days.

The count (and the number of days the budget ran out, and whether today's stop was
logged) is restored from the queue's state table at start, so a restart does not hand
out a fresh budget nor log the stop again. It is saved behind the sends (see
`sync/uplink_state.py`), so a crash can forget at most the bytes of the batches
published since the last commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

import orjson

log = logging.getLogger(__name__)

STATE_NAME = "daily_budget"
"""The name of the budget's row in the uplink's state."""


def utc_day(timestamp: float) -> str:
    """The UTC calendar day of a Unix time, as YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


def seconds_to_next_day(timestamp: float) -> float:
    """Seconds from `timestamp` to the next UTC midnight."""
    return 86400.0 - timestamp % 86400.0


class DailyBudget:
    """Bytes spent today against a limit; senders wait here once the limit is reached."""

    def __init__(
        self,
        limit: int,
        clock: Callable[[], float] = time.time,
        recheck: float = 60.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.on_change = on_change
        """Called after each change worth saving (a spend, a stop)."""
        self.spent = 0
        self.stops = 0
        self._clock = clock
        self._recheck = recheck
        self.day = utc_day(clock())
        self._stopped_day: str | None = None

    def restore(self, saved: bytes | None) -> None:
        """Take over the count saved before a restart, if it is for today."""
        if saved is None:
            return
        state = orjson.loads(saved)
        self.stops = int(state.get("stops", 0))
        if state.get("day") == utc_day(self._clock()):
            self.day, self.spent = state["day"], int(state["spent"])
            self._stopped_day = state.get("stopped_day")

    def snapshot(self) -> bytes:
        """The state to persist: today's count, whether today's stop was logged, the stops."""
        state = {
            "day": self.day,
            "spent": self.spent,
            "stopped_day": self._stopped_day,
            "stops": self.stops,
        }
        return orjson.dumps(state)

    def allows(self, nbytes: int) -> bool:
        """Whether a batch of `nbytes` fits in what is left of today's budget.

        A batch larger than the whole budget goes out as the first one of a day, or it
        would wait forever; otherwise the budget is never exceeded.
        """
        self._roll_day()
        return self.spent + nbytes <= self.limit or self.spent == 0

    def spend(self, nbytes: int) -> None:
        """Count bytes that were published (every attempt counts, the link carried them)."""
        self._roll_day()
        self.spent += nbytes
        self._changed()

    async def wait_for(self, nbytes: int) -> None:
        """Return once `nbytes` fit in the budget: at once, or after the next UTC midnight."""
        while not self.allows(nbytes):
            self._note_stop()
            now = self._clock()
            await asyncio.sleep(min(self._recheck, seconds_to_next_day(now)))

    def _note_stop(self) -> None:
        """Count and log a stop once per day, with the figures an operator needs."""
        if self._stopped_day == self.day:
            return
        self._stopped_day = self.day
        self.stops += 1
        self._changed()
        log.warning(
            "Daily uplink budget reached: %d of %d bytes sent on %s (UTC); sending stops until "
            "00:00 UTC, events keep being stored",
            self.spent, self.limit, self.day,
        )  # fmt: skip

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _roll_day(self) -> None:
        today = utc_day(self._clock())
        if today != self.day:
            if self.spent:
                log.info("Daily uplink budget renewed: %d bytes were sent on %s (UTC)",
                         self.spent, self.day)  # fmt: skip
            self.day, self.spent = today, 0

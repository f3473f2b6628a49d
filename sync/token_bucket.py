"""A bandwidth cap for a metered link: a token bucket that serves the highest priority first.

Tokens are bytes and accrue at `rate` per second up to `burst`. A sender asks for the
size of the encoded batch it is about to publish (retries ask again: they cost the link
as much). Waiters are served strictly by priority, then in arrival order, so an alert
batch that arrives while a bulk backlog drains takes the next tokens: at most the one
bulk batch already granted is ahead of it.

`burst` is one second of tokens or the largest request seen, whichever is bigger, so a
batch larger than one second's worth still goes out (after waiting for a full bucket)
instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable


class TokenBucket:
    """Byte tokens shared by every sender of the uplink; `acquire` waits for its share."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"a token bucket needs a positive rate, got {rate}")
        self.rate = rate
        self.burst = rate
        self._clock = clock
        self._tokens = rate
        self._stamp = clock()
        self._waiters: list[tuple[int, int]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self.waited = 0.0
        """Seconds spent waiting for tokens, summed over all grants (for stats)."""

    async def acquire(self, nbytes: int, priority: int = 0) -> None:
        """Wait until `nbytes` tokens are available and this is the most urgent waiter."""
        self.burst = max(self.burst, float(nbytes))
        ticket = (-priority, next(self._order))
        heapq.heappush(self._waiters, ticket)
        self._changed.set()  # a sleeping head re-checks whether it is still the head
        started = self._clock()
        try:
            while not self._try_take(ticket, nbytes):
                await self._wait(self._delay(ticket, nbytes))
        finally:
            self._leave(ticket)
            self.waited += self._clock() - started

    def _try_take(self, ticket: tuple[int, int], nbytes: int) -> bool:
        if self._waiters[0] != ticket:
            return False
        self._refill()
        if self._tokens < nbytes:
            return False
        self._tokens -= nbytes
        return True

    def _delay(self, ticket: tuple[int, int], nbytes: int) -> float | None:
        """How long the head waits for its tokens; others wait for a change (None)."""
        if self._waiters[0] != ticket:
            return None
        return (nbytes - self._tokens) / self.rate

    async def _wait(self, delay: float | None) -> None:
        """Sleep for `delay`, or until the set of waiters changes (a more urgent one came)."""
        self._changed.clear()
        try:
            async with asyncio.timeout(delay):
                await self._changed.wait()
        except TimeoutError:
            pass

    def _leave(self, ticket: tuple[int, int]) -> None:
        self._waiters.remove(ticket)
        heapq.heapify(self._waiters)
        self._changed.set()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)

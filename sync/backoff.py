"""Jittered exponential backoff shared by every reconnecting component.

One helper instead of a retry loop per source and sink: the delay doubles from
``initial`` up to ``maximum``, and each delay is shortened by a random share of
up to ``jitter`` so that many devices restarted by the same power cut do not
reconnect to the broker in lock step.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sync.condition_log import ConditionLog, Wording

T = TypeVar("T")

_RETRY_WORDING = Wording(
    started="%(subject)s failed (%(detail)s)",
    still="%(subject)s still failing: %(count)s more failures in the last %(interval)s "
    "(%(detail)s)",
    cleared="%(subject)s succeeded after %(total)s failures in %(duration)s",
)


class Backoff:
    """Delays for successive failed attempts, reset after a success.

    The n-th delay lies in ``[(1 - jitter) * base, base]`` where
    ``base = min(maximum, initial * factor**n)``, so it never exceeds ``maximum``.
    Pass a seeded ``random.Random`` to make the sequence reproducible in tests.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial:
            msg = f"Backoff needs 0 < initial <= maximum, got {initial} and {maximum}"
            raise ValueError(msg)
        if factor < 1 or not 0 <= jitter <= 1:
            msg = f"Backoff needs factor >= 1 and 0 <= jitter <= 1, got {factor} and {jitter}"
            raise ValueError(msg)
        self._initial = initial
        self._maximum = maximum
        self._factor = factor
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._base = initial

    def next_delay(self) -> float:
        """Return the delay before the next attempt and grow the base for the one after."""
        base = self._base
        self._base = min(self._maximum, base * self._factor)
        return base * (1.0 - self._jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from ``initial``: call after a successful attempt."""
        self._base = self._initial


async def retry_until_done(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    errors: tuple[type[Exception], ...],
    logger: logging.Logger,
    backoff: Backoff | None = None,
) -> T:
    """Run `operation` until it succeeds, sleeping a jittered backoff after each failure.

    For steps that must not be skipped (a commit whose data is already acknowledged
    elsewhere, a cursor move): giving up would lose or duplicate. The failure is logged
    when it starts, then once per summary interval with the count, and once when it
    clears (sync/condition_log.py), so a long outage does not flood the journal.
    """
    backoff = backoff if backoff is not None else Backoff(0.5, 30.0)
    conditions = ConditionLog(what, logger=logger, wording=_RETRY_WORDING, level=logging.ERROR)
    while True:
        try:
            result = await operation()
        except errors as exc:
            delay = backoff.next_delay()
            conditions.failed(f"{exc}; retrying in {delay:.1f}s", kind=type(exc).__name__)
            await asyncio.sleep(delay)
            continue
        conditions.cleared()
        return result

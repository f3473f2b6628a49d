"""Unit tests of the uplink's link policies: acked ranges, batch sizing, budget, token bucket."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import pytest

from sync.acked_ranges import AckedRanges
from sync.batch_sizer import BatchSizer
from sync.daily_budget import DailyBudget, seconds_to_next_day, utc_day
from sync.token_bucket import TokenBucket

NOON = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC).timestamp()


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cursor_moves_only_over_the_contiguous_acked_prefix() -> None:
    acked = AckedRanges(0)
    acked.add(900, 1000)  # newest first
    assert (acked.cursor, acked.ranges, acked.top) == (0, [(900, 1000)], 1000)
    assert acked.first_hole() == (0, 901)
    acked.add(0, 100)
    assert (acked.cursor, acked.ranges) == (100, [(900, 1000)])
    acked.add(1000, 1100)  # live events join the top range
    assert acked.ranges == [(900, 1100)]
    acked.add(100, 900)
    assert (acked.cursor, acked.ranges, acked.first_hole()) == (1100, [], None)


def test_acked_ranges_survive_a_restart_and_drop_what_the_cursor_passed() -> None:
    acked = AckedRanges(0)
    acked.add(50, 60)
    acked.add(80, 90)
    restored = AckedRanges.restore(55, acked.snapshot())  # the cursor was committed further
    assert (restored.cursor, restored.ranges) == (60, [(80, 90)])
    assert AckedRanges.restore(7, None) == AckedRanges(7)


def test_batch_size_grows_on_fast_full_acks_and_halves_on_timeouts() -> None:
    sizer = BatchSizer(minimum=10, maximum=1000, ack_timeout=4.0)
    assert sizer.size == 1000
    sizer.failed()
    sizer.failed()
    assert sizer.size == 250
    sizer.acked(round_trip=0.5, events=250)  # fast (within 1s = 25% of 4s) and full
    assert sizer.size == 350
    sizer.acked(round_trip=2.0, events=350)  # slow: hold
    sizer.acked(round_trip=0.1, events=3)  # a short batch proves nothing: hold
    assert sizer.size == 350
    for _ in range(20):
        sizer.failed()
    assert sizer.size == 10
    for _ in range(20):
        sizer.acked(0.1, sizer.size)
    assert sizer.size == 1000


def test_fixed_batch_size_when_adaptive_is_off() -> None:
    sizer = BatchSizer(10, 500, 4.0, adaptive=False)
    sizer.failed()
    assert sizer.size == 500


def test_utc_days_and_midnight() -> None:
    assert utc_day(NOON) == "2026-11-27"
    assert seconds_to_next_day(NOON) == pytest.approx(12 * 3600)


async def test_budget_stops_at_the_limit_logs_once_and_resumes_the_next_utc_day(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(NOON)
    budget = DailyBudget(10_000, clock, recheck=0.01)
    for _ in range(3):
        await budget.wait_for(3000)
        budget.spend(3000)
    assert not budget.allows(3000)  # 9000 + 3000 would pass 10,000: never exceeded
    waiter = asyncio.create_task(budget.wait_for(3000))
    await asyncio.sleep(0.1)
    assert not waiter.done() and budget.stops == 1
    await asyncio.sleep(0.1)
    assert budget.stops == 1  # counted and logged once per day
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "Daily uplink budget reached: 9000 of 10000 bytes sent on 2026-11-27 (UTC); sending "
        "stops until 00:00 UTC, events keep being stored"
    ]
    clock.now += 12 * 3600  # midnight UTC
    await asyncio.wait_for(waiter, 1.0)
    assert (budget.day, budget.spent) == ("2026-11-28", 0)


def test_budget_count_is_restored_for_the_same_day_only() -> None:
    clock = FakeClock(NOON)
    before = DailyBudget(10_000, clock)
    before.spend(4000)
    after = DailyBudget(10_000, clock)
    after.restore(before.snapshot())
    assert after.spent == 4000
    clock.now += 86400
    next_day = DailyBudget(10_000, clock)
    next_day.restore(before.snapshot())
    assert next_day.spent == 0


def test_a_batch_larger_than_the_whole_budget_goes_first_thing_in_the_day() -> None:
    budget = DailyBudget(1000, FakeClock(NOON))
    assert budget.allows(5000)
    budget.spend(5000)
    assert not budget.allows(1)


async def test_token_bucket_holds_the_rate_and_serves_higher_priority_first() -> None:
    bucket = TokenBucket(10_000.0)
    await bucket.acquire(10_000)  # the initial burst
    started = time.monotonic()
    order: list[str] = []

    async def take(name: str, size: int, priority: int) -> None:
        await bucket.acquire(size, priority)
        order.append(name)

    low = asyncio.create_task(take("low-1", 3000, 0))
    await asyncio.sleep(0.01)  # the low one is waiting first
    low2 = asyncio.create_task(take("low-2", 3000, 0))
    high = asyncio.create_task(take("high", 1000, 10))
    await asyncio.gather(low, low2, high)
    elapsed = time.monotonic() - started
    assert order == ["high", "low-1", "low-2"]
    assert elapsed == pytest.approx(0.7, abs=0.1)  # 7000 bytes at 10,000 B/s


async def test_a_request_above_the_burst_raises_the_burst_instead_of_waiting_forever() -> None:
    bucket = TokenBucket(100_000.0)
    await asyncio.wait_for(bucket.acquire(150_000), 3.0)
    assert bucket.burst == 150_000

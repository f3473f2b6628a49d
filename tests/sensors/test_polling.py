"""The polling schedule: anchored slots, skipped overruns, failures logged by condition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import orjson
import pytest

from agent.queue import DurableQueue, StreamLimits
from agent.sources.polling import PollingSource, Reading


async def run_for(source: PollingSource, seconds: float) -> None:
    task = asyncio.ensure_future(source.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_no_drift_over_1000_intervals() -> None:
    """1,000 slots of 2 ms: the last poll starts on its slot, not 1,000 delays later."""
    polls: list[float] = []

    async def read() -> list[Reading]:
        polls.append(time.monotonic())
        return []

    source = PollingSource("clock", "s", 0.002, {}, None, read)  # type: ignore[arg-type]
    await run_for(source, 0.002 * 1000 + 0.001)
    span = polls[-1] - polls[0]
    slots = len(polls) + source.stats.skipped_slots - 1
    assert abs(span - slots * 0.002) < 0.004  # within two slots after 1,000 of them
    assert len(polls) >= 900  # a loaded CI machine may skip a few slots, never pile up
    assert max(source.stats.slot_delays) < 0.05  # no poll started 50 ms late


async def test_a_slow_read_skips_slots_instead_of_piling_up() -> None:
    async def slow() -> list[Reading]:
        await asyncio.sleep(0.025)  # 2.5 intervals
        return []

    source = PollingSource("slow", "s", 0.01, {}, None, slow)  # type: ignore[arg-type]
    await run_for(source, 0.3)
    assert 8 <= source.stats.polls <= 12  # one every 3 slots, not 30 queued reads
    assert source.stats.skipped_slots >= 2 * (source.stats.polls - 1)


async def test_failures_are_counted_and_logged_once_per_condition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = iter([OSError("no such sensor")] * 5 + [None] * 2 + [OSError("bus error")])

    async def flaky() -> list[Reading]:
        outcome = next(outcomes, None)
        if outcome is not None:
            raise outcome
        return []

    source = PollingSource("flaky", "s", 1.0, {}, None, flaky)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="agent.sources.polling"):
        for _ in range(8):
            await source.poll_once()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Source flaky: read failed: no such sensor",
        "Source flaky recovered after 4 more failure(s) of: read failed: no such sensor",
        "Source flaky: read failed: bus error",
    ]
    assert source.stats.errors == 6


async def test_readings_are_stored_with_tags_keys_and_times(tmp_path: Path) -> None:
    queue = await DurableQueue.open(
        tmp_path, {"s": StreamLimits(1 << 20, 1e9)}, synchronous="normal"
    )

    async def read() -> list[Reading]:
        return [Reading("dev-1", {"temp": 21.5}, 1_000.0), Reading(None, {"up": 3})]

    source = PollingSource("sys", "s", 1.0, {"site": "lab"}, queue, read)
    await source.poll_once()
    stored = (await queue.read_after("s", 0, 10, 1 << 20)).events
    assert [orjson.loads(e.payload) for e in stored] == [
        {"temp": 21.5, "site": "lab"},
        {"up": 3, "site": "lab"},
    ]
    assert [e.key for e in stored] == ["dev-1", None]
    assert stored[0].event_time == 1_000.0 and stored[1].event_time == stored[1].ingest_time
    assert source.stats.stored == 2
    await queue.close()

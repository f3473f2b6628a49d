"""The uplink on a metered, flaky link, against a real Mosquitto and a real hub process.

Bandwidth cap, priorities, daily budget, newest-first drain and adaptive batch size:
each test drives the agent's own SQLite queue and the `Uplink` in this process (so
clocks can be injected and counters read) and checks what the hub committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from sync.uplink import Uplink
from sync.wire import up_topic
from tests.e2e.harness import EdgestreamProcess, query
from tests.sync.conftest import (
    DEVICE,
    Hub,
    append,
    eventually,
    open_queue,
    probe_hub,
    running,
    uplink_config,
)

pytestmark = pytest.mark.slow

CAP = 20 * 1024


@dataclasses.dataclass
class Tap:
    """Every batch the broker delivered on the device's up topic: (arrival time, bytes)."""

    seen: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def record(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.seen.append((time.monotonic(), len(message.payload)))


def tap_uplink(url: str) -> tuple[mqtt.Client, Tap]:
    """Subscribe beside the hub to what the uplink publishes (the broker's view of the link)."""
    host, port = url.removeprefix("mqtt://").split(":")
    tap = Tap()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tap")
    client.on_message = tap.record
    client.connect(host, int(port))
    client.subscribe(up_topic("edgestream", DEVICE), 0)
    client.loop_start()
    return client, tap


def rate_over(seen: list[tuple[float, int]], skip: float, span: float) -> float:
    """Bytes per second between the first arrival after `skip` s and the first `span` s later."""
    start = seen[0][0] + skip
    window = [(t, n) for t, n in seen if t >= start]
    first = window[0][0]
    inside = [(t, n) for t, n in window if t <= first + span]
    return sum(n for _, n in inside[1:]) / (inside[-1][0] - first)


async def test_bandwidth_cap_holds_within_10_percent_over_10_seconds(
    tmp_path: Path, hub: Hub
) -> None:
    queue = await open_queue(tmp_path / "agent", "bulk")
    await append(queue, "bulk", 0, 6000, size=200)  # about 700 KiB compressed: 35 s at the cap
    client, tap = tap_uplink(hub.broker.url)
    config = uplink_config(hub.broker.url, max_bytes_per_second="20KiB", batch_max_events=50)
    uplink = Uplink(config, queue, DEVICE, ["bulk"])
    async with running(uplink):
        await eventually(lambda: len(tap.seen) > 2, 10, "the first batches")
        await asyncio.sleep(12.5)
        published = uplink.stats.bytes_published
    client.loop_stop()
    client.disconnect()
    await queue.close()
    rate = rate_over(tap.seen, skip=2.0, span=10.0)  # past the first second's burst
    assert tap.seen[-1][0] - tap.seen[0][0] > 12.0
    assert 0.9 * CAP <= rate <= 1.1 * CAP, f"{rate:.0f} B/s against a cap of {CAP}"
    assert uplink.stats.retries == 0
    assert published >= sum(n for _, n in tap.seen)  # the counters saw every byte
    logging.getLogger(__name__).info("measured %.0f B/s at a cap of %d B/s", rate, CAP)


async def test_alert_overtakes_a_bulk_backlog_under_the_cap(tmp_path: Path, hub: Hub) -> None:
    """An alert waits for no bulk batch not yet granted: its latency stays under one batch time.

    Three bulk streams share a 20 KiB/s cap, each batch about 11 KiB (0.55 s of
    tokens). First come first served, the alert would queue behind up to three bulk
    waiters (about 1.7 s); by priority it takes the next tokens. The bound allows the
    linger (50 ms), one bulk batch time for a batch already on the wire, and the
    hub's commit and ack.
    """
    bulk = ["bulk1", "bulk2", "bulk3"]
    queue = await open_queue(tmp_path / "agent", "alerts", *bulk)
    for stream in bulk:
        await append(queue, stream, 0, 1500, size=200)
    config = uplink_config(
        hub.broker.url, max_bytes_per_second="20KiB", batch_max_events=100,
        streams={"alerts": {"priority": 10}},
    )  # fmt: skip
    uplink = Uplink(config, queue, DEVICE, ["alerts", *bulk])
    latencies = []
    async with running(uplink):
        await eventually(lambda: uplink.stats.batches >= 6, 15, "the bulk drain under way")
        for n in range(3):
            await asyncio.sleep(0.7)
            sent = time.monotonic()
            await append(queue, "alerts", n, n + 1, size=40)
            await eventually(lambda n=n: len(hub.seqs("alerts")) == n + 1, 10, "the alert")
            latencies.append(time.monotonic() - sent)
        bulk_sent = sum(len(hub.seqs(s)) for s in bulk)
    await queue.close()
    batch_time = 11 * 1024 / CAP
    assert bulk_sent < 4500, "the backlog should still be draining"
    assert max(latencies) < 0.05 + batch_time + 0.5, latencies


async def test_daily_budget_stops_survives_a_restart_and_resumes_the_next_day(
    tmp_path: Path, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC).timestamp()]
    budget = 30 * 1024
    queue = await open_queue(tmp_path / "agent", "s")
    await append(queue, "s", 0, 1000, size=200)  # about 110 KiB compressed
    config = uplink_config(hub.broker.url, daily_budget="30KiB", batch_max_events=40)
    caplog.set_level(logging.WARNING, "sync.daily_budget")

    def uplink() -> Uplink:
        return Uplink(config, queue, DEVICE, ["s"], wall_clock=lambda: clock[0],
                      budget_recheck=0.05)  # fmt: skip

    first = uplink()
    async with running(first):
        await eventually(lambda: first.stats.budget_stops == 1, 15, "the budget to run out")
        delivered = len(hub.seqs("s"))
        await asyncio.sleep(1.0)
        assert len(hub.seqs("s")) == delivered, "nothing more is sent once the budget is spent"
    stats = first.stats
    assert budget - 5000 < stats.bytes_published <= budget  # batches are about 4.5 KiB
    assert stats.budget_spent_today == stats.bytes_published
    stops = [r for r in caplog.records if "budget reached" in r.getMessage()]
    assert len(stops) == 1 and "of 30720 bytes sent on 2026-11-27" in stops[0].getMessage()

    await queue.close()  # restart: same day, the count comes back from the queue
    queue = await open_queue(tmp_path / "agent", "s")
    second = uplink()
    async with running(second):
        await asyncio.sleep(1.5)
        assert second.stats.bytes_published == 0
        assert second.stats.budget_spent_today == stats.budget_spent_today
        assert len(hub.seqs("s")) == delivered
        clock[0] += 12 * 3600  # midnight UTC: a new budget
        await eventually(lambda: len(hub.seqs("s")) > delivered, 10, "sending to resume")
        assert 0 < second.stats.budget_spent_today <= budget
    await queue.close()
    seqs = hub.seqs("s")
    assert len(seqs) == len(set(seqs))
    assert second.stats.budget_stops == 1  # the count survived the restart; logged once
    assert len([r for r in caplog.records if "budget reached" in r.getMessage()]) == 1


async def test_newest_first_sends_the_present_then_backfills_each_event_once(
    tmp_path: Path, hub: Hub
) -> None:
    total, size = 3000, 100
    queue = await open_queue(tmp_path / "agent", "dash")
    await append(queue, "dash", 0, total)
    config = uplink_config(
        hub.broker.url, batch_max_events=size, max_bytes_per_second="20KiB",
        streams={"dash": {"drain_order": "newest_first"}},
    )  # fmt: skip
    first = Uplink(config, queue, DEVICE, ["dash"])
    async with running(first):
        await eventually(lambda: len(hub.seqs("dash")) >= size, 10, "the first batch")
        assert hub.seqs("dash")[:size] == list(range(total - size + 1, total + 1))
        await eventually(lambda: len(hub.seqs("dash")) >= total // 3, 20, "a third")
        cursor = await queue.cursor("dash", "uplink")
        assert cursor < total - size  # the newest range is acked above the cursor
        queue.request_housekeeping()
        await queue.transact(lambda tx: None)  # housekeeping runs with this commit
        # Housekeeping deleted what the cursor passed, and nothing above it. The backfill
        # goes on meanwhile, so the cursor may have moved on since it was read.
        lowest, held = held_range(queue)
        moved = await queue.cursor("dash", "uplink")
        assert held == total - lowest + 1  # what is held has no hole
        assert cursor <= lowest - 1 <= moved  # deleted: up to the cursor of that moment
    await queue.close()
    at_restart = hub.seqs("dash")
    prefix = contiguous_prefix(at_restart)
    assert prefix < total

    queue = await open_queue(tmp_path / "agent", "dash")
    cursor = await queue.cursor("dash", "uplink")
    assert cursor <= prefix, "the cursor moved past an event the hub does not have"
    second = Uplink(config, queue, DEVICE, ["dash"])
    async with running(second):
        await asyncio.sleep(0.3)
        await append(queue, "dash", total, total + 5)  # live events during the backfill
        await eventually(lambda: total + 5 in hub.seqs("dash"), 5, "the live events")
        assert len(hub.seqs("dash")) < total, "live events should overtake the backfill"
        await eventually(lambda: len(hub.seqs("dash")) == total + 5, 20, "the backfill")
        await eventually(
            lambda: first_cursor_at(queue) == total + 5, 5, "the cursor at the end"
        )  # fmt: skip
    seqs = hub.seqs("dash")
    assert sorted(seqs) == list(range(1, total + 6))
    ((duplicates,),) = query(hub.db, "SELECT sum(duplicates) FROM positions WHERE device = ?",
                             DEVICE)  # fmt: skip
    assert duplicates <= size, "a restart mid-backfill resent more than one batch"
    assert await queue.load_state("uplink") == {"acked_ranges.dash": b"[]"}
    await queue.close()


def held_range(queue: Any) -> tuple[int, int]:
    """The lowest seq of `dash` the queue still holds, and how many it holds."""
    rows = query(
        queue.path, "SELECT min(e.seq), count(*) FROM events e JOIN streams s"
        " ON s.id = e.stream_id WHERE s.name = 'dash'",
    )  # fmt: skip
    return int(rows[0][0]), int(rows[0][1])


def first_cursor_at(queue: Any) -> int:
    """The committed uplink cursor, read on the side (the predicate cannot await)."""
    rows = query(
        queue.path, "SELECT c.position FROM cursors c JOIN streams s ON s.id = c.stream_id"
        " WHERE s.name = 'dash' AND c.consumer = 'uplink'",
    )  # fmt: skip
    return int(rows[0][0]) if rows else 0


def contiguous_prefix(seqs: list[int]) -> int:
    """The largest n such that 1..n are all in `seqs`."""
    present, n = set(seqs), 0
    while n + 1 in present:
        n += 1
    return n


async def test_batch_size_halves_on_ack_timeouts_and_grows_back_on_fast_acks(
    tmp_path: Path, hub: Hub, processes: list[EdgestreamProcess]
) -> None:
    queue = await open_queue(tmp_path / "agent", "s")
    config = uplink_config(hub.broker.url, batch_max_events=400, ack_timeout="500ms")
    uplink = Uplink(config, queue, DEVICE, ["s"])
    sizes: list[int] = []
    async with running(uplink):
        hub.process.kill()  # acks stop: every batch times out
        await append(queue, "s", 0, 20_000)
        await eventually(lambda: uplink.stats.batch_sizes["s"] <= 50, 15, "the size to shrink")
        sizes.append(uplink.stats.batch_sizes["s"])
        restarted = EdgestreamProcess("hub", hub.process.config, tmp_path / "hub2.log").start()
        processes.append(restarted)
        await asyncio.to_thread(probe_hub, hub.broker.url)
        await eventually(lambda: uplink.stats.batch_sizes["s"] == 400, 20, "the size to regrow")
        await eventually(lambda: len(hub.seqs("s")) == 20_000, 20, "the backlog at the hub")
    await queue.close()
    assert sizes[0] <= 50 and uplink.stats.retries >= 3
    assert sorted(set(hub.seqs("s"))) == list(range(1, 20_001))

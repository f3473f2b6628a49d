"""The durable queue: sequence numbers, group commit, cursors, retention, rollback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.queue import DurableQueue, NewEvent, StreamLimits, UnknownStreamError, WriteTx

BIG = StreamLimits(max_bytes=1 << 30, max_age=86400.0)


def ev(i: int, size: int = 20, ingest: float | None = None) -> NewEvent:
    now = time.time() if ingest is None else ingest
    return NewEvent(now, now, f"k{i % 3}", "t/x", (b"%08d" % i).ljust(size, b"."))


async def open_queue(tmp_path: Path, **limits: StreamLimits) -> DurableQueue:
    return await DurableQueue.open(
        tmp_path, limits or {"s": BIG}, commit_interval=0.02, synchronous="normal"
    )


async def test_sequence_numbers_are_monotonic_and_survive_reopen(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    assert await q.append("s", [ev(1), ev(2)]) == [1, 2]
    epoch = q.epoch
    await q.close()
    q = await open_queue(tmp_path)
    assert q.epoch == epoch
    assert await q.append("s", [ev(3)]) == [3]
    batch = await q.read_batch("s", "c", 10, 1 << 20)
    assert [e.seq for e in batch.events] == [1, 2, 3]
    assert batch.events[0].payload.startswith(b"00000001")
    await q.close()


async def test_group_commit_shares_one_transaction(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, {"s": BIG}, commit_interval=0.2, synchronous="normal")
    await q.append("s", [ev(0)])  # the first commit is immediate
    start = q._writer.commits
    results = await asyncio.gather(*(q.append("s", [ev(i)]) for i in range(1, 201)))
    assert sorted(r[0] for r in results) == list(range(2, 202))
    assert q._writer.commits - start <= 2
    await q.close()


async def test_cursor_ack_deletes_consumed_events(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.register_consumers({"s": ["a", "b"]})
    await q.append("s", [ev(i) for i in range(10)])
    await q.ack("s", "a", 10)
    await q.ack("s", "b", 4)
    q.request_housekeeping()
    await q.append("s", [ev(10)])
    (stats,) = [s for s in await q.stats() if s.name == "s"]
    assert stats.depth == 7
    batch = await q.read_batch("s", "b", 100, 1 << 20)
    assert [e.seq for e in batch.events] == [5, 6, 7, 8, 9, 10, 11]
    assert await q.cursor("s", "a") == 10
    await q.ack("s", "a", 3)  # a stale ack never moves a cursor back
    assert await q.cursor("s", "a") == 10
    await q.close()


async def test_drop_oldest_records_a_gap_and_counts(tmp_path: Path) -> None:
    q = await open_queue(tmp_path, s=StreamLimits(max_bytes=1000, max_age=86400.0))
    for i in range(30):
        await q.append("s", [ev(i, size=60)])
    batch = await q.read_batch("s", "uplink", 1000, 1 << 20)
    (stats,) = [s for s in await q.stats() if s.name == "s"]
    assert stats.bytes <= 1000
    assert batch.gaps and batch.gaps[0].reason == "max_bytes"
    gap = batch.gaps[0]
    assert gap.first_seq == 1 and gap.last_seq == batch.events[0].seq - 1
    assert stats.counters["dropped.max_bytes"] == gap.count
    assert batch.upto_seq == 30
    await q.close()


async def test_drop_newest_keeps_old_events_and_reports_new_ones_as_gap(tmp_path: Path) -> None:
    q = await open_queue(
        tmp_path, s=StreamLimits(max_bytes=500, max_age=86400.0, overflow="drop_newest")
    )
    seqs = await q.append("s", [ev(i, size=60) for i in range(20)])
    assert seqs == list(range(1, 21))
    batch = await q.read_batch("s", "c", 1000, 1 << 20)
    kept = [e.seq for e in batch.events]
    assert kept == list(range(1, len(kept) + 1))
    assert [(g.first_seq, g.last_seq, g.reason) for g in batch.gaps] == [
        (len(kept) + 1, 20, "drop_newest")
    ]
    await q.close()


async def test_block_policy_waits_until_consumers_free_room(tmp_path: Path) -> None:
    q = await open_queue(tmp_path, s=StreamLimits(max_bytes=300, max_age=86400.0, overflow="block"))
    await q.register_consumers({"s": ["c"]})
    await q.append("s", [ev(i, size=60) for i in range(4)])
    blocked = asyncio.create_task(q.append("s", [ev(9)]))
    await asyncio.sleep(0.2)
    assert not blocked.done()
    await q.ack("s", "c", 4)
    assert await asyncio.wait_for(blocked, 5) == [5]
    await q.close()


async def test_max_age_drops_old_events_as_gap(tmp_path: Path) -> None:
    q = await open_queue(tmp_path, s=StreamLimits(max_bytes=1 << 20, max_age=60.0))
    old = time.time() - 3600
    await q.append("s", [ev(i, ingest=old) for i in range(5)] + [ev(5)])
    q.request_housekeeping()
    await q.append("s", [ev(6)])
    batch = await q.read_batch("s", "c", 100, 1 << 20)
    assert [e.seq for e in batch.events] == [6, 7]
    assert [(g.first_seq, g.last_seq, g.reason) for g in batch.gaps] == [(1, 5, "max_age")]
    await q.close()


async def test_failing_job_rolls_back_alone(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, {"s": BIG}, commit_interval=0.2, synchronous="normal")
    await q.append("s", [ev(0)])

    def bad(tx: WriteTx) -> None:
        tx.append("s", [ev(1), ev(2)])
        raise ValueError("boom")

    good = asyncio.ensure_future(q.append("s", [ev(3)]))
    with pytest.raises(ValueError, match="boom"):
        await q.transact(bad)
    assert await good == [2]  # the failed job's numbers were given back
    batch = await q.read_batch("s", "c", 100, 1 << 20)
    assert [e.seq for e in batch.events] == [1, 2]
    await q.close()


async def test_unknown_stream_is_refused(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    with pytest.raises(UnknownStreamError, match="'nope' is not configured"):
        await q.append("nope", [ev(1)])
    await q.close()


async def test_read_is_bounded_by_bytes_but_returns_at_least_one(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.append("s", [ev(i, size=100) for i in range(10)])
    batch = await q.read_batch("s", "c", 100, 250)
    assert len(batch.events) == 2
    batch = await q.read_batch("s", "c", 100, 10)
    assert len(batch.events) == 1
    await q.close()


async def test_wait_for_data_wakes_on_commit(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    waiter = asyncio.create_task(q.wait_for_data("s", 0, 5))
    await asyncio.sleep(0.05)
    await q.append("s", [ev(1)])
    assert await waiter
    assert not await q.wait_for_data("s", 1, 0.05)
    await q.close()

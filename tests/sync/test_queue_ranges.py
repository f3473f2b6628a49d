"""The queue's read API for draining newest first: the newest batch, and holes below a range."""

from __future__ import annotations

from pathlib import Path

from agent.queue.durable import DurableQueue
from agent.queue.records import StreamLimits
from tests.sync.conftest import append


async def test_newest_start_reads_the_last_events_bounded_by_count_and_bytes(
    tmp_path: Path,
) -> None:
    queue = await DurableQueue.open(tmp_path, {"s": StreamLimits(1 << 30, 86400.0, "block")})
    await append(queue, "s", 0, 100)
    start = await queue.newest_start("s", 0, 10, 1 << 20)
    batch = await queue.read_after("s", start, 10, 1 << 20)
    assert (start, batch.events[0].seq, batch.upto_seq) == (90, 91, 100)
    assert await queue.newest_start("s", 95, 10, 1 << 20) == 95  # fewer than 10 left
    assert await queue.newest_start("s", 100, 10, 1 << 20) == 100  # nothing past it
    small = await queue.newest_start("s", 0, 10, 1)  # bytes bound: still one event
    assert small == 99
    await queue.close()


async def test_read_before_stops_below_the_given_seq(tmp_path: Path) -> None:
    queue = await DurableQueue.open(tmp_path, {"s": StreamLimits(1 << 30, 86400.0, "block")})
    await append(queue, "s", 0, 50)
    batch = await queue.read_after("s", 10, 100, 1 << 20, before_seq=21)
    assert [e.seq for e in batch.events] == list(range(11, 21))
    assert batch.upto_seq == 20
    empty = await queue.read_after("s", 10, 100, 1 << 20, before_seq=11)
    assert empty.empty and empty.upto_seq == 10
    await queue.close()


async def test_a_gap_in_a_hole_is_clipped_to_the_hole(tmp_path: Path) -> None:
    limits = {"s": StreamLimits(1 << 30, 86400.0, "block")}
    queue = await DurableQueue.open(tmp_path, limits)
    await append(queue, "s", 0, 30)
    await queue.transact(lambda tx: tx.add_gap("s", 31, 40, "max_bytes"))  # seqs 31-40 lost
    await queue.transact(lambda tx: tx.stream("s").__setattr__("next_seq", 41))
    await append(queue, "s", 30, 40)  # seqs 41-50
    batch = await queue.read_after("s", 30, 100, 1 << 20, before_seq=36)
    assert not batch.events
    assert [(g.first_seq, g.last_seq) for g in batch.gaps] == [(31, 35)]
    assert batch.upto_seq == 35
    await queue.close()

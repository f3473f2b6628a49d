"""The queue's stream statistics are exact without reading every row.

`stream_stats` derives a stream's depth from its first and last stored numbers minus
the recorded gaps between them (agent/queue/reader.py); these tests compare it with a
plain count(*) after random mixes of appends, consumption and every overflow policy.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from agent.queue import DurableQueue, NewEvent, StreamLimits
from agent.queue.reader import stream_stats


def event(size: int) -> NewEvent:
    now = time.time()
    return NewEvent(now, now, None, None, b"x" * size)


def counted(path: Path) -> dict[str, tuple[int, float | None]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT s.name, count(e.seq), min(e.ingest_time) FROM streams s"
            " LEFT JOIN events e ON e.stream_id = s.id GROUP BY s.name"
        ).fetchall()
    return {name: (count, oldest) for name, count, oldest in rows}


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest", "block"])
@pytest.mark.parametrize("seed", range(4))
async def test_depth_equals_a_full_count_after_random_traffic(
    tmp_path: Path, overflow: str, seed: int
) -> None:
    rng = random.Random(seed)
    limit = 4000 if overflow != "block" else 1 << 20
    queue = await DurableQueue.open(tmp_path, {"s": StreamLimits(limit, 3600.0, overflow)})
    await queue.register_consumers({"s": ["reader"]})
    position = 0
    for _ in range(60):
        sizes = [rng.randrange(1, 300) for _ in range(rng.randrange(1, 20))]
        await queue.append("s", [event(size) for size in sizes])
        if rng.random() < 0.3 and queue.last_seq("s") > position:
            position = rng.randrange(position, queue.last_seq("s") + 1)
            await queue.ack("s", "reader", position)
    await queue.close()
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        stats = {s.name: s for s in stream_stats(conn)}
    for name, (count, oldest) in counted(tmp_path / "queue.db").items():
        assert stats[name].depth == count, name
        assert stats[name].oldest_ingest_time == oldest, name

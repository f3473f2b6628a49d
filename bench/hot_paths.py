"""Two hot-path changes of the issue 6/7 session, each against its old form in one run.

    python bench/hot_paths.py [--events 1000000] [--wire-events 100000]

1. Stream statistics (`/status`, `/metrics`, `edgestream status`): the old query counted
   every queued row (`count(*), min(ingest_time)`); the new `_depth_and_oldest` reads the
   first and last row and the gaps between them. Both run on the same queue database of
   `--events` events, alternately, on one connection.
2. Wire v2 encoding: the nesting guard added to `parse_object` (payloads nested past
   MAX_NESTING travel raw). The same W-wire batches are encoded with the guard and with
   it bypassed (the old behaviour), alternately.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import print_machine, print_table, w_wire
from wire_size import as_stored, batches

from agent.queue import schema
from agent.queue.reader import _depth_and_oldest
from agent.queue.records import StreamLimits, event_size
from agent.queue.streams import load_streams, save_counters
from sync import wire_patterns
from sync.wire import encode

ROUNDS = 5


def build_queue(path: Path, count: int) -> int:
    """A queue database with `count` small events in stream `s`; returns its stream id."""
    conn = schema.connect(str(path), "normal")
    schema.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    state = load_streams(conn, {"s": StreamLimits(1 << 40, 1e9)})["s"]
    now, payload = time.time(), b'{"temp":21.5,"device":"d1"}'
    rows = (
        (state.id, n, now + n * 1e-6, now, None, "t", payload, None) for n in range(1, count + 1)
    )
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    state.next_seq, state.bytes = count + 1, count * event_size(payload, None, "t", None)
    save_counters(conn, [state])
    conn.execute("COMMIT")
    conn.close()
    return int(state.id)


def old_stats(conn: sqlite3.Connection, sid: int) -> tuple[int, float | None]:
    depth, oldest = conn.execute(
        "SELECT count(*), min(ingest_time) FROM events WHERE stream_id = ?", (sid,)
    ).fetchone()
    return int(depth), oldest


def best(fn: Callable[[], object]) -> float:
    """Median seconds of ROUNDS calls."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def stats_rows(count: int) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "queue.db"
        sid = build_queue(path, count)
        conn = sqlite3.connect(path)
        assert old_stats(conn, sid)[0] == _depth_and_oldest(conn, sid)[0] == count
        old = best(lambda: old_stats(conn, sid))
        new = best(lambda: _depth_and_oldest(conn, sid))
        conn.close()
    return [
        [f"count(*), min(ingest_time), {count:,} events (before)", f"{old * 1000:.2f} ms", "1.00"],
        ["first row, last row, gaps between (after)", f"{new * 1000:.3f} ms", f"{new / old:.5f}"],
    ]


def wire_rows(count: int) -> list[list[str]]:
    groups = batches(as_stored(w_wire(count)), 1000)
    guarded = wire_patterns._deep

    def encode_all() -> None:
        for group in groups:
            encode(group)

    with_guard, without = [], []
    for _ in range(ROUNDS):
        wire_patterns._deep = guarded  # type: ignore[assignment]
        with_guard.append(best_once(encode_all))
        wire_patterns._deep = lambda payload, obj: False  # type: ignore[assignment]
        without.append(best_once(encode_all))
    wire_patterns._deep = guarded  # type: ignore[assignment]
    old, new = statistics.median(without), statistics.median(with_guard)
    return [
        [f"encode {count:,} W-wire events, batch 1,000, no guard (before)",
         f"{count / old:,.0f} ev/s", "1.00"],
        ["the same with the nesting guard (after)", f"{count / new:,.0f} ev/s",
         f"{old / new:.3f}"],
    ]  # fmt: skip


def best_once(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--wire-events", type=int, default=100_000)
    args = parser.parse_args()
    print_machine()
    print_table("Stream statistics, one stream (median of 5)", ["query", "time", "ratio"],
                stats_rows(args.events))  # fmt: skip
    print_table("Wire v2 encoding (median of 5 alternating rounds)", ["what", "rate", "ratio"],
                wire_rows(args.wire_events))  # fmt: skip


if __name__ == "__main__":
    main()

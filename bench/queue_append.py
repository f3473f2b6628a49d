"""Durable append: `DurableQueue.append` against raw batched sqlite3, in the same run.

What it measures and why:
- Baseline: plain `sqlite3` inserting W-ingest rows (~100-byte JSON payloads) into a
  table with exactly the queue's `events` schema, WAL mode, `executemany` of 1,000
  (and 100) rows per transaction, synchronous NORMAL and FULL. This is the ceiling
  any SQLite-backed queue can reach on this machine.
- The queue: `DurableQueue.append` (synchronous full and normal, commit_interval
  100 ms, commit_max_events 5,000) with several concurrent appenders, appending 1,000
  or 100 events per call, so group commit has something to group. An append resolves
  only after its commit, so throughput depends on how many events are outstanding:
  with fewer than `commit_max_events` in flight each group waits for the commit
  interval. Both regimes are shown.
- Commits per second (`q._writer.commits`): each commit is one WAL fsync with
  synchronous=FULL, which is what wears an SD card (target <= 10/s).

Each measurement runs for a fixed time on a fresh database; rounds are interleaved
and the median is reported. Target: queue >= 60 % of raw batched sqlite3.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchkit import (
    fmt_int,
    fmt_ratio,
    ingest_payload,
    print_machine,
    print_table,
    temp_dir,
)

from agent.queue import DurableQueue, NewEvent, StreamLimits
from agent.queue.schema import ensure_schema

STREAM = "s"
INSERT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
TARGET = 0.60
COMMIT_INTERVAL = 0.1
COMMIT_MAX_EVENTS = 5000


@dataclass(frozen=True, slots=True)
class Case:
    """One configuration to measure."""

    kind: str  # "raw" | "queue"
    synchronous: str  # "normal" | "full"
    per_call: int  # rows per transaction (raw) or events per append (queue)
    appenders: int = 1

    @property
    def label(self) -> str:
        if self.kind == "raw":
            return f"raw sqlite3, {self.per_call}/txn, {self.synchronous.upper()}"
        return (
            f"DurableQueue.append, {self.per_call}/call x {self.appenders} appenders,"
            f" {self.synchronous}"
        )


@dataclass(frozen=True, slots=True)
class Result:
    """Events stored, commits made and wall time of one measurement."""

    events: int
    commits: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def commit_rate(self) -> float:
        return self.commits / self.seconds


def make_events(count: int) -> list[NewEvent]:
    """W-ingest events as the MQTT source would hand them to the queue."""
    now = time.time()
    events = []
    for i in range(count):
        topic, payload = ingest_payload(i)
        events.append(NewEvent(now, now, topic.split("/")[1], topic, payload))
    return events


# ------------------------------------------------------------------ raw sqlite3


def raw_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    ensure_schema(conn)  # the very same tables as the queue
    return conn


def run_raw(path: Path, case: Case, seconds: float, events: list[NewEvent]) -> Result:
    """Transactions of `per_call` rows, each built from the events, until time is up."""
    conn = raw_connect(path, case.synchronous)
    batch = events[: case.per_call]
    seq = commits = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        rows = [
            (1, seq + i, e.event_time, e.ingest_time, e.key, e.topic, e.payload, e.headers)
            for i, e in enumerate(batch, 1)
        ]
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
        seq += len(rows)
        commits += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return Result(seq, commits, elapsed)


# ------------------------------------------------------------------ the queue


async def run_queue(path: Path, case: Case, seconds: float, events: list[NewEvent]) -> Result:
    """`appenders` tasks each appending `per_call` events in a loop until time is up."""
    limits = {STREAM: StreamLimits(max_bytes=1 << 40, max_age=7 * 86400.0)}
    q = await DurableQueue.open(
        path,
        limits,
        commit_interval=COMMIT_INTERVAL,
        commit_max_events=COMMIT_MAX_EVENTS,
        synchronous=case.synchronous,
    )
    batch = events[: case.per_call]
    stored = [0]
    start = time.perf_counter()
    commits_before = q._writer.commits
    deadline = start + seconds

    async def appender() -> None:
        while time.perf_counter() < deadline:
            seqs = await q.append(STREAM, batch)  # await first: `+=` would read a stale total
            stored[0] += len(seqs)

    async with asyncio.TaskGroup() as tasks:
        for _ in range(case.appenders):
            tasks.create_task(appender())
    elapsed = time.perf_counter() - start
    commits = q._writer.commits - commits_before
    await q.close()
    return Result(stored[0], commits, elapsed)


# ------------------------------------------------------------------ driver


def measure(case: Case, seconds: float, events: list[NewEvent]) -> Result:
    with temp_dir("append") as tmp:
        if case.kind == "raw":
            return run_raw(tmp / "raw.db", case, seconds, events)
        return asyncio.run(run_queue(tmp, case, seconds, events))


def cases() -> list[Case]:
    raw = [Case("raw", s, n) for s in ("normal", "full") for n in (1000, 100)]
    queue = [
        Case("queue", s, n, a)
        for s in ("full", "normal")
        for n, a in ((1000, 8), (100, 64), (100, 8))
    ]
    return raw + queue


def run_rounds(rounds: int, seconds: float) -> dict[Case, Result]:
    """Interleave the cases round by round; keep the median-rate result of each."""
    events = make_events(1000)
    results: dict[Case, list[Result]] = {c: [] for c in cases()}
    for _ in range(rounds):
        for case, runs in results.items():
            runs.append(measure(case, seconds, events))
    return {c: _median(rs) for c, rs in results.items()}


def _median(results: list[Result]) -> Result:
    rates = [r.rate for r in results]
    middle = statistics.median_low(rates)
    return results[rates.index(middle)]


def _verdict(case: Case, ratio: float) -> str:
    if case.kind == "raw":
        return "-"
    if case.per_call * case.appenders < COMMIT_MAX_EVENTS:
        return "n/a: under 5,000 outstanding, each group waits the 100 ms interval"
    return "meets" if ratio >= TARGET else "MISSES"


def report(results: dict[Case, Result], rounds: int, seconds: float) -> None:
    raw_best: Callable[[str], float] = lambda s: results[Case("raw", s, 1000)].rate  # noqa: E731
    rows = []
    for case, res in results.items():
        ratio = res.rate / raw_best(case.synchronous)
        verdict = _verdict(case, ratio)
        rows.append([
            case.label, fmt_int(res.rate), fmt_ratio(ratio), verdict,
            f"{res.commit_rate:.1f}", f"{res.events / max(res.commits, 1):,.0f}",
        ])  # fmt: skip
    print_table(
        f"Durable append, W-ingest payloads ({rounds} rounds x {seconds:.0f} s, median)",
        ["case", "ev/s", "vs raw 1000/txn same sync", "target >= 60 %", "commits/s",
         "events/commit"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print_machine()
    results = run_rounds(args.rounds, args.seconds)
    report(results, args.rounds, args.seconds)


if __name__ == "__main__":
    main()

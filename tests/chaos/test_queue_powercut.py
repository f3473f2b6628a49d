"""A power cut during heavy queue writes leaves a queue that opens whole and a prefix.

The writer (tests/chaos/writers.py) appends transactions of 1..30 events from four
concurrent producers and moves a consumer cursor in each; housekeeping deletes what
the cursor passed. Every power-cut variant of every snapshot (tests/chaos/powercut.py)
must open through DurableQueue.open without being set aside, pass integrity_check,
and hold a contiguous run of events ending at a transaction's end, byte-exact, with the
cursor and the stream's counters of that same transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import orjson
import pytest

from agent.queue import DurableQueue, StreamLimits
from agent.queue.records import SQL_EVENT_SIZE
from tests.chaos import writers
from tests.chaos.campaign import Judge, Outcome, Run, campaign

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


def acked_seq(lines: list[str]) -> int:
    """The last sequence number of any acknowledged transaction."""
    return max((int(line.split()[2]) for line in lines), default=0)


def last_seq(db: Path) -> int:
    """How far a copy got: the stream's last sequence number."""
    try:
        with closing(sqlite3.connect(db)) as conn:
            sql = "SELECT next_seq FROM streams WHERE name = ?"
            found = conn.execute(sql, (writers.QUEUE_STREAM,)).fetchone()
    except sqlite3.OperationalError:  # the schema itself is not in this copy yet
        return 0
    return 0 if found is None else int(found[0]) - 1


async def _open_like_the_agent(data_dir: Path) -> Path | None:
    limits = {writers.QUEUE_STREAM: StreamLimits(1 << 34, 1e9)}
    queue = await DurableQueue.open(data_dir, limits, synchronous="full")
    await queue.close()
    return queue.set_aside


def judge_for(run: Run, scratch: Path) -> Judge:
    """The queue judge, knowing each transaction's sequence numbers from the full log."""
    firsts = {int(t): int(first) for t, first, _ in (line.split() for line in run.final_acks)}

    def judge(db: Path) -> Outcome:
        set_aside = asyncio.run(_open_like_the_agent(db.parent))
        if set_aside is not None:
            return Outcome(False, False, 0, [f"set aside as corrupt: {set_aside.name}"])
        with closing(sqlite3.connect(db)) as conn:
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if integrity != ["ok"]:
                return Outcome(True, False, 0, integrity[:3])
            return check_content(conn, firsts)

    return judge


def check_content(conn: sqlite3.Connection, firsts: dict[int, int]) -> Outcome:
    """Contiguous, byte-exact, whole transactions; cursor and counters agree."""
    stream_id, next_seq, size = conn.execute(
        "SELECT id, next_seq, bytes FROM streams WHERE name = ?", (writers.QUEUE_STREAM,)
    ).fetchone()
    last = next_seq - 1
    rows = conn.execute(
        "SELECT seq, payload FROM events WHERE stream_id = ? ORDER BY seq", (stream_id,)
    ).fetchall()
    problems = _event_problems(rows, last, firsts)
    position = _cursor(conn, stream_id)
    if rows:
        body = orjson.loads(rows[-1][1])
        expected = max(0, last - body["n"] + 1 - 1 - writers.CURSOR_LAG)
        if position != expected:
            problems.append(f"cursor {position} is not the one of transaction {body['t']}")
        if rows[0][0] - 1 > position:
            problems.append(f"events up to {rows[0][0] - 1} deleted, cursor only at {position}")
    (counted,) = conn.execute(
        f"SELECT coalesce(sum({SQL_EVENT_SIZE}), 0) FROM events WHERE stream_id = ?", (stream_id,)
    ).fetchone()
    if counted != size:
        problems.append(f"streams.bytes {size} but events hold {counted}")
    return Outcome(True, True, last, problems)


def _cursor(conn: sqlite3.Connection, stream_id: int) -> int:
    row = conn.execute(
        "SELECT position FROM cursors WHERE consumer = ? AND stream_id = ?",
        (writers.CONSUMER, stream_id),
    ).fetchone()
    return 0 if row is None else int(row[0])


def _event_problems(rows: list[tuple[int, bytes]], last: int, firsts: dict[int, int]) -> list[str]:
    problems: list[str] = []
    if rows and rows[-1][0] != last:
        problems.append(f"last event {rows[-1][0]} but next_seq says {last}")
    if rows and [r[0] for r in rows] != list(range(rows[0][0], rows[-1][0] + 1)):
        problems.append("events are not contiguous")
    for seq, payload in rows:
        body = orjson.loads(payload)
        txn, index, count = body["t"], body["i"], body["n"]
        if firsts.get(txn, -1) + index != seq:
            problems.append(f"event {seq} is not what transaction {txn} wrote there")
        elif payload != writers.queue_payload(txn, index, count):
            problems.append(f"event {seq} is not byte-exact")
        if seq == last and index != count - 1:
            problems.append(f"transaction {txn} is torn: ends at event {index + 1} of {count}")
        if len(problems) > 5:
            break
    return problems


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_queue_power_cut_leaves_a_committed_prefix(tmp_path: Path, sync: str) -> None:
    tally = campaign(
        "queue", tmp_path, db_name="queue.db", sync=sync, judge_for=judge_for,
        target=acked_seq, progress=last_seq, copies=30 if sync == "full" else 20,
    )  # fmt: skip
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert tally.counts["landed"].copies >= 10, "too few snapshots were taken"

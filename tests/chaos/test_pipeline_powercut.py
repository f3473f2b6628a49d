"""A power cut during a windowed pipeline leaves outputs, cursor and state that agree.

The writer process appends input events while a real PipelineRunner windows them
(tumbling 1 s windows, count/sum/min/max per key) and commits outputs, window
snapshot and cursor in one transaction. Every power-cut variant of every snapshot must
open through DurableQueue.open without being set aside, pass integrity_check, hold the
input as a contiguous byte-exact prefix, and -- the real test of promise 4 -- when the
pipeline resumes from the copy's cursor and snapshot and the rest of the input is
appended, the output stream must end up exactly as in a run that was never cut: a
snapshot from one transaction with a cursor or outputs from another would count a
window twice or lose one.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.queue import DurableQueue
from tests.chaos import writers
from tests.chaos.campaign import Judge, Outcome, Run, campaign

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

CONSUMER = "pipeline:win"


def acked_input(lines: list[str]) -> int:
    """The last input sequence number whose append had been acknowledged."""
    return max((int(line.split()[1]) for line in lines), default=0)


def input_seq(db: Path) -> int:
    """How far a copy got: the input stream's last sequence number."""
    try:
        with closing(sqlite3.connect(db)) as conn:
            row = conn.execute("SELECT next_seq FROM streams WHERE name = 'in'").fetchone()
    except sqlite3.OperationalError:  # the schema itself is not in this copy yet
        return 0
    return 0 if row is None else int(row[0]) - 1


async def open_like_the_agent(data_dir: Path) -> Path | None:
    """Open and close the copy as the agent's start would; where it was set aside, if so."""
    queue = await DurableQueue.open(data_dir, writers.pipeline_limits())
    await queue.close()
    return queue.set_aside


async def resume(data_dir: Path, total: int) -> tuple[Path | None, list[bytes]]:
    """Open like the agent, feed the rest of the input, run the pipeline dry: outputs."""
    queue = await DurableQueue.open(data_dir, writers.pipeline_limits(), commit_interval=0.001)
    try:
        if queue.set_aside is not None:
            return queue.set_aside, []
        start = queue.last_seq("in") + 1
        for first in range(start, total + 1, 2000):
            last = min(first + 1999, total)
            await queue.append("in", [writers.pipeline_input(n) for n in range(first, last + 1)])
        runner = writers.pipeline_runner(queue)
        await runner.restore()
        while await runner.step_once():
            pass
        batch = await queue.read_after("out", 0, 1 << 30, 1 << 40)
        return None, _canonical(e.payload for e in batch.events)
    finally:
        await queue.close()


def _canonical(payloads: Any) -> list[bytes]:
    """Outputs as comparable bytes, in a fixed order (slicing may order keys differently)."""
    return sorted(orjson.dumps(orjson.loads(p), option=orjson.OPT_SORT_KEYS) for p in payloads)


def judge_for(run: Run, scratch: Path) -> Judge:
    """The pipeline judge: structure of the copy, then the resumed outputs."""
    total = acked_input(run.final_acks)
    none, reference = asyncio.run(resume(scratch / "reference", total))
    assert none is None and reference, "the uninterrupted reference run produced nothing"

    def judge(db: Path) -> Outcome:
        set_aside = asyncio.run(open_like_the_agent(db.parent))
        if set_aside is not None:
            return Outcome(False, False, 0, [f"set aside as corrupt: {set_aside.name}"])
        with closing(sqlite3.connect(db)) as conn:
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if integrity != ["ok"]:
                return Outcome(True, False, 0, integrity[:3])
            problems, reached = check_input(conn)
        _, outputs = asyncio.run(resume(db.parent, total))
        if outputs != reference:
            problems.append(_difference(outputs, reference))
        return Outcome(True, True, reached, problems)

    return judge


def check_input(conn: sqlite3.Connection) -> tuple[list[str], int]:
    """The input is a contiguous byte-exact prefix; the cursor points inside it."""
    stream_id, next_seq = conn.execute(
        "SELECT id, next_seq FROM streams WHERE name = 'in'"
    ).fetchone()
    rows = conn.execute(
        "SELECT seq, payload FROM events WHERE stream_id = ? ORDER BY seq", (stream_id,)
    ).fetchall()
    cursor = conn.execute(
        "SELECT position FROM cursors WHERE consumer = ? AND stream_id = ?", (CONSUMER, stream_id)
    ).fetchone()
    position = 0 if cursor is None else int(cursor[0])
    problems = []
    last = next_seq - 1
    if rows and [seq for seq, _ in rows] != list(range(rows[0][0], last + 1)):
        problems.append(f"input events are not a contiguous run ending at {last}")
    if any(payload != writers.pipeline_input(seq).payload for seq, payload in rows):
        problems.append("an input event is not byte-exact")
    if position > last or (rows and rows[0][0] - 1 > position):
        problems.append(f"cursor {position} does not fit the input held ({len(rows)} to {last})")
    return problems, last


def _difference(outputs: list[bytes], reference: list[bytes]) -> str:
    extra = sorted(set(outputs) - set(reference))[:2]
    missing = sorted(set(reference) - set(outputs))[:2]
    return (
        f"resumed outputs differ from an uninterrupted run: {len(outputs)} vs "
        f"{len(reference)}, extra {extra}, missing {missing}"
    )


def test_pipeline_power_cut_resumes_exactly_once(tmp_path: Path) -> None:
    tally = campaign(
        "pipeline", tmp_path, db_name="queue.db", sync="full", judge_for=judge_for,
        target=acked_input, progress=input_seq,
    )  # fmt: skip
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert tally.counts["landed"].copies >= 10, "too few snapshots were taken"

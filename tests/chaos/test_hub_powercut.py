"""A power cut during heavy hub commits leaves a store that opens whole and a prefix.

The writer commits groups of 1..3 batches (from different devices) per transaction
through SqliteCentralStore.commit_now. Every power-cut variant of every snapshot must
open with SqliteCentralStore, pass integrity_check, and hold exactly the state after
some number of whole commit groups (never part of a group, never part of a batch):
each device's events 1..m byte-exact, and its positions row saying m.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from sync.hub.store import SqliteCentralStore
from tests.chaos import writers
from tests.chaos.campaign import Judge, Outcome, Run, campaign

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

State = tuple[int, ...]


def states_after_groups(lines: list[str]) -> list[State]:
    """Each device's last seq after 0, 1, 2... acknowledged commit groups."""
    upto = dict.fromkeys(writers.HUB_DEVICES, 0)
    states = [tuple(upto.values())]
    for line in lines:
        for item in line.split():
            device, seq = item.split(":")
            upto[device] = int(seq)
        states.append(tuple(upto.values()))
    return states


def device_state(db: Path) -> State:
    """Each device's highest stored sequence number."""
    try:
        with closing(sqlite3.connect(db)) as conn:
            rows = dict(conn.execute("SELECT device, max(seq) FROM events GROUP BY device"))
    except sqlite3.OperationalError:  # the schema itself is not in this copy yet
        rows = {}
    return tuple(int(rows.get(device, 0)) for device in writers.HUB_DEVICES)


def judge_for(run: Run, scratch: Path) -> Judge:
    """The hub judge: a copy must equal the state after a whole number of groups."""
    groups = {state: index for index, state in enumerate(states_after_groups(run.final_acks))}

    def judge(db: Path) -> Outcome:
        try:
            SqliteCentralStore(db).close_now()
        except sqlite3.DatabaseError as exc:
            return Outcome(False, False, 0, [f"the hub cannot open it: {exc}"])
        with closing(sqlite3.connect(db)) as conn:
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if integrity != ["ok"]:
                return Outcome(True, False, 0, integrity[:3])
            problems = [p for device in writers.HUB_DEVICES for p in _device(conn, device)]
        state = device_state(db)
        if state not in groups:
            problems.append(f"devices at {state}: not the state after any whole commit group")
        return Outcome(True, True, groups.get(state, -1), problems)

    return judge


def _device(conn: sqlite3.Connection, device: str) -> list[str]:
    """Events 1..m byte-exact, and a positions row that agrees."""
    rows = conn.execute(
        "SELECT seq, payload FROM events WHERE device = ? AND epoch = ? AND stream = ?"
        " ORDER BY seq",
        (device, writers.HUB_EPOCH, writers.HUB_STREAM),
    ).fetchall()
    problems = []
    if [seq for seq, _ in rows] != list(range(1, len(rows) + 1)):
        problems.append(f"{device}: events are not 1..{len(rows)}")
    if any(payload != writers.hub_payload(device, seq) for seq, payload in rows):
        problems.append(f"{device}: an event is not byte-exact")
    position = conn.execute(
        "SELECT upto_seq, events, duplicates FROM positions WHERE device = ?", (device,)
    ).fetchone()
    expected = None if not rows else (len(rows), len(rows), 0)
    if position != expected:
        problems.append(f"{device}: positions {position}, events say {expected}")
    return problems


def acked_groups(lines: list[str]) -> int:
    """How many commit groups had been acknowledged."""
    return len(lines)


def test_hub_power_cut_leaves_whole_commit_groups(tmp_path: Path) -> None:
    final: list[list[str]] = []

    def progress(db: Path) -> int:
        # Only called while judging, once the writer's full log is known.
        states, state = states_after_groups(final[0]), device_state(db)
        return states.index(state) if state in states else -1

    def judge_for_run(run: Run, scratch: Path) -> Judge:
        final.append(run.final_acks)
        return judge_for(run, scratch)

    tally = campaign(
        "hub", tmp_path, db_name="hub.db", sync="full", judge_for=judge_for_run,
        target=acked_groups, progress=progress,
    )  # fmt: skip
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert tally.counts["landed"].copies >= 10, "too few snapshots were taken"

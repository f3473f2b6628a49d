"""The chaos checker on small real databases (the queue's and the hub's own schemas).

A checker that cannot fail proves nothing: each test breaks one promise in an otherwise
clean pair of databases and expects exactly that breach to be reported.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import orjson
import pytest

from agent.queue.schema import ensure_schema
from sync.hub.store import _DDL as HUB_DDL
from tests.chaos.checker import CheckResult, check
from tests.chaos.device import SetAside
from tests.chaos.system import DEVICE, SENSOR_DEVICES, WINDOW_EVENTS

READINGS = 100  # 20 per key: two full windows each
Row = tuple[str, int, bytes]
"""(stream, seq, payload) of one event at the hub."""


def reading(i: int) -> bytes:
    return orjson.dumps({"device": f"d{i % SENSOR_DEVICES}", "i": i})


def windows() -> list[bytes]:
    out = []
    for key in range(SENSOR_DEVICES):
        indices = list(range(key, READINGS, SENSOR_DEVICES))
        for start in range(0, len(indices), WINDOW_EVENTS):
            run = indices[start : start + WINDOW_EVENTS]
            out.append(orjson.dumps(
                {"key": f"d{key}", "n": len(run), "first": run[0], "last": run[-1],
                 "total": float(sum(run))}))  # fmt: skip
    return out


def clean_rows() -> list[Row]:
    rows = [("sensors", i + 1, reading(i)) for i in range(READINGS)]
    rows += [("windows", n + 1, w) for n, w in enumerate(windows())]
    rows += [("sim", n, b'{"temp": 20}') for n in range(1, 6)]
    return rows


def build(
    tmp: Path, rows: list[Row], gaps: Sequence[tuple[str, int, int, str]] = ()
) -> CheckResult:
    """Queue DB whose streams end at the highest seq of `rows` (+2 pending sim events)."""
    queue_db, hub_db = tmp / "queue.db", tmp / "central.db"
    with closing(sqlite3.connect(queue_db, isolation_level=None)) as q:
        epoch = ensure_schema(q)
        tops: dict[str, int] = {}
        for stream, seq, _ in rows:
            tops[stream] = max(tops.get(stream, 0), seq)
        for stream, _, last, _ in gaps:
            tops[stream] = max(tops[stream], last)
        tops["sim"] += 2
        for n, (stream, top) in enumerate(sorted(tops.items()), start=1):
            q.execute("INSERT INTO streams (id, name, next_seq, created_at) VALUES (?, ?, ?, 0)",
                      (n, stream, top + 1))  # fmt: skip
            if stream == "sim":
                for seq in (top - 1, top):
                    q.execute("INSERT INTO events VALUES (?, ?, 0, 0, NULL, NULL, x'00', NULL)",
                              (n, seq))  # fmt: skip
    with closing(sqlite3.connect(hub_db, isolation_level=None)) as h:
        for statement in HUB_DDL:
            h.execute(statement)
        for stream, seq, payload in rows:
            h.execute("INSERT INTO events VALUES (?, ?, ?, ?, 0, 0, NULL, NULL, ?, NULL, ?)",
                      (DEVICE, epoch, stream, seq, payload, float(seq)))  # fmt: skip
        for stream, first, last, reason in gaps:
            h.execute("INSERT INTO gaps VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                      (DEVICE, epoch, stream, first, last, reason))  # fmt: skip
    return check(queue_db, hub_db, list(range(READINGS)))


def test_a_clean_run_passes_with_pending_events_counted(tmp_path: Path) -> None:
    result = build(tmp_path, clean_rows())
    assert result.problems == []
    assert result.acked_at_hub == READINGS and result.windows_matched == 10
    assert result.streams["sim"].pending == 2


Mutation = Callable[[list[Row]], list[Row]]


def drop_seq(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r[:2] != ("sensors", 50)]


def duplicate_reading(rows: list[Row]) -> list[Row]:
    return [*rows, ("sensors", READINGS + 1, reading(7))]


def swap_readings(rows: list[Row]) -> list[Row]:
    swapped = {("sensors", 11): reading(15), ("sensors", 16): reading(10)}
    return [(s, n, swapped.get((s, n), p)) for s, n, p in rows]


def wrong_window(rows: list[Row]) -> list[Row]:
    bad = orjson.dumps({"key": "d0", "n": 10, "first": 0, "last": 45, "total": 1.0})
    return [(s, n, bad if (s, n) == ("windows", 1) else p) for s, n, p in rows]


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (drop_seq, ["sensors: 1 seqs missing below the hub's position",
                    "sensors: 1 PUBACKed readings not at the hub "
                    "(0 seqs in gaps, pending or set aside)"]),
        (duplicate_reading, ["sensors: 1 readings at the hub twice",  # a late copy
                               "sensors: 1 readings out of publish order"]),
        (swap_readings, ["sensors: 1 readings out of publish order"]),
        (wrong_window, ["windows: 1 expected windows not at the hub",
                        "windows: 1 windows an uninterrupted run would not produce"]),
    ],
)  # fmt: skip
def test_each_broken_promise_is_reported(
    tmp_path: Path, mutation: Mutation, expected: list[str]
) -> None:
    assert build(tmp_path, mutation(clean_rows())).problems == expected


def test_seqs_in_a_recorded_gap_are_not_lost(tmp_path: Path) -> None:
    rows = [r for r in clean_rows() if not (r[0] == "sensors" and 41 <= r[1] <= 45)]
    result = build(tmp_path, rows, [("sensors", 41, 45, "max_bytes")])
    assert result.streams["sensors"].in_gaps == 5 and result.gaps_by_reason == {"max_bytes": 5}
    assert result.streams["sensors"].lost == 0 and result.acked_lost == 5
    assert [p for p in result.problems if p.startswith("sensors")] == []


def windows_over(indices: list[int]) -> list[bytes]:
    """The full count windows of a run over these readings, as window payloads."""
    out = []
    for key in range(SENSOR_DEVICES):
        keyed = [i for i in indices if i % SENSOR_DEVICES == key]
        for start in range(0, len(keyed) - WINDOW_EVENTS + 1, WINDOW_EVENTS):
            run = keyed[start : start + WINDOW_EVENTS]
            out.append(orjson.dumps(
                {"key": f"d{key}", "n": len(run), "first": run[0], "last": run[-1],
                 "total": float(sum(run))}))  # fmt: skip
    return out


def set_aside_run(tmp: Path, lose_one: bool, told: bool = True) -> CheckResult:
    """Epoch `old` held readings 0-49; its file was set aside with seqs 41-50 unsent (the
    hub has 1-48: 41-48 were sent but not yet acked), and the agent told the hub of the
    rest as `set_aside` gaps (unless not `told`). The new epoch re-ingested 45-49 and
    went on to 99."""
    queue_db, hub_db = tmp / "queue.db", tmp / "central.db"
    with closing(sqlite3.connect(queue_db, isolation_level=None)) as q:
        new = ensure_schema(q)
        for n, (stream, top) in enumerate((("sensors", 55), ("windows", 5), ("sim", 0)), 1):
            q.execute("INSERT INTO streams (id, name, next_seq, created_at) VALUES (?, ?, ?, 0)",
                      (n, stream, top + 1))  # fmt: skip
    old_readings = list(range(50))
    new_readings = list(range(45, 100))
    old_windows = windows_over(old_readings)[:3]  # two were still in the old file
    rows = [("old", "sensors", n + 1, reading(i)) for n, i in enumerate(old_readings[:48])]
    rows += [("old", "windows", n + 1, w) for n, w in enumerate(old_windows)]
    rows += [(new, "sensors", n + 1, reading(i)) for n, i in enumerate(new_readings)]
    rows += [(new, "windows", n + 1, w) for n, w in enumerate(windows_over(new_readings))]
    if lose_one:
        rows = [r for r in rows if r[:3] != ("old", "sensors", 5)]
    with closing(sqlite3.connect(hub_db, isolation_level=None)) as h:
        for statement in HUB_DDL:
            h.execute(statement)
        for epoch, stream, seq, payload in rows:
            h.execute("INSERT INTO events VALUES (?, ?, ?, ?, 0, 0, NULL, NULL, ?, NULL, ?)",
                      (DEVICE, epoch, stream, seq, payload, float(seq)))  # fmt: skip
        for stream, first, last in (("sensors", 49, 50), ("windows", 4, 5)) if told else ():
            h.execute("INSERT INTO gaps VALUES (?, 'old', ?, ?, ?, 'set_aside', 0, 0)",
                      (DEVICE, stream, first, last))  # fmt: skip
    snapshot = SetAside(
        "old", {"sensors": 50, "windows": 5, "sim": 0},
        {"sensors": frozenset(range(41, 51)), "windows": frozenset({4, 5})},
        {seq: reading(seq - 1) for seq in range(41, 51)}, page=2,
    )  # fmt: skip
    return check(queue_db, hub_db, list(range(READINGS)), [snapshot])


def test_a_set_aside_queue_is_accounted_for_epoch_by_epoch(tmp_path: Path) -> None:
    result = set_aside_run(tmp_path, lose_one=False)
    assert result.problems == []
    sensors, windows = result.streams["sensors"], result.streams["windows"]
    assert (sensors.set_aside, windows.set_aside) == (2, 2)  # seqs 49-50, windows 4-5
    assert result.reingested == 3  # readings 45-47: at the hub in both epochs
    assert result.windows_set_aside == 2 and result.windows_missing == 0
    assert result.acked_lost == 0


def test_a_seq_lost_from_a_set_aside_epoch_is_reported(tmp_path: Path) -> None:
    result = set_aside_run(tmp_path, lose_one=True)
    assert result.problems == ["sensors: 1 seqs of set-aside epoch old lost"]


def test_a_set_aside_epoch_the_hub_was_not_told_of_is_reported(tmp_path: Path) -> None:
    result = set_aside_run(tmp_path, lose_one=False, told=False)
    assert result.problems == [
        "sensors: 2 seqs of set-aside epoch old are in the set-aside file but in no gap at the hub",
        "windows: 2 seqs of set-aside epoch old are in the set-aside file but in no gap at the hub",
    ]

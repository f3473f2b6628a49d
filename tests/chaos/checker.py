"""The end-of-scenario proof: nothing acknowledged is lost, nothing is twice, order holds.

Read after the faults stopped and the system drained, from the agent's queue database,
the hub's central store and the publisher's PUBACK record:

(a) Every sequence number the agent's queue ever committed (1 .. next_seq - 1 of each
    uplinked stream, current epoch) is at the hub exactly once, or inside a gap the hub
    recorded with its reason, or still in the agent's queue above the hub's position
    ("pending": durable, not yet sent). Anything else is lost. Every reading the edge
    broker PUBACKed to the publisher is at the hub exactly once (by its index `i`): the
    hub's primary key makes a seq unique, so a duplicate shows as the same reading
    under two seqs.
(b) Per device and stream the hub holds a contiguous run of seqs (no hole below its
    position), committed in seq order (received_at never decreases with seq), and the
    readings of each sensor (event key) appear in publish order.
(c) Count windows follow arrival order per key only, so the uninterrupted run is
    computable from the published sequence itself: the readings of key d, in index
    order, cut into runs of WINDOW_EVENTS. Each full run must be at the hub exactly
    once with the same count, first, last and sum; a partial window may only be the
    last of its key. Time windows would depend on when the processes ran (idle and
    watermark timing), which is why the scenario uses count windows.

A queue file the scenario corrupted (device.corrupt_queue) is set aside by the agent,
which starts a new epoch; how the checks count that is in checker_payloads.py.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tests.chaos.checker_payloads import (
    Readings,
    check_readings,
    check_windows,
    expected_windows,
    report_windows,
    windows_of,
)
from tests.chaos.device import SetAside
from tests.chaos.system import DEVICE
from tests.e2e.harness import query

UPLINKED = ("sensors", "sim", "windows")


@dataclasses.dataclass
class StreamResult:
    """Accounting of one uplinked stream's sequence numbers."""

    committed: int = 0
    at_hub: int = 0
    in_gaps: int = 0
    pending: int = 0
    lost: int = 0
    holes: int = 0
    misordered: int = 0
    stored_twice: int = 0
    set_aside: int = 0


@dataclasses.dataclass
class CheckResult:
    """Every count the proof produced; `problems` is empty when every promise held."""

    streams: dict[str, StreamResult] = dataclasses.field(default_factory=dict)
    gaps_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    other_epochs: int = 0
    acked: int = 0
    acked_at_hub: int = 0
    acked_lost: int = 0
    duplicated: int = 0
    reingested: int = 0
    set_aside_files: int = 0
    sensor_order_violations: int = 0
    windows_expected: int = 0
    windows_matched: int = 0
    windows_missing: int = 0
    windows_wrong: int = 0
    windows_duplicated: int = 0
    windows_partial: int = 0
    windows_set_aside: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    queue_db: Path, hub_db: Path, acked: list[int], set_aside: Sequence[SetAside] = ()
) -> CheckResult:
    """Run checks (a), (b) and (c); every failed promise is one line in `problems`."""
    result = CheckResult(acked=len(acked), set_aside_files=len(set_aside))
    ((epoch,),) = query(queue_db, "SELECT value FROM meta WHERE name = 'epoch'")
    old = {s.epoch: s for s in set_aside}
    epochs = query(hub_db, "SELECT DISTINCT epoch FROM events WHERE device = ?", DEVICE)
    result.other_epochs = len([e for (e,) in epochs if e != epoch and e not in old])
    if result.other_epochs or epoch in old:
        result.problems.append(f"{result.other_epochs} unexpected epochs at the hub")
    for reason, count in query(
        hub_db, "SELECT reason, sum(last_seq - first_seq + 1) FROM gaps WHERE device = ? "
        "GROUP BY reason", DEVICE
    ):  # fmt: skip
        result.gaps_by_reason[reason] = int(count)
    for stream in UPLINKED:
        result.streams[stream] = _check_stream(queue_db, hub_db, epoch, stream, result.problems)
        for snapshot in set_aside:
            _check_set_aside(hub_db, snapshot, stream, result.streams[stream], result.problems)
    _check_payloads(hub_db, epoch, set_aside, acked, result)
    return result


def _check_payloads(
    hub_db: Path, epoch: str, set_aside: Sequence[SetAside], acked: list[int], result: CheckResult
) -> None:
    """(a) and (b) for the readings, (c) for the windows, epoch by epoch."""
    readings = {s.epoch: _old_readings(hub_db, s) for s in set_aside}
    readings[epoch] = _hub_readings(hub_db, epoch)
    at_hub = {e: _hub_readings(hub_db, e) for e in readings}
    sensors = result.streams["sensors"]
    excused = sensors.in_gaps + sensors.pending + sensors.set_aside
    check_readings(at_hub, set(readings) - {epoch}, acked, excused, result)
    for e, epoch_readings in readings.items():
        got = windows_of(_hub_payloads(hub_db, e, "windows").values())
        if e == epoch and not set_aside:  # one epoch: straight from the published sequence
            full, tails = expected_windows(sorted(acked))
        else:
            full, tails = expected_windows(r["i"] for _, r in sorted(epoch_readings.items()))
        check_windows(got, full, tails, strict=e == epoch, tally=result)
    report_windows(result)


def _old_readings(hub_db: Path, snapshot: SetAside) -> Readings:
    """A set-aside epoch's readings: those at the hub, and those left in its file."""
    readings = {seq: orjson.loads(p) for seq, p in snapshot.readings.items()}
    readings.update(_hub_readings(hub_db, snapshot.epoch))
    return readings


def _hub_readings(hub_db: Path, epoch: str) -> Readings:
    return _hub_payloads(hub_db, epoch, "sensors")


def _hub_payloads(hub_db: Path, epoch: str, stream: str) -> dict[int, dict[str, Any]]:
    rows = query(
        hub_db, "SELECT seq, payload FROM events WHERE device = ? AND epoch = ? AND stream = ?",
        DEVICE, epoch, stream,
    )  # fmt: skip
    return {seq: orjson.loads(payload) for seq, payload in rows}


def _check_set_aside(
    hub_db: Path, snapshot: SetAside, stream: str, result: StreamResult, problems: list[str]
) -> None:
    """(a) for a set-aside epoch: each committed seq at the hub, in a gap, or in the file."""
    committed = snapshot.committed.get(stream, 0)
    at_hub = _seqs(hub_db, "SELECT seq FROM events", snapshot.epoch, stream)
    gapped: dict[int, str] = {}
    for first, last, reason in query(
        hub_db, "SELECT first_seq, last_seq, reason FROM gaps WHERE device = ? AND epoch = ? "
        "AND stream = ?", DEVICE, snapshot.epoch, stream,
    ):  # fmt: skip
        gapped.update(dict.fromkeys(range(first, last + 1), reason))
    stored = snapshot.stored.get(stream, frozenset())
    result.committed += committed
    result.at_hub += len(at_hub)
    lost = untold = 0
    for seq in range(1, committed + 1):
        if seq in at_hub:
            if seq in gapped:
                problems.append(f"{stream}: seq {seq} of epoch {snapshot.epoch} is at the hub "
                                f"and inside a {gapped[seq]} gap")  # fmt: skip
            continue
        if gapped.get(seq) == "set_aside" and seq in stored:
            result.set_aside += 1  # kept in the file, and the hub was told (sync/set_aside.py)
        elif seq in gapped:
            result.in_gaps += 1
        elif seq in stored:
            untold += 1
        else:
            lost += 1
    result.lost += lost + untold
    if lost:
        problems.append(f"{stream}: {lost} seqs of set-aside epoch {snapshot.epoch} lost")
    if untold:
        problems.append(f"{stream}: {untold} seqs of set-aside epoch {snapshot.epoch} are in "
                        "the set-aside file but in no gap at the hub")  # fmt: skip


def _seqs(hub_db: Path, select: str, epoch: str, stream: str) -> set[int]:
    where = " WHERE device = ? AND epoch = ? AND stream = ?"
    return {s for (s,) in query(hub_db, select + where, DEVICE, epoch, stream)}


def _check_stream(
    queue_db: Path, hub_db: Path, epoch: str, stream: str, problems: list[str]
) -> StreamResult:
    """(a) and the seq side of (b) for one stream."""
    rows = query(queue_db, "SELECT id, next_seq - 1 FROM streams WHERE name = ?", stream)
    if not rows:
        problems.append(f"{stream}: not in the agent's queue")
        return StreamResult()
    stream_id, committed = rows[0]
    hub_rows = query(
        hub_db, "SELECT seq, received_at FROM events WHERE device = ? AND epoch = ? "
        "AND stream = ? ORDER BY seq", DEVICE, epoch, stream,
    )  # fmt: skip
    at_hub = {seq for seq, _ in hub_rows}
    gapped: set[int] = set()
    for first, last in query(
        hub_db, "SELECT first_seq, last_seq FROM gaps WHERE device = ? AND epoch = ? "
        "AND stream = ?", DEVICE, epoch, stream,
    ):  # fmt: skip
        gapped.update(range(first, last + 1))
    in_queue = {s for (s,) in query(queue_db, "SELECT seq FROM events WHERE stream_id = ?",
                                    stream_id)}  # fmt: skip
    top = max(at_hub | gapped, default=0)
    result = StreamResult(committed=committed, at_hub=len(at_hub))
    for seq in range(1, committed + 1):
        if seq in at_hub:
            continue
        if seq in gapped:
            result.in_gaps += 1
        elif seq > top and seq in in_queue:
            result.pending += 1
        elif seq < top:
            result.holes += 1
        else:
            result.lost += 1
    received = [at for _, at in hub_rows]
    result.misordered = sum(1 for a, b in itertools.pairwise(received) if b < a)
    beyond = len([s for s in at_hub if s > committed])
    twice = query(  # only a JetStream mirror has this table: SQLite's key forbids a repeat
        hub_db, "SELECT count(*) FROM mirror_duplicates WHERE device = ? AND epoch = ? "
        "AND stream = ?", DEVICE, epoch, stream,
    )  # fmt: skip
    result.stored_twice = int(twice[0][0]) if twice else 0
    for count, what in (
        (result.lost, "committed seqs neither at the hub, in a gap nor pending"),
        (result.holes, "seqs missing below the hub's position"),
        (result.misordered, "seqs committed at the hub after a later seq"),
        (beyond, "seqs at the hub the agent never committed"),
        (result.stored_twice, "seqs stored twice in the central stream"),
    ):
        if count:
            problems.append(f"{stream}: {count} {what}")
    return result

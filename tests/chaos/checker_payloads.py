"""Checks on what the events say: readings once and in publish order, windows as expected.

The seq accounting (checker.py) proves that no committed seq went missing; these checks
look inside the payloads: each reading index `i` the publisher got a PUBACK for is at
the hub once, each sensor's readings keep publish order, and the count windows equal
the uninterrupted run's.

Epochs. Normally the run has one queue epoch. A corrupted queue file is set aside and
the agent begins a new epoch with an empty queue, so:
  * readings the old file held unsent stay in that file ("set aside", counted, not
    lost silently), and readings the edge broker redelivers afterwards (their PUBACK
    died with the killed agent, their redelivery marks with the old file) are stored
    again in the new epoch: a reading in two epochs, one of them set aside, is counted
    as re-ingested, not as a duplicate;
  * window state starts afresh, so each epoch's windows are computed from that epoch's
    own readings in seq order (the old epoch's from the hub plus the snapshot of the
    file taken before it was damaged), and old-epoch windows missing at the hub are
    set aside with their file.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from tests.chaos.system import SENSOR_DEVICES, WINDOW_EVENTS

Window = tuple[str, int, int, int, int]
"""(key, first i, last i, count, sum of i)."""
Readings = dict[int, dict[str, Any]]
"""seq -> payload of one epoch's `sensors` events."""


class Tally(Protocol):
    """The counters of checker.CheckResult these checks fill in."""

    acked: int
    acked_at_hub: int
    acked_lost: int
    duplicated: int
    reingested: int
    sensor_order_violations: int
    windows_expected: int
    windows_matched: int
    windows_missing: int
    windows_wrong: int
    windows_duplicated: int
    windows_partial: int
    windows_set_aside: int
    problems: list[str]


def check_readings(
    at_hub: dict[str, Readings], set_aside: set[str], acked: list[int], excused: int, tally: Tally
) -> None:
    """Each PUBACKed reading at the hub once; each sensor's readings in publish order.

    `at_hub` maps each epoch to its readings at the hub; `excused` is how many `sensors`
    seqs are accounted for without being at the hub (gaps, pending, set aside).
    """
    epochs_of: dict[int, list[str]] = defaultdict(list)
    for epoch, readings in at_hub.items():
        for payload in readings.values():
            if payload["i"] >= 0:
                epochs_of[payload["i"]].append(epoch)
        tally.sensor_order_violations += _order_violations(readings)
    for copies in epochs_of.values():
        extra = len(copies) - 1
        if extra and len(set(copies)) == len(copies) and set(copies) & set_aside:
            tally.reingested += extra
        else:
            tally.duplicated += extra
    tally.acked_at_hub = len([i for i in acked if i in epochs_of])
    tally.acked_lost = len(acked) - tally.acked_at_hub
    if tally.acked_lost > excused:
        tally.problems.append(
            f"sensors: {tally.acked_lost} PUBACKed readings not at the hub "
            f"({excused} seqs in gaps, pending or set aside)"
        )
    if tally.duplicated:
        tally.problems.append(f"sensors: {tally.duplicated} readings at the hub twice")
    if tally.sensor_order_violations:
        tally.problems.append(
            f"sensors: {tally.sensor_order_violations} readings out of publish order"
        )


def _order_violations(readings: Readings) -> int:
    last: dict[str, int] = {}
    violations = 0
    for seq in sorted(readings):
        r = readings[seq]
        if r["i"] < 0:
            continue
        if r["i"] <= last.get(r["device"], -1):
            violations += 1
        last[r["device"]] = r["i"]
    return violations


def expected_windows(indices: Iterable[int]) -> tuple[set[Window], dict[str, Window]]:
    """The full windows of a run over these readings (in arrival order), and each key's tail."""
    per_key: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        if i >= 0:
            per_key[f"d{i % SENSOR_DEVICES}"].append(i)
    full: set[Window] = set()
    tails: dict[str, Window] = {}
    for key, keyed in per_key.items():
        for start in range(0, len(keyed), WINDOW_EVENTS):
            run = keyed[start : start + WINDOW_EVENTS]
            window = (key, run[0], run[-1], len(run), sum(run))
            if len(run) == WINDOW_EVENTS:
                full.add(window)
            else:
                tails[key] = window
    return full, tails


def windows_of(outputs: Iterable[dict[str, Any]]) -> Counter[Window]:
    return Counter(
        (w["key"], int(w["first"]), int(w["last"]), int(w["n"]), round(w["total"]))
        for w in outputs
        if w["key"] != "probe"
    )


def check_windows(
    got: Counter[Window], full: set[Window], tails: dict[str, Window], strict: bool, tally: Tally
) -> None:
    """One epoch's windows at the hub against its uninterrupted run.

    `strict`: every full window must be there (the live epoch, drained); otherwise
    (a set-aside epoch) a missing one is counted as set aside with its file.
    """
    present = full & got.keys()
    tally.windows_expected += len(full) if strict else len(present)
    tally.windows_matched += len(present)
    if strict:
        tally.windows_missing += len(full - got.keys())
    else:
        tally.windows_set_aside += len(full - got.keys())
    tally.windows_duplicated += sum(n - 1 for n in got.values() if n > 1)
    for window in got.keys() - full:
        if tails.get(window[0]) == window:
            tally.windows_partial += 1
        else:
            tally.windows_wrong += 1


def report_windows(tally: Tally) -> None:
    for count, what in (
        (tally.windows_missing, "expected windows not at the hub"),
        (tally.windows_wrong, "windows an uninterrupted run would not produce"),
        (tally.windows_duplicated, "windows at the hub twice"),
    ):
        if count:
            tally.problems.append(f"windows: {count} {what}")

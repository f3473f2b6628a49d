"""`throttle`: at most `rate` events per key and interval; the excess is dropped or held.

Semantics (docs/pipelines.md), per key (the `key` expression, else the event key):
  * Intervals of length `per` are aligned to the Unix epoch on the step's clock (event
    or ingest time): an event at time t is in interval t // per (Python's floor
    division on floats, as windows use).
  * Each key has a current interval, the latest one it had an event in. The first
    `rate` events of an interval pass at once.
  * mode drop: the others are dropped, counted `throttled`.
  * mode latest: the newest of the others is held; the one it replaces is dropped,
    counted `throttled`. The held event passes, with its own time, just before the
    key's first event of a later interval, or from `idle` once the key had no event
    for `idle` seconds of processing time. So an interval sends at most rate + 1
    events, and the last reading of a burst is never lost.
  * An event of an interval before the key's current one (out of order) is dropped,
    counted `out_of_order`: passing it could exceed the rate of an interval that is over.
  * An event whose interval is not finite (time NaN or infinite) passes, `bad_time`.
Everything but the idle release depends only on the order of events, never on
batching. Processing time is kept in memory only: after a restore every held event
counts as seen at the restore, so the downtime never releases it early.

`IntervalLimiter` is the engine; `downsample` is the same engine with one event per
interval (keep first: rate 1, drop; keep last: rate 0, hold).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from agent.config.steps import ThrottleStep
from agent.pipeline.batch import Batch
from agent.pipeline.columns import key_column
from agent.pipeline.expr import Expression, compile_expression
from agent.pipeline.operator import Operator, SideOutputs

INF = math.inf

Key = str | None
Row = tuple[Any, ...]
"""A held event outside a batch: the Batch.append arguments (raw still bytes)."""
Held = int | Row
"""A held event: its index while the batch it came in is processed, else its Row."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What an IntervalLimiter lets through; see the module docstring."""

    per: float
    rate: int
    """Events passed at once per key and interval (0: none, every event is held)."""
    hold: bool
    """Hold the newest excess event of an interval instead of dropping it."""
    key: Expression | None
    use_ingest_time: bool
    idle: float
    limited: str
    """Name of the counter of events dropped for the limit."""


class IntervalLimiter(Operator):
    """Per key: current interval, events passed in it, and the held event if any."""

    stateful = True

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        if not limits.hold and limits.rate < 1:
            raise ValueError("dropping the excess needs a rate of at least 1")
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh start)."""
        self.current: dict[Key, list[Any]] = {}
        """Key -> [interval, events passed in it]."""
        self.held: dict[Key, Held] = {}
        self.last_seen: dict[Key, float] = {}
        """Processing (monotonic) time of the last event of each key that holds one."""

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """The events within the limit, with released held events before their successors."""
        if not len(batch):
            return batch
        limits = self.limits
        keys = key_column(limits.key, batch)
        times = batch.ingest if limits.use_ingest_time else batch.times
        if not limits.hold:
            return batch.select(self._drop_excess(keys, times))
        order, released = self._hold_latest(keys, times)
        self._settle(batch, keys)
        if not released:
            return batch.take(order)
        return _with_rows(batch, released).take(order)

    def _drop_excess(self, keys: list[Key], times: list[float]) -> list[bool]:
        """The hot loop of mode drop: a pass verdict per event."""
        per, rate, current = self.limits.per, self.limits.rate, self.current
        mask: list[bool] = []
        keep = mask.append
        limited = late = bad = 0
        for k, ts in zip(keys, times, strict=True):
            interval = ts // per
            if not -INF < interval < INF:
                bad += 1
                keep(True)
                continue
            state = current.get(k)
            if state is None:
                current[k] = [interval, 1]
                keep(True)
            elif interval == state[0]:
                if state[1] < rate:
                    state[1] += 1
                    keep(True)
                else:
                    limited += 1
                    keep(False)
            elif interval > state[0]:
                state[0] = interval
                state[1] = 1
                keep(True)
            else:
                late += 1
                keep(False)
        self._tally(limited, late, bad)
        return mask

    def _hold_latest(self, keys: list[Key], times: list[float]) -> tuple[list[int], list[Row]]:
        """The hot loop of mode latest: output order as indices, and older held rows.

        An index below len(keys) is an event of this batch; index len(keys) + j is
        ``released[j]``, an event held since an earlier batch.
        """
        per, rate, current, held = self.limits.per, self.limits.rate, self.current, self.held
        n = len(keys)
        order: list[int] = []
        emit = order.append
        released: list[Row] = []
        limited = late = bad = 0
        for i, (k, ts) in enumerate(zip(keys, times, strict=True)):
            interval = ts // per
            if not -INF < interval < INF:
                bad += 1
                emit(i)
                continue
            state = current.get(k)
            if state is None:
                state = current[k] = [interval, 0]
            elif interval > state[0]:
                waiting = held.pop(k, None)
                if isinstance(waiting, int):
                    emit(waiting)
                elif waiting is not None:
                    emit(n + len(released))
                    released.append(waiting)
                state[0] = interval
                state[1] = 0
            elif interval < state[0]:
                late += 1
                continue
            if state[1] < rate:
                state[1] += 1
                emit(i)
            else:
                if k in held:
                    limited += 1
                held[k] = i
        self._tally(limited, late, bad)
        return order, released

    def _settle(self, batch: Batch, keys: list[Key]) -> None:
        """After a batch: held events become rows, and their keys are marked active."""
        held, last_seen = self.held, self.last_seen
        now = time.monotonic()
        for k in set(keys):
            waiting = held.get(k)
            if waiting is None:
                last_seen.pop(k, None)
                continue
            last_seen[k] = now
            if type(waiting) is int:
                held[k] = _row_of(batch, waiting)

    def _tally(self, limited: int, late: int, bad: int) -> None:
        if limited:
            self.count(self.limits.limited, limited)
        if late:
            self.count("out_of_order", late)
        if bad:
            self.count("bad_time", bad)

    def idle(self, now: float, side: SideOutputs) -> Batch:
        """Release the held events of keys without events for `idle` seconds, by key."""
        out = Batch.empty()
        if not self.held:
            return out
        after, last_seen = self.limits.idle, self.last_seen
        due = [k for k in self.held if now - last_seen.get(k, -INF) >= after]
        due.sort(key=_key_order)
        for k in due:
            out.append(*_settled(self.held.pop(k)))
            last_seen.pop(k, None)
        return out

    def has_pending(self) -> bool:
        return bool(self.held)

    def snapshot(self) -> Any:
        return {
            "current": [[k, interval, passed] for k, (interval, passed) in self.current.items()],
            "held": [[k, _json_row(_settled(row))] for k, row in self.held.items()],
        }

    def restore(self, state: Any) -> None:
        self.reset()
        if state is None:
            return
        self.current = {k: [interval, passed] for k, interval, passed in state["current"]}
        self.held = {k: _row_from_json(row) for k, row in state["held"]}
        now = time.monotonic()
        self.last_seen = dict.fromkeys(self.held, now)


class Throttle(IntervalLimiter):
    """The `throttle` step: `rate` events per key and `per` seconds; see the module."""

    def __init__(self, step: ThrottleStep) -> None:
        super().__init__(
            Limits(
                per=step.per,
                rate=step.rate,
                hold=step.mode == "latest",
                key=None if step.key is None else compile_expression(step.key),
                use_ingest_time=step.time == "ingest",
                idle=step.idle,
                limited="throttled",
            )
        )


def _key_order(key: Key) -> tuple[bool, str]:
    """Sort keys with None first, so idle releases come in a deterministic order."""
    return (key is not None, key or "")


def _row_of(batch: Batch, i: int) -> Row:
    return (
        batch.payloads[i],
        batch.times[i],
        batch.ingest[i],
        batch.keys[i],
        batch.topics[i],
        batch.raw[i],
        batch.headers[i],
    )


def _settled(waiting: Held) -> Row:
    """A held event between batches, where `_settle` has made every one a Row."""
    assert not isinstance(waiting, int), "an index outlived its batch"
    return waiting


def _with_rows(batch: Batch, rows: list[Row]) -> Batch:
    """``batch`` followed by ``rows`` (new lists: the input batch is not changed)."""
    return Batch(
        batch.payloads + [r[0] for r in rows],
        batch.times + [r[1] for r in rows],
        batch.ingest + [r[2] for r in rows],
        batch.keys + [r[3] for r in rows],
        batch.topics + [r[4] for r in rows],
        batch.raw + [r[5] for r in rows],
        batch.headers + [r[6] for r in rows],
    )


def _json_row(row: Row) -> tuple[Any, ...]:
    """A held event in the snapshot format of Batch.row.

    A payload JSON cannot hold (an integer beyond 64 bits, made by a map step) is
    saved as what the queue would write for it, its repr as a JSON string, so the
    snapshot always encodes and the event is written the same after a restart.
    """
    one = Batch.empty()
    one.append(*row)
    try:
        orjson.dumps(row[0])
    except TypeError:
        text = repr(row[0])
        one.payloads[0], one.raw[0] = text, orjson.dumps(text)
    return one.row(0)


def _row_from_json(saved: list[Any]) -> Row:
    one = Batch.empty()
    one.append_row(saved)
    return _row_of(one, 0)

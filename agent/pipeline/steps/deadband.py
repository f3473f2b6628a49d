"""`deadband`: report by exception, passing a value only when it moved beyond a band.

Semantics (docs/pipelines.md), per key (the `key` expression, else the event key):
  * The first event with a numeric value passes and becomes the reference.
  * A later event passes when |value - reference| > absolute (if set) OR
    > relative * |reference| (if set), or when heartbeat is set and its event time
    minus the reference's event time is >= heartbeat. A passing event becomes the
    reference (value and event time); a suppressed one changes nothing.
  * Numeric means int or float, finite; bool, null, text (even "21.5"), NaN and
    infinity are not. Such an event passes unchanged and is counted `not_numeric`:
    a sensor reporting an error string must reach the uplink, not vanish. It does
    not become the reference and does not restart the heartbeat.
  * An event whose event time is not finite passes unchanged (`bad_time`), as above.
Results depend only on the order of events, never on batching.
"""

from __future__ import annotations

import math
from typing import Any

from agent.config.steps import DeadbandStep
from agent.pipeline.batch import Batch
from agent.pipeline.columns import column, key_column
from agent.pipeline.expr import compile_expression
from agent.pipeline.operator import Operator, SideOutputs

INF = math.inf


class Deadband(Operator):
    """The last passed value and its event time per key; see the module docstring."""

    stateful = True

    def __init__(self, step: DeadbandStep) -> None:
        super().__init__()
        self.value = compile_expression(step.value)
        self.key = None if step.key is None else compile_expression(step.key)
        # An unset band or heartbeat becomes infinity, so its test is simply never true
        # (inf * 0 is NaN, and any comparison with NaN is false too).
        self.absolute = INF if step.absolute is None else step.absolute
        self.relative = INF if step.relative is None else step.relative
        self.heartbeat = INF if step.heartbeat is None else step.heartbeat
        self.last: dict[str | None, list[float]] = {}

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Keep the events that moved beyond the band (and the non-numeric ones)."""
        if not len(batch):
            return batch
        values = column(self.value, batch)
        mask = self._verdicts(values, key_column(self.key, batch), batch.times)
        return batch.select(mask)

    def _verdicts(
        self, values: list[Any], keys: list[str | None], times: list[float]
    ) -> list[bool]:
        """The hot loop: one pass verdict per event, updating the references in place."""
        absolute, relative, heartbeat = self.absolute, self.relative, self.heartbeat
        last = self.last
        mask: list[bool] = []
        keep = mask.append
        odd = bad = suppressed = 0
        for v, k, ts in zip(values, keys, times, strict=True):
            if type(v) is not float:
                v = _as_float(v)  # noqa: PLW2901 - compared and stored as float (JSON-safe)
            if not -INF < v < INF:  # false for NaN, so for anything not numeric
                odd += 1
                keep(True)
                continue
            if not -INF < ts < INF:
                bad += 1
                keep(True)
                continue
            ref = last.get(k)
            if ref is None:
                last[k] = [v, ts]
                keep(True)
                continue
            before = ref[0]
            moved = abs(v - before)
            if moved > absolute or moved > relative * abs(before) or ts - ref[1] >= heartbeat:
                ref[0] = v
                ref[1] = ts
                keep(True)
            else:
                suppressed += 1
                keep(False)
        self._tally(not_numeric=odd, bad_time=bad, suppressed=suppressed)
        return mask

    def _tally(self, **counts: int) -> None:
        for name, n in counts.items():
            if n:
                self.count(name, n)

    def snapshot(self) -> Any:
        return {"last": [[k, v, t] for k, (v, t) in self.last.items()]}

    def restore(self, state: Any) -> None:
        self.last = {}
        if state is None:
            return
        self.last = {k: [float(v), float(t)] for k, v, t in state["last"]}


def _as_float(value: Any) -> float:
    """An int as a float; anything else (bool, text, null, too big) as NaN."""
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.nan
    return math.nan

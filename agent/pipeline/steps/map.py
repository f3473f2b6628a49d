"""`map`: set computed fields, rename, convert units, drop fields; set the key or time.

Order within one step: every `set` expression (and `key`, `time`) is evaluated on
the incoming event first, then the writes happen, then rename, convert, drop. So
``set: {a: b, b: a}`` swaps two fields, as a user reading the YAML would expect.
"""

from __future__ import annotations

from typing import Any

from agent.config.steps import UNIT_CONVERSIONS, MapStep
from agent.pipeline.aggregates import finite_number
from agent.pipeline.batch import Batch
from agent.pipeline.columns import column, key_column
from agent.pipeline.expr import compile_expression
from agent.pipeline.fields import MISSING, Path, parse_path, pop_path, set_path, writable
from agent.pipeline.operator import Operator, SideOutputs


class Map(Operator):
    """Rewrites payloads (copy on write) and optionally each event's key and time."""

    def __init__(self, step: MapStep) -> None:
        super().__init__()
        self.sets = [(parse_path(t), compile_expression(e)) for t, e in step.set.items()]
        self.renames = [(parse_path(a), parse_path(b)) for a, b in step.rename.items()]
        self.converts = [(parse_path(f), UNIT_CONVERSIONS[c]) for f, c in step.convert.items()]
        self.drops = [parse_path(f) for f in step.drop]
        self.key = compile_expression(step.key) if step.key is not None else None
        self.time = compile_expression(step.time) if step.time is not None else None
        self.reshapes = bool(self.sets or self.renames or self.converts or self.drops)

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        if not len(batch):
            return batch
        keys = key_column(self.key, batch) if self.key is not None else None
        times = column(self.time, batch) if self.time is not None else None
        values = [column(expr, batch) for _, expr in self.sets]
        if keys is not None:
            batch.keys = keys
        if times is not None:
            batch.times = self._times(times, batch.times)
        if self.reshapes:
            batch.payloads = [
                self._reshape(p, [col[i] for col in values]) for i, p in enumerate(batch.payloads)
            ]
            batch.raw = [None] * len(batch)
        return batch

    def _times(self, found: list[Any], old: list[float]) -> list[float]:
        times = []
        for value, before in zip(found, old, strict=True):
            number = finite_number(value)
            if number is None:
                self.count("bad_time")
            times.append(before if number is None else float(number))
        return times

    def _reshape(self, payload: Any, values: list[Any]) -> dict[str, Any]:
        out = writable(payload)
        for (path, _), value in zip(self.sets, values, strict=True):
            set_path(out, path, value)
        for old, new in self.renames:
            moved = pop_path(out, old)
            if moved is not MISSING:
                set_path(out, new, moved)
        for path, (scale, offset) in self.converts:
            _convert(out, path, scale, offset)
        for path in self.drops:
            pop_path(out, path)
        return out


def _convert(payload: dict[str, Any], path: Path, scale: float, offset: float) -> None:
    value = pop_path(payload, path)
    if value is MISSING:
        return
    number = finite_number(value)
    set_path(payload, path, value if number is None else number * scale + offset)

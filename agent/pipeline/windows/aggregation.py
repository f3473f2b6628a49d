"""The aggregates of one window step, evaluated column-wise over a batch.

Every window kind (time, session, count) shares this: the argument of each
aggregate is evaluated once per batch for all events (and once per distinct
argument, so ``avg(value)``, ``min(value)`` and ``max(value)`` read ``value``
once), numeric arguments are cleaned once, and a window's states are folded with
the whole group of its events in one call per aggregate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.pipeline.aggregates import Aggregate, finite_number
from agent.pipeline.batch import Batch
from agent.pipeline.columns import column
from agent.pipeline.expr import Expression


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """One named output field: an aggregate function and the expression it reads."""

    name: str
    function: Aggregate
    arg: Expression | None


class Columns:
    """The argument columns of one batch, by argument slot."""

    __slots__ = ("times", "values")

    def __init__(self, values: list[list[Any] | None], times: list[float]) -> None:
        self.values = values
        self.times = times


class AggregateSet:
    """A window step's aggregates: new states, folding groups, results."""

    def __init__(self, specs: Sequence[AggregateSpec]) -> None:
        self.specs = tuple(specs)
        slots: dict[tuple[str, bool], int] = {}
        self._slot: list[int | None] = []
        self._slot_args: list[tuple[Expression, bool]] = []
        for spec in self.specs:
            if spec.arg is None:
                self._slot.append(None)
                continue
            ident = (spec.arg.text, spec.function.numeric)
            if ident not in slots:
                slots[ident] = len(self._slot_args)
                self._slot_args.append((spec.arg, spec.function.numeric))
            self._slot.append(slots[ident])
        self._plan = tuple(
            (i, spec.function, self._slot[i], spec.function.needs_time)
            for i, spec in enumerate(self.specs)
        )

    def columns(self, batch: Batch) -> Columns:
        """Evaluate every distinct argument over ``batch`` (null marks a skipped value)."""
        values: list[list[Any] | None] = []
        for arg, numeric in self._slot_args:
            col = column(arg, batch)
            if numeric:
                clean = finite_number
                col = [v if type(v) is float and v - v == 0.0 else clean(v) for v in col]
            values.append(col)
        return Columns(values, batch.times)

    def new_states(self) -> list[Any]:
        """The states of an empty window."""
        return [spec.function.initial() for spec in self.specs]

    def fold(self, states: list[Any], indices: list[int], columns: Columns) -> None:
        """Fold the events at ``indices`` of the batch into ``states``, in place."""
        gathered: dict[int, list[Any]] = {}
        for i, function, slot, needs_time in self._plan:
            if slot is None:  # count(): one item per event
                times = [columns.times[j] for j in indices] if needs_time else None
                states[i] = function.fold(states[i], indices, times)
            elif needs_time:
                self._fold_timed(states, i, function, columns, slot, indices)
            else:
                values = gathered.get(slot)
                if values is None:
                    col = columns.values[slot]
                    assert col is not None
                    values = gathered[slot] = [v for j in indices if (v := col[j]) is not None]
                if values:
                    states[i] = function.fold(states[i], values, None)

    @staticmethod
    def _fold_timed(
        states: list[Any],
        i: int,
        function: Aggregate,
        columns: Columns,
        slot: int,
        indices: list[int],
    ) -> None:
        col = columns.values[slot]
        assert col is not None
        present = [j for j in indices if col[j] is not None]
        if present:
            times = columns.times
            values = [col[j] for j in present]
            states[i] = function.fold(states[i], values, [times[j] for j in present])

    def results(self, states: list[Any]) -> dict[str, Any]:
        """The output fields of a closed window."""
        return {
            spec.name: spec.function.result(state)
            for spec, state in zip(self.specs, states, strict=True)
        }

"""Keyed tumbling windows on event time, with a watermark and an idle timeout.

Semantics (docs/pipelines.md):
  * A window covers [start, start + size), aligned to the Unix epoch.
  * The watermark is the largest event time seen minus `lateness`; it never goes back.
    A window closes when the watermark reaches its end.
  * An event whose window has already closed is late: it is dropped and counted.
  * When no event arrives for `idle` seconds of processing time, every open window
    closes, so a silent sensor never holds a result back forever.
The logic does no I/O and its state snapshots to bytes, so the runner commits it with
the cursor and the outputs in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agent.pipeline.aggregates import Aggregate

Arg = Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """One named output column: an aggregate function and the value it reads."""

    name: str
    function: Aggregate
    arg: Arg | None


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A result ready to be written to the output stream."""

    key: str | None
    start: float
    end: float
    values: dict[str, Any]


class TumblingWindow:
    """Open windows per (key, start), their aggregate states, and the watermark."""

    def __init__(self, size: float, lateness: float, aggregates: Sequence[AggregateSpec]) -> None:
        self.size = size
        self.lateness = lateness
        self.aggregates = tuple(aggregates)
        self.open: dict[tuple[str | None, float], list[Any]] = {}
        self.watermark = -math.inf
        self.late = 0
        self._next_end = math.inf

    def add(self, key: str | None, ts: float, payload: Any, meta: Any) -> list[ClosedWindow]:
        """Fold one event into its window (or count it late); return windows it closed.

        The watermark moves with every event, not per batch, so results never depend
        on how the input happened to be batched (a restart re-batches it).
        """
        mark = ts - self.lateness
        closed: list[ClosedWindow] = []
        if mark > self.watermark:
            self.watermark = mark
            if mark >= self._next_end:
                closed = self._close(lambda start: start + self.size <= mark)
        start = ts - (ts % self.size)
        if start + self.size <= self.watermark:
            self.late += 1
            return closed
        states = self.open.get((key, start))
        if states is None:
            states = self.open[(key, start)] = [a.function.initial() for a in self.aggregates]
            self._next_end = min(self._next_end, start + self.size)
        for i, spec in enumerate(self.aggregates):
            value = 1 if spec.arg is None else spec.arg(payload, meta)
            states[i] = spec.function.add(states[i], value)
        return closed

    def flush(self) -> list[ClosedWindow]:
        """Close every open window (idle timeout), raising the watermark past them."""
        if self.open:
            last_end = max(start for _, start in self.open) + self.size
            self.watermark = max(self.watermark, last_end)
        return self._close(lambda _start: True)

    def _close(self, due: Callable[[float], bool]) -> list[ClosedWindow]:
        closing = sorted(
            (k for k in self.open if due(k[1])), key=lambda k: (k[1], "" if k[0] is None else k[0])
        )
        results = [self._result(k, self.open.pop(k)) for k in closing]
        self._next_end = min((s for _, s in self.open), default=math.inf) + self.size
        return results

    def _result(self, window: tuple[str | None, float], states: list[Any]) -> ClosedWindow:
        key, start = window
        values = {
            a.name: a.function.result(s) for a, s in zip(self.aggregates, states, strict=True)
        }
        return ClosedWindow(key, start, start + self.size, values)

    def reset(self) -> None:
        """Forget everything (before restoring a snapshot, or for a fresh start)."""
        self.open = {}
        self.watermark = -math.inf
        self.late = 0
        self._next_end = math.inf

    def snapshot(self) -> bytes:
        """The whole state as bytes, committed with the cursor."""
        return orjson.dumps(
            {
                "watermark": None if self.watermark == -math.inf else self.watermark,
                "late": self.late,
                "open": [[k, s, states] for (k, s), states in self.open.items()],
            }
        )

    def restore(self, data: bytes) -> None:
        """Load a snapshot taken by `snapshot`."""
        state = orjson.loads(data)
        self.watermark = -math.inf if state["watermark"] is None else state["watermark"]
        self.late = state["late"]
        self.open = {(k, s): states for k, s, states in state["open"]}
        self._next_end = min((s for _, s in self.open), default=math.inf) + self.size

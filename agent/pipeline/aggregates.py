"""Window aggregates: each is `initial()`, `add(state, value)` and `result(state)`.

The state of an aggregate is plain JSON-able data (a number, a list, None), so a
window's whole state snapshots to SQLite with its cursor at no extra cost (promise 4).
Non-numeric and missing values are skipped by the numeric aggregates instead of
raising: bad input never stops a pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol


class Aggregate(Protocol):
    """One aggregate function over the values of one window."""

    def initial(self) -> Any:
        """The state of an empty window."""
        ...

    def add(self, state: Any, value: Any) -> Any:
        """The state after one more value."""
        ...

    def result(self, state: Any) -> Any:
        """The output value for a closed window."""
        ...


_INT64 = 2**63


def _number(value: Any) -> float | None:
    """A value usable by the numeric aggregates, or None to skip it.

    Booleans, strings, NaN and infinities are skipped; integers beyond 64 bits become
    floats, so every state stays finite and serialisable (a snapshot that cannot be
    written would stop the pipeline on every restart).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return value if -_INT64 < value < _INT64 else _finite(value)
    return value if math.isfinite(value) else None


def _finite(value: int) -> float | None:
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def _add(total: float, value: float) -> float | None:
    """Sum that stays finite and within 64 bits; None when it would overflow."""
    result = total + value
    if isinstance(result, int) and not -_INT64 < result < _INT64:
        return float(result)
    return result if math.isfinite(result) else None


class Count:
    """Number of events (or of non-null values when given an argument)."""

    def initial(self) -> int:
        return 0

    def add(self, state: int, value: Any) -> int:
        return state + 1 if value is not None else state

    def result(self, state: int) -> int:
        return state


class Sum:
    """Sum of the numeric values."""

    def initial(self) -> float:
        return 0

    def add(self, state: float, value: Any) -> float:
        number = _number(value)
        total = None if number is None else _add(state, number)
        return state if total is None else total

    def result(self, state: float) -> float:
        return state


class Avg:
    """Mean of the numeric values; null for a window without any."""

    def initial(self) -> list[float]:
        return [0.0, 0]

    def add(self, state: list[float], value: Any) -> list[float]:
        number = _number(value)
        total = None if number is None else _add(state[0], float(number))
        if total is not None:
            state[0], state[1] = total, state[1] + 1
        return state

    def result(self, state: list[float]) -> float | None:
        return state[0] / state[1] if state[1] else None


@dataclass(frozen=True, slots=True)
class Extreme:
    """Minimum or maximum of the numeric values."""

    keep_larger: bool

    def initial(self) -> float | None:
        return None

    def add(self, state: float | None, value: Any) -> float | None:
        number = _number(value)
        if number is None:
            return state
        if state is None:
            return number
        return max(state, number) if self.keep_larger else min(state, number)

    def result(self, state: float | None) -> float | None:
        return state


class First:
    """The first non-null value in arrival order."""

    def initial(self) -> Any:
        return None

    def add(self, state: Any, value: Any) -> Any:
        return value if state is None else state

    def result(self, state: Any) -> Any:
        return state


class Last:
    """The last non-null value in arrival order."""

    def initial(self) -> Any:
        return None

    def add(self, state: Any, value: Any) -> Any:
        return state if value is None else value

    def result(self, state: Any) -> Any:
        return state


AGGREGATES: dict[str, Aggregate] = {
    "count": Count(),
    "sum": Sum(),
    "avg": Avg(),
    "min": Extreme(keep_larger=False),
    "max": Extreme(keep_larger=True),
    "first": First(),
    "last": Last(),
}

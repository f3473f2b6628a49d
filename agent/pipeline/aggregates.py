"""Window aggregates: each is `initial()`, `fold(state, values, times)` and `result(state)`.

A window folds the values of a whole group of events at once (one call per window
per batch, not one per event), so builtins such as `sum` and `min` do the inner
loop. The state of an aggregate is plain JSON-able data (a number, a list, None),
so a window's whole state snapshots to SQLite with its cursor (promise 4).

What `fold` receives, prepared by the window (`agent.pipeline.windows.aggregation`):
  * numeric aggregates (``numeric = True``): only finite numbers: floats and ints
    within 64 bits (bigger ints arrive as floats); booleans, strings, null, NaN and
    infinities were skipped, so bad input never raises here;
  * the others: every value that is not null, in arrival order;
  * ``count()`` without an argument: one item per event;
  * ``times``: the event times of the values, in the same order, only for
    aggregates with ``needs_time = True`` (else None).
`fold` may update the state in place and must return it; values lists are never empty.

Every aggregate gives the same result however a window's values are split across
folds (up to float rounding), and with its state round-tripped through JSON between
folds. The sketched aggregates (percentiles, ``distinct``) live in
`agent.pipeline.sketches`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from itertools import compress, islice
from operator import add, gt
from typing import Any, Protocol

from agent.pipeline.sketches import Distinct, Percentile

INT64 = 2**63


class Aggregate(Protocol):
    """One aggregate function over the values of one window."""

    numeric: bool
    needs_time: bool

    def initial(self) -> Any:
        """The state of an empty window."""
        ...

    def fold(self, state: Any, values: list[Any], times: list[float] | None) -> Any:
        """The state after more values (never an empty list)."""
        ...

    def result(self, state: Any) -> Any:
        """The output value for a closed window."""
        ...


def finite_number(value: Any) -> float | int | None:
    """A value usable by the numeric aggregates, or None to skip it.

    Booleans, strings, NaN and infinities are skipped; integers beyond 64 bits become
    floats, so every state stays finite and serialisable (a snapshot that cannot be
    written would stop the pipeline on every restart).
    """
    if type(value) is float:
        return value if value - value == 0.0 else None
    if type(value) is not int:
        return None
    if -INT64 < value < INT64:
        return value
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def safe_total(total: float) -> float | None:
    """A running sum kept finite and within 64 bits; None when it overflowed."""
    if type(total) is int and not -INT64 < total < INT64:
        return float(total)
    return total if total - total == 0 else None


def _left_fold_sum(values: list[Any], start: Any) -> Any:
    return reduce(add, values, start)


sequential_sum: Callable[[list[Any], Any], Any] = (
    sum if sys.version_info < (3, 12) else _left_fold_sum
)
"""``start + v0 + v1 + ...`` added strictly left to right.

Folding a window in batches must give the same float, to the last bit, as folding it
one event at a time, or results would depend on how a restart cut the input. Left to
right addition has that property. Python 3.11's ``sum`` does exactly this (and fast);
from 3.12 ``sum`` compensates rounding within one call, which is more accurate but
differs between batchings, so there the plain left fold is used.
"""


class Count:
    """Number of events (or of non-null values when given an argument)."""

    numeric = False
    needs_time = False

    def initial(self) -> int:
        return 0

    def fold(self, state: int, values: list[Any], times: list[float] | None) -> int:
        return state + len(values)

    def result(self, state: int) -> int:
        return state


class Sum:
    """Sum of the numeric values; 0 for a window without any."""

    numeric = True
    needs_time = False

    def initial(self) -> float:
        return 0

    def fold(self, state: float, values: list[Any], times: list[float] | None) -> float:
        total = sequential_sum(values, state)
        if type(total) is float and total - total == 0.0:  # the usual case, checked inline
            return total
        checked = safe_total(total)
        return state if checked is None else checked

    def result(self, state: float) -> float:
        return state


class Avg:
    """Mean of the numeric values; null for a window without any."""

    numeric = True
    needs_time = False

    def initial(self) -> list[float]:
        return [0.0, 0]

    def fold(self, state: list[float], values: list[Any], times: list[float] | None) -> list[float]:
        total = float(sequential_sum(values, state[0]))
        if total - total == 0.0:  # finite: an overflow to inf skips these values
            state[0] = total
            state[1] += len(values)
        return state

    def result(self, state: list[float]) -> float | None:
        return state[0] / state[1] if state[1] else None


class Min:
    """Minimum of the numeric values; null for a window without any."""

    numeric = True
    needs_time = False

    def initial(self) -> float | None:
        return None

    def fold(self, state: float | None, values: list[Any], times: list[float] | None) -> Any:
        best = min(values)
        return best if state is None or best < state else state

    def result(self, state: float | None) -> float | None:
        return state


class Max:
    """Maximum of the numeric values; null for a window without any."""

    numeric = True
    needs_time = False

    def initial(self) -> float | None:
        return None

    def fold(self, state: float | None, values: list[Any], times: list[float] | None) -> Any:
        best = max(values)
        return best if state is None or best > state else state

    def result(self, state: float | None) -> float | None:
        return state


class First:
    """The first non-null value in arrival order."""

    numeric = False
    needs_time = False

    def initial(self) -> Any:
        return None

    def fold(self, state: Any, values: list[Any], times: list[float] | None) -> Any:
        return values[0] if state is None else state

    def result(self, state: Any) -> Any:
        return state


class Last:
    """The last non-null value in arrival order."""

    numeric = False
    needs_time = False

    def initial(self) -> Any:
        return None

    def fold(self, state: Any, values: list[Any], times: list[float] | None) -> Any:
        return values[-1]

    def result(self, state: Any) -> Any:
        return state


@dataclass(frozen=True, slots=True)
class Spread:
    """Variance or standard deviation of the numeric values (``stddev``, ``variance``...).

    ``ddof`` 1 gives the sample statistic (divides by n - 1, null below 2 values),
    0 the population one (divides by n, null without values). The state is
    ``[n, mean, M2]`` (M2: sum of squared deviations from the mean); each fold computes
    its batch's own mean and M2 in two passes and merges them with Chan et al.'s
    parallel formula, so the result is numerically stable and does not depend on how
    the values were split across folds. Values whose statistics overflow a float
    (around 1e154 and beyond) make the result null rather than wrong.
    """

    ddof: int
    root: bool
    numeric = True
    needs_time = False

    def initial(self) -> list[Any]:
        return [0, 0.0, 0.0]

    def fold(self, state: list[Any], values: list[Any], times: list[float] | None) -> list[Any]:
        count, mean = len(values), sum(values) / len(values)
        m2 = sum([(v - mean) * (v - mean) for v in values]) if count > 1 else 0.0
        before, old_mean, old_m2 = state
        if old_mean is None:  # already overflowed
            state[0] = before + count
            return state
        if before:
            total = before + count
            delta = mean - old_mean
            mean = old_mean + delta * (count / total)
            m2 = old_m2 + m2 + delta * delta * (before * count / total)
            count = total
        if mean - mean != 0.0 or m2 - m2 != 0.0:
            mean = m2 = None
        state[0], state[1], state[2] = count, mean, m2
        return state

    def result(self, state: list[Any]) -> float | None:
        count, _, m2 = state
        if m2 is None or count <= self.ddof:
            return None
        variance = max(m2, 0.0) / (count - self.ddof)
        return math.sqrt(variance) if self.root else variance


@dataclass(frozen=True, slots=True)
class Increase:
    """Increase of a monotonic counter that may reset (``delta``), or its rate (``rate``).

    Prometheus ``increase`` semantics without extrapolation: walking the values in
    arrival order, a value not below the previous one adds the difference, a smaller
    one is a reset and adds itself (the counter restarted from 0). ``delta`` is the
    total increase of the window, ``rate`` that increase divided by the seconds between
    the first and the last value's event time. Both are null with fewer than 2 values;
    ``rate`` is also null when that time span is not positive (events out of time
    order), and both when the increase overflows a float. The state is
    ``[first_time, last_time, last_value, increase, count]``.
    """

    per_second: bool
    numeric = True
    needs_time = True

    def initial(self) -> list[Any]:
        return [None, None, None, 0, 0]

    def fold(self, state: list[Any], values: list[Any], times: list[float] | None) -> list[Any]:
        assert times is not None
        last = values[-1]
        # the sum of (v - prev) over all steps telescopes to last - first; each reset
        # adds back the prev it wrongly subtracted: sum of p for the steps p > v
        resets = sum(compress(values, map(gt, values, islice(values, 1, None))))
        prev = state[2]
        if state[4]:
            first = values[0]
            gained = last - prev + resets + (prev if first < prev else 0)
        else:
            state[0] = times[0]
            gained = last - values[0] + resets
        if state[3] is not None:
            state[3] = safe_total(state[3] + gained)
        state[1], state[2], state[4] = times[-1], last, state[4] + len(values)
        return state

    def result(self, state: list[Any]) -> float | None:
        increase: float | None = state[3]
        if state[4] < 2 or increase is None or not self.per_second:
            return increase if state[4] >= 2 else None
        elapsed: float = state[1] - state[0]
        return increase / elapsed if elapsed > 0 else None


PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
"""The fixed percentile aggregates and their q; ``percentile(x, q)`` takes any q."""

AGGREGATES: dict[str, Aggregate] = {
    "count": Count(),
    "sum": Sum(),
    "avg": Avg(),
    "min": Min(),
    "max": Max(),
    "first": First(),
    "last": Last(),
    "stddev": Spread(ddof=1, root=True),
    "stddev_pop": Spread(ddof=0, root=True),
    "variance": Spread(ddof=1, root=False),
    **{name: Percentile(q) for name, q in PERCENTILES.items()},
    "rate": Increase(per_second=True),
    "delta": Increase(per_second=False),
    "distinct": Distinct(),
}
"""The aggregates by name; ``percentile`` is missing as it needs its q (`aggregate_for`)."""


def aggregate_for(func: str, param: float | None) -> Aggregate:
    """The aggregate for a parsed call (`AggregateCall.func` and `.param`).

    ``param`` is only read for ``percentile``, which needs q in (0, 100]; raises
    ValueError for an unknown name or a bad q (the parser rejects both first).
    """
    if func == "percentile":
        if param is None or not 0 < param <= 100:
            raise ValueError(f"percentile needs q in (0, 100], got {param!r}")
        return Percentile(float(param))
    try:
        return AGGREGATES[func]
    except KeyError:
        raise ValueError(f"unknown aggregate {func!r}") from None

"""Bounded-memory window aggregates: percentiles (a log-bucket sketch) and ``distinct``.

Both follow the aggregate contract of `agent.pipeline.aggregates`: a JSON-able state
(dicts with str keys, numbers, str), folded with a non-empty list of values, and the
same result however the values are split across folds.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import orjson

ALPHA = 0.01
"""Relative accuracy of the percentile sketch."""

GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
_INV_LOG_GAMMA = 1 / LOG_GAMMA
_LOG_SCALE = math.log(1 - ALPHA)  # the representative of bucket i is (1 - alpha) * gamma**i
ZERO = 1e-9
"""Values closer to 0 than this count as 0 in the percentile sketch."""
MAX_BUCKETS = 2048
"""Buckets per store (positive, negative) before the sketch collapses its low end."""


@dataclass(frozen=True, slots=True)
class Percentile:
    """The q-th percentile of the numeric values, sketched, relative error <= 1%.

    Definition: of the n values sorted ascending as x[0] <= ... <= x[n-1], the
    percentile is the lower nearest rank x[k] with ``k = floor(q / 100 * (n - 1))``
    (so q = 100 is the maximum, q = 50 of 4 values is x[1]); null without values.

    A DDSketch with alpha = 0.01 and gamma = (1 + alpha) / (1 - alpha): a value v with
    |v| >= 1e-9 counts in bucket ``i = ceil(log_gamma(|v|))``, so
    ``gamma**(i-1) < |v| <= gamma**i``, of a positive or a negative store; smaller
    values count as 0. The result is the representative ``+-2 * gamma**i / (gamma + 1)``
    of the bucket holding x[k], so ``|estimate - x[k]| <= 0.01 * |x[k]|`` (up to float
    rounding at bucket edges), and exactly 0 when ``|x[k]| < 1e-9``.

    Each store keeps at most 2048 buckets, a factor of 4e17 between its smallest and
    largest magnitude. Beyond that its low end is merged into the last kept bucket: the
    smallest positive values, and the most negative values (the largest magnitudes of
    the negative store). Only quantiles whose value lies in a merged range lose the
    bound, i.e. the lowest quantiles (of the positive values, or of all values); the
    high quantiles keep it. The state is ``{"p": {bucket: count}, "n": {bucket: count},
    "z": zero count, "c": total count}``, bucket indices as str for JSON.
    """

    q: float
    numeric = True
    needs_time = False

    def initial(self) -> dict[str, Any]:
        return {"p": {}, "n": {}, "z": 0, "c": 0}

    def fold(
        self, state: dict[str, Any], values: list[Any], times: list[float] | None
    ) -> dict[str, Any]:
        if min(values) >= ZERO:
            _add(state["p"], values, False)
        else:
            positive = [v for v in values if v >= ZERO]
            negative = [-v for v in values if v <= -ZERO]
            if positive:
                _add(state["p"], positive, False)
            if negative:
                _add(state["n"], negative, True)
            state["z"] += len(values) - len(positive) - len(negative)
        state["c"] += len(values)
        return state

    def result(self, state: dict[str, Any]) -> float | None:
        total: int = state["c"]
        if not total:
            return None
        rank = math.floor(self.q / 100 * (total - 1))  # 0-based index of x[k]
        negative = sorted(((int(i), c) for i, c in state["n"].items()), reverse=True)
        for index, count in negative:  # most negative first
            rank -= count
            if rank < 0:
                return -_representative(index)
        rank -= state["z"]
        if rank < 0:
            return 0.0
        for index, count in sorted((int(i), c) for i, c in state["p"].items()):
            rank -= count
            if rank < 0:
                return _representative(index)
        return _representative(max(map(int, state["p"])))  # unreachable with a sound state


def _add(store: dict[str, int], magnitudes: list[Any], negative: bool) -> None:
    """Count ``magnitudes`` (all >= ZERO) into ``store``, then bound its size."""
    log, ceil, scale = math.log, math.ceil, _INV_LOG_GAMMA
    counts: dict[int, int]
    if len(magnitudes) < 32:  # a plain loop beats building a Counter
        counts = {}
        for value in magnitudes:
            index = ceil(log(value) * scale)
            counts[index] = counts.get(index, 0) + 1
    else:
        counts = Counter([ceil(log(value) * scale) for value in magnitudes])
    for index, count in counts.items():
        key = str(index)
        store[key] = store.get(key, 0) + count
    if len(store) > MAX_BUCKETS:
        _collapse(store, negative)


def _collapse(store: dict[str, int], negative: bool) -> None:
    """Merge the buckets beyond MAX_BUCKETS into the last kept one, from the low end.

    The low end is the smallest indices for positive values, the largest for negative
    ones (stored as magnitudes). The outcome only depends on the set of buckets ever
    seen, so it does not depend on how the values were split across folds.
    """
    order = sorted(store, key=int, reverse=negative)
    excess = len(order) - MAX_BUCKETS
    keep = order[excess]
    store[keep] += sum(store.pop(key) for key in order[:excess])


def _representative(index: int) -> float:
    try:
        return math.exp(index * LOG_GAMMA + _LOG_SCALE)
    except OverflowError:
        return 1.7976931348623157e308


EXACT_LIMIT = 1000
"""``distinct`` counts exactly up to this many values, then estimates."""
HLL_BITS = 12
HLL_REGISTERS = 1 << HLL_BITS
_HLL_ALPHA = 0.7213 / (1 + 1.079 / HLL_REGISTERS)
_RANK_BITS = 64 - HLL_BITS


class Distinct:
    """Number of distinct non-null values: exact up to 1000, then a HyperLogLog.

    Values are compared by their canonical key (`canonical_key`): numbers by value (1
    and 1.0 count as one value; true is not 1), strings by content, lists and dicts by
    their JSON text with sorted keys (so a nested 1.0 differs from a nested 1).

    Up to 1000 distinct values the count is exact, with the state
    ``{"s": {string: 1}, "x": {key of any other value: 1}}`` (strings, the common case,
    are kept as themselves: no per-value work). Past 1000 the state becomes
    ``{"h": base64 of 4096 one-byte registers}``, a HyperLogLog of the keys (blake2b,
    8 bytes) whose estimate has a standard error of about 1.6%.
    """

    numeric = False
    needs_time = False

    def initial(self) -> dict[str, Any]:
        return {"s": {}, "x": {}}

    def fold(
        self, state: dict[str, Any], values: list[Any], times: list[float] | None
    ) -> dict[str, Any]:
        kinds = set(map(type, values))
        strings: Any = values if kinds == {str} else ()
        others: Any = () if strings else values
        if str in kinds and not strings:
            strings = [v for v in values if type(v) is str]
            others = [v for v in values if type(v) is not str]
        if others and kinds == {int}:
            others = set(map(str, set(others)))  # = canonical_key, without a call per value
        elif others:  # ints and floats dedupe by value first (1 == 1.0, like their keys)
            others = set(map(canonical_key, set(others) if kinds <= _SET_SAFE else others))
        if "h" not in state:
            state["s"].update(dict.fromkeys(strings, 1))
            state["x"].update(dict.fromkeys(others, 1))
            if len(state["s"]) + len(state["x"]) <= EXACT_LIMIT:
                return state
            strings, others = state.pop("s"), state.pop("x")
            registers = bytearray(HLL_REGISTERS)
        else:
            registers = bytearray(base64.b64decode(state["h"]))
        _hll_add(registers, map(orjson.dumps, set(strings)))  # = canonical_key(v).encode()
        _hll_add(registers, map(str.encode, others))
        state["h"] = base64.b64encode(registers).decode()
        return state

    def result(self, state: dict[str, Any]) -> int:
        if "h" not in state:
            return len(state["s"]) + len(state["x"])
        registers = base64.b64decode(state["h"])
        estimate = _HLL_ALPHA * HLL_REGISTERS**2 / sum(2.0**-r for r in registers)
        zeros = registers.count(0)
        if estimate <= 2.5 * HLL_REGISTERS and zeros:  # small range: linear counting
            estimate = HLL_REGISTERS * math.log(HLL_REGISTERS / zeros)
        return round(estimate)


_SET_SAFE = frozenset((str, int, float))
"""Types that `set()` dedupes exactly as their keys do (unlike bool, where True == 1)."""


def _hll_add(registers: bytearray, keys: Iterable[bytes]) -> None:
    """Add the encoded keys to the HyperLogLog ``registers``."""
    low = (1 << _RANK_BITS) - 1
    for key in keys:
        hashed = int.from_bytes(blake2b(key, digest_size=8).digest())
        slot, rank = hashed >> _RANK_BITS, _RANK_BITS + 1 - (hashed & low).bit_length()
        if registers[slot] < rank:  # noqa: PLR1730 (max() is a slower call)
            registers[slot] = rank


def canonical_key(value: Any) -> str:
    """The text ``distinct`` compares values by (JSON, numbers normalised)."""
    kind = type(value)
    if kind is str:
        return orjson.dumps(value).decode()
    if kind is int:
        return str(value)
    if kind is float:
        return str(int(value)) if value.is_integer() else repr(value)
    if kind is bool:
        return "true" if value else "false"
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits inside: slower
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

"""Window aggregates against straightforward references, folded in random splits."""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.aggregates import AGGREGATES, Aggregate, aggregate_for
from agent.pipeline.expr import AGGREGATE_FUNCTIONS, ExprError, parse_aggregate
from agent.pipeline.sketches import MAX_BUCKETS, Distinct, Percentile, canonical_key

# --- helpers ---------------------------------------------------------------------------


def chunks(values: list[Any], cuts: list[int]) -> list[tuple[int, int]]:
    """Non-empty [start, end) ranges covering ``values``, cut at ``cuts`` (any ints)."""
    points = sorted({c % len(values) for c in cuts if c % len(values)} | {0, len(values)})
    return list(pairwise(points))


def fold(
    function: Aggregate,
    values: list[Any],
    cuts: Sequence[int] = (),
    times: list[float] | None = None,
    *,
    via_json: bool = False,
) -> Any:
    """The state after folding ``values`` in pieces, optionally through JSON between folds."""
    state = function.initial()
    if not values:
        return state
    for start, end in chunks(values, list(cuts)):
        if via_json:
            state = orjson.loads(orjson.dumps(state))
        part = times[start:end] if function.needs_time and times is not None else None
        state = function.fold(state, values[start:end], part)
    return orjson.loads(orjson.dumps(state)) if via_json else state


def result(function: Aggregate, *args: Any, **kwargs: Any) -> Any:
    return function.result(fold(function, *args, **kwargs))


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
numbers = st.lists(st.one_of(finite, st.integers(-(10**6), 10**6)), min_size=1, max_size=200)
cuts = st.lists(st.integers(0, 10**6), max_size=8)


# --- existing aggregates keep their behaviour ------------------------------------------


@given(numbers, cuts)
def test_existing_aggregates(values: list[float], cut: list[int]) -> None:
    assert result(AGGREGATES["count"], values, cut) == len(values)
    assert math.isclose(result(AGGREGATES["sum"], values, cut), sum(values), abs_tol=1e-6)
    avg = result(AGGREGATES["avg"], values, cut, via_json=True)
    assert math.isclose(avg, sum(values) / len(values), abs_tol=1e-6)
    assert result(AGGREGATES["min"], values, cut, via_json=True) == min(values)
    assert result(AGGREGATES["max"], values, cut) == max(values)
    assert result(AGGREGATES["first"], values, cut) == values[0]
    assert result(AGGREGATES["last"], values, cut, via_json=True) == values[-1]


def test_empty_windows() -> None:
    for name in ("stddev", "stddev_pop", "variance", "p50", "p99", "rate", "delta"):
        assert result(AGGREGATES[name], []) is None, name
    assert result(AGGREGATES["distinct"], []) == 0
    assert result(AGGREGATES["avg"], []) is None


# --- stddev, stddev_pop, variance ------------------------------------------------------


@settings(max_examples=300)
@given(numbers, cuts, st.booleans())
def test_spread_matches_statistics(values: list[float], cut: list[int], via_json: bool) -> None:
    scale = max(1.0, *map(abs, values))
    pvariance = result(AGGREGATES["stddev_pop"], values, cut, via_json=via_json) ** 2
    assert math.isclose(
        pvariance, statistics.pvariance(values), rel_tol=1e-9, abs_tol=scale**2 * 1e-12
    )
    if len(values) < 2:
        assert result(AGGREGATES["stddev"], values, cut) is None
        assert result(AGGREGATES["variance"], values, cut) is None
        return
    variance = result(AGGREGATES["variance"], values, cut, via_json=via_json)
    expected = statistics.variance(values)
    assert math.isclose(variance, expected, rel_tol=1e-9, abs_tol=scale**2 * 1e-12)
    stddev = result(AGGREGATES["stddev"], values, cut, via_json=via_json)
    assert math.isclose(stddev**2, expected, rel_tol=1e-9, abs_tol=scale**2 * 1e-12)


@given(numbers, cuts)
def test_spread_does_not_depend_on_the_split(values: list[float], cut: list[int]) -> None:
    whole = fold(AGGREGATES["variance"], values)
    split = fold(AGGREGATES["variance"], values, cut, via_json=True)
    assert whole[0] == split[0]
    scale = max(1.0, *map(abs, values))
    assert math.isclose(whole[1], split[1], rel_tol=1e-12, abs_tol=scale * 1e-12)
    assert math.isclose(whole[2], split[2], rel_tol=1e-9, abs_tol=scale**2 * len(values) * 1e-12)


def test_spread_is_numerically_stable() -> None:
    rnd = random.Random(3)
    values = [1e9 + rnd.random() for _ in range(10_000)]
    expected = statistics.stdev(values)
    for cut in ([], [1], [17, 5000, 5001, 9999]):
        assert math.isclose(result(AGGREGATES["stddev"], values, cut), expected, rel_tol=1e-6)


def test_spread_of_one_value_and_ints() -> None:
    assert result(AGGREGATES["stddev_pop"], [5]) == 0.0
    assert result(AGGREGATES["variance"], [1, 2, 3, 4], [2]) == 5 / 3
    big = [2**62, -(2**62), 2**62 - 1]
    assert math.isclose(result(AGGREGATES["variance"], big, [1]), statistics.variance(big))


def test_spread_overflow_is_null_not_wrong() -> None:
    values = [1.5e308, -1.5e308, 1e308]
    for name in ("stddev", "stddev_pop", "variance"):
        state = fold(AGGREGATES[name], values, [1, 2], via_json=True)
        assert AGGREGATES[name].result(state) is None
        orjson.dumps(state)  # still snapshottable
    state = fold(AGGREGATES["variance"], [1.5e308, -1.5e308, 1.0, 2.0], [2], via_json=True)
    assert AGGREGATES["variance"].result(state) is None


# --- percentiles -----------------------------------------------------------------------


def lower_rank(values: list[float], q: float) -> float:
    """The reference: x[floor(q / 100 * (n - 1))] of the sorted values."""
    ordered = sorted(values)
    return ordered[math.floor(q / 100 * (len(ordered) - 1))]


def within_bound(estimate: float | None, exact: float) -> bool:
    assert estimate is not None
    if abs(exact) < 1e-9:
        return estimate == 0.0
    return abs(estimate - exact) <= 0.01 * abs(exact) * (1 + 1e-9)


wide = st.one_of(
    finite,
    st.integers(-(2**63) + 1, 2**63 - 1),
    st.floats(min_value=-1e-6, max_value=1e-6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(0.0),
)
quantiles = st.one_of(st.sampled_from([50.0, 90.0, 95.0, 99.0, 100.0]), st.floats(1e-3, 100.0))


@settings(max_examples=300)
@given(st.lists(wide, min_size=1, max_size=300), cuts, quantiles, st.booleans())
def test_percentile_within_one_percent(
    values: list[float], cut: list[int], q: float, via_json: bool
) -> None:
    function = Percentile(q)
    estimate = result(function, values, cut, via_json=via_json)
    assert within_bound(estimate, lower_rank(values, q)), (estimate, lower_rank(values, q))


@given(st.lists(wide, min_size=1, max_size=300), cuts)
def test_percentile_state_does_not_depend_on_the_split(values: list[float], cut: list[int]) -> None:
    assert fold(Percentile(99.0), values) == fold(Percentile(99.0), values, cut, via_json=True)


@pytest.mark.parametrize("name", ["p50", "p90", "p95", "p99"])
def test_fixed_percentiles(name: str) -> None:
    rnd = random.Random(name)
    values = [rnd.lognormvariate(3, 2) for _ in range(50_000)] + [-rnd.random() for _ in range(99)]
    q = float(name[1:])
    estimate = result(AGGREGATES[name], values, [rnd.randrange(50_000) for _ in range(20)])
    assert within_bound(estimate, lower_rank(values, q))
    assert estimate == result(aggregate_for("percentile", q), values)


def test_percentile_of_extremes() -> None:
    values = [1.7976931348623157e308, -1.7976931348623157e308, 1e-300, -0.0, 5e-10]
    assert within_bound(result(Percentile(100), values), 1.7976931348623157e308)
    assert within_bound(result(Percentile(1), values), -1.7976931348623157e308)
    assert result(Percentile(50), values) == 0.0
    assert within_bound(result(Percentile(100), [2**63 - 1]), 2**63 - 1)


def test_percentile_bucket_count_is_bounded() -> None:
    """Values spread over 39 decades overflow 2048 buckets; the low end gets merged."""
    rnd = random.Random(5)
    magnitudes = [10 ** rnd.uniform(-9, 30) for _ in range(20_000)]
    values = magnitudes + [-m for m in magnitudes[:5000]]
    cut = [rnd.randrange(25_000) for _ in range(30)]
    state = fold(Percentile(99.0), values, cut, via_json=True)
    assert len(state["p"]) == MAX_BUCKETS
    assert len(state["n"]) == MAX_BUCKETS
    assert state == fold(Percentile(99.0), values)
    assert state["c"] == sum(state["p"].values()) + sum(state["n"].values()) + state["z"]
    gamma = 1.01 / 0.99
    smallest_positive = gamma ** (min(map(int, state["p"])) - 1)  # lower edge of the kept
    largest_negative = gamma ** max(map(int, state["n"]))
    accurate = inaccurate = 0
    for q in [0.001, *range(1, 101)]:
        exact = lower_rank(values, q)
        kept = exact > smallest_positive if exact > 0 else -exact <= largest_negative
        if kept:  # the high quantiles of the positive values keep the bound
            assert within_bound(Percentile(q).result(state), exact), q
            accurate += 1
        else:
            inaccurate += not within_bound(Percentile(q).result(state), exact)
    assert accurate > 30
    assert inaccurate > 30
    assert within_bound(Percentile(100).result(state), max(values))


# --- rate and delta --------------------------------------------------------------------


def counter_increase(values: list[float]) -> float:
    increase: float = 0
    for prev, value in pairwise(values):
        increase += value - prev if value >= prev else value
    return increase


@st.composite
def counters(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    steps = draw(
        st.lists(
            st.one_of(st.integers(0, 1000), st.floats(0, 1000), st.just(-1)),
            min_size=1,
            max_size=200,
        )
    )
    values: list[float] = []
    current: float = draw(st.integers(0, 10**6))
    for step in steps:
        current = draw(st.integers(0, 50)) if step == -1 else current + step  # -1: a reset
        values.append(current)
    start = draw(st.floats(1.6e9, 1.8e9))
    gaps = draw(st.lists(st.floats(0, 10), min_size=len(values), max_size=len(values)))
    times = [start + sum(gaps[: i + 1]) for i in range(len(values))]
    return values, times


@settings(max_examples=300)
@given(counters(), cuts, st.booleans())
def test_delta_and_rate(
    counter: tuple[list[float], list[float]], cut: list[int], via_json: bool
) -> None:
    values, times = counter
    delta = result(AGGREGATES["delta"], values, cut, times, via_json=via_json)
    rate = result(AGGREGATES["rate"], values, cut, times, via_json=via_json)
    if len(values) < 2:
        assert delta is None
        assert rate is None
        return
    expected = counter_increase(values)
    assert math.isclose(delta, expected, rel_tol=1e-9, abs_tol=1e-6)
    if all(type(v) is int for v in values):
        assert delta == expected
    elapsed = times[-1] - times[0]
    if elapsed > 0:
        assert math.isclose(rate, expected / elapsed, rel_tol=1e-9, abs_tol=1e-6)
    else:
        assert rate is None


def test_rate_example_with_a_reset() -> None:
    values = [100, 150, 20, 70]  # +50, reset to 20 (+20), +50
    times = [0.0, 10.0, 20.0, 30.0]
    for cut in ([], [1], [2], [3], [1, 2, 3]):
        assert result(AGGREGATES["delta"], values, cut, times, via_json=True) == 120
        assert result(AGGREGATES["rate"], values, cut, times) == 4.0
    assert result(AGGREGATES["rate"], [1, 2], [], [5.0, 5.0]) is None
    assert result(AGGREGATES["delta"], [1, 2], [], [5.0, 5.0]) == 1


def test_delta_overflow() -> None:
    values = [0, 2**63 - 1, 0, 2**63 - 1, 0, 2**63 - 1]
    state = fold(AGGREGATES["delta"], values, [2, 4], [float(i) for i in range(6)], via_json=True)
    assert AGGREGATES["delta"].result(state) == float(3 * (2**63 - 1))
    floats = [1.7e308, 0.0, 1.7e308, 0.0, 1.7e308]
    state = fold(AGGREGATES["delta"], floats, [1], [float(i) for i in range(5)], via_json=True)
    assert AGGREGATES["delta"].result(state) is None
    assert AGGREGATES["rate"].result(state) is None


# --- distinct --------------------------------------------------------------------------


def reference_key(value: Any) -> tuple[str, Any]:
    """Python equality for numbers (1 == 1.0), but true is not 1; containers by JSON."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("str", value)
    return ("json", json.dumps(value, sort_keys=True))


scalars = st.one_of(
    st.text(max_size=3),
    st.integers(-5, 5),
    st.sampled_from([1.0, 2.0, -0.0, 0.5, 10**20, 1e20]),
    st.floats(-5, 5, allow_nan=False),
    st.booleans(),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300)
@given(st.lists(json_values, min_size=1, max_size=300), cuts, st.booleans())
def test_distinct_is_exact_up_to_1000(values: list[Any], cut: list[int], via_json: bool) -> None:
    expected = len({reference_key(v) for v in values})
    assert result(AGGREGATES["distinct"], values, cut, via_json=via_json) == expected


def test_distinct_examples() -> None:
    values = [1, 1.0, True, "1", [1], [1.0], {"a": 1, "b": 2}, {"b": 2, "a": 1}, 10**20, 1e20]
    # 1 and 1.0; true; "1"; [1]; [1.0] (nested floats are not normalised); one dict; 1e20
    assert result(Distinct(), values, [3, 7]) == 7
    assert result(Distinct(), ["a", "b", "a"]) == 2
    assert canonical_key(1.0) == canonical_key(1) == "1"
    assert canonical_key("x") == '"x"'
    assert canonical_key(True) == "true"


@pytest.mark.parametrize("total", [999, 1000, 1001, 1500, 5000, 20_000, 100_000])
def test_distinct_estimate_within_5_percent(total: int) -> None:
    rnd = random.Random(total)
    values: list[Any] = [f"device-{i}" for i in range(total // 2)]
    values += list(range(total - total // 2))
    values += rnd.choices(values, k=total // 2)  # repeats change nothing
    rnd.shuffle(values)
    cut = [rnd.randrange(len(values)) for _ in range(25)]
    state = fold(Distinct(), values, cut, via_json=True)
    assert state == fold(Distinct(), values)  # the registers do not depend on the split
    estimate = Distinct().result(state)
    assert type(estimate) is int
    if total <= 1000:
        assert estimate == total
        assert "x" in state
    else:
        assert "h" in state
        assert abs(estimate - total) <= 0.05 * total, estimate


# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "func", "arg", "param"),
    [
        ("percentile(temp, 99.9)", "percentile", "temp", 99.9),
        ("percentile(payload.x * 2, 100)", "percentile", "payload.x * 2", 100.0),
        ("percentile(x, +0.5)", "percentile", "x", 0.5),
        ("p50(x)", "p50", "x", 50.0),
        ("p90(x)", "p90", "x", 90.0),
        ("p95(x)", "p95", "x", 95.0),
        ("p99(value)", "p99", "value", 99.0),
        ("stddev(x)", "stddev", "x", None),
        ("stddev_pop(x)", "stddev_pop", "x", None),
        ("variance(x)", "variance", "x", None),
        ("rate(bytes)", "rate", "bytes", None),
        ("delta(bytes)", "delta", "bytes", None),
        ("distinct(device)", "distinct", "device", None),
        ("avg(x)", "avg", "x", None),
    ],
)
def test_parse_new_aggregates(text: str, func: str, arg: str, param: float | None) -> None:
    call = parse_aggregate(text)
    assert (call.func, call.param, call.text) == (func, param, text)
    assert call.arg is not None
    assert call.arg.text == arg
    function = aggregate_for(call.func, call.param)
    if param is None:
        assert function is AGGREGATES[func]
    else:
        assert isinstance(function, Percentile)
        assert function.q == param


def test_count_parses_as_before() -> None:
    call = parse_aggregate("count()")
    assert (call.func, call.arg, call.param) == ("count", None, None)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("percentile(x)", "percentile() takes exactly 2 arguments (value, q), got 1", 1),
        ("percentile(x, 1, 2)", "percentile() takes exactly 2 arguments (value, q), got 3", 1),
        ("percentile(x, 0)", "percentile() q must be in (0, 100], got 0", 15),
        ("percentile(x, 101)", "percentile() q must be in (0, 100], got 101", 15),
        ("percentile(x, -5)", "percentile() q must be in (0, 100], got -5", 15),
        ("percentile(x,1e999)", "percentile() q must be in (0, 100], got 1e999", 14),
        (
            "percentile(x, y)",
            "percentile() q must be a number literal in (0, 100], such as 99.9",
            15,
        ),
        (
            "percentile(x, True)",
            "percentile() q must be a number literal in (0, 100], such as 99.9",
            15,
        ),
        (
            "percentile(x, 9*9)",
            "percentile() q must be a number literal in (0, 100], such as 99.9",
            15,
        ),
        (
            "percentile(x, '9')",
            "percentile() q must be a number literal in (0, 100], such as 99.9",
            15,
        ),
        ("p99()", "p99() takes exactly 1 argument, got 0", 1),
        (" p99(a, b)", "p99() takes exactly 1 argument, got 2", 2),
        ("stddev()", "stddev() takes exactly 1 argument, got 0", 1),
        ("distinct(a, b)", "distinct() takes exactly 1 argument, got 2", 1),
        ("percentile(x, q=5)", "keyword arguments are not allowed", 15),
    ],
)
def test_parse_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(ExprError) as caught:
        parse_aggregate(text)
    assert (caught.value.message, caught.value.column) == (message, column)


def test_unknown_aggregate_lists_the_new_ones() -> None:
    with pytest.raises(ExprError) as caught:
        parse_aggregate("median(x)")
    assert "percentile" in caught.value.message
    assert "count_distinct" not in AGGREGATE_FUNCTIONS


def test_registry_matches_the_parser() -> None:
    assert set(AGGREGATE_FUNCTIONS) == set(AGGREGATES) | {"percentile"}
    for name, function in AGGREGATES.items():
        state = orjson.loads(orjson.dumps(function.initial()))
        assert function.result(state) == function.result(function.initial()), name
    for bad in (None, 0.0, 100.5, -1.0, math.nan):
        with pytest.raises(ValueError, match="percentile"):
            aggregate_for("percentile", bad)
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate_for("median", None)

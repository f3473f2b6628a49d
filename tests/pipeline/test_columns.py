"""Batch evaluation inlines common expression shapes; it must agree with the closures."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.batch import Batch
from agent.pipeline.columns import NO_META, column, key_column
from agent.pipeline.expr import compile_expression, compile_predicate

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
)
PAYLOADS = st.one_of(
    SCALARS,
    st.dictionaries(st.sampled_from(["v", "value", "x"]), SCALARS, max_size=3),
    st.lists(SCALARS, max_size=2),
)
EXPRESSIONS = [
    f"{field} {op} {constant}"
    for field in ("v", "value")
    for op in ("<", "<=", ">", ">=", "==", "!=")
    for constant in ("15", "-2.5", "0", "'a'", "9007199254740993")
] + ["v", "value", "x", "v + 1", "key", "topic[0] == 'a'"]


def same(a: Any, b: Any) -> bool:
    nan = isinstance(a, float) and math.isnan(a) and isinstance(b, float) and math.isnan(b)
    return nan or a == b


@settings(max_examples=300, deadline=None)
@given(payloads=st.lists(PAYLOADS, max_size=8), text=st.sampled_from(EXPRESSIONS))
def test_batch_columns_agree_with_the_closures(payloads: list[Any], text: str) -> None:
    keys: list[str | None] = ["k"] * len(payloads)
    batch = Batch.of_payloads(payloads, [1.0] * len(payloads), keys=keys)
    batch.topics = ["a/b"] * len(payloads)
    for compiled in (compile_expression(text), compile_predicate(text)):
        metas = batch.metas()
        expected = [compiled.fn(p, m) for p, m in zip(payloads, metas, strict=True)]
        got = column(compiled, batch)
        assert all(same(g, e) for g, e in zip(got, expected, strict=True)), (text, got)
        assert [bool(g) for g in got] == [bool(e) for e in expected]


def test_comparisons_are_inlined_for_field_against_constant() -> None:
    assert compile_predicate("value > 15").field_test == ("value", "gt", 15)
    assert compile_predicate("15 < value").field_test == ("value", "gt", 15)
    assert compile_predicate("env.t > 15").field_test is None
    assert compile_predicate("value > 15.5").fn({"value": 16}, NO_META)


def test_keys_are_text() -> None:
    batch = Batch.of_payloads([{"d": 1}, {"d": 2.0}, {"d": "x"}, {}, {"d": True}], [0.0] * 5)
    assert key_column(compile_expression("d"), batch) == ["1", "2", "x", None, "true"]

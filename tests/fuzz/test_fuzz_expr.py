"""Fuzzing what tests/pipeline/test_expr_properties.py does not: aggregates and predicates.

That module already fuzzes `compile_expression` with token soup, any Unicode text and
random valid trees, and checks evaluation never raises. Here the two other entry
points the config loader calls get the same treatment (`parse_aggregate` for window
aggregates, `compile_predicate` for filters), plus inputs at the parser's limits
(2,000 characters, 50 levels). The promise: ExprError with a column inside the text,
or a compiled object whose evaluation never raises (agent/pipeline/expr/expression.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.pipeline.expr import EventMeta, ExprError, compile_predicate, parse_aggregate
from tests.fuzz.budget import fuzz
from tests.pipeline.test_expr_properties import METAS, PAYLOADS, TOKENS

AGGREGATE_TOKENS = TOKENS | st.sampled_from(
    ["count", "sum", "avg", "mean", "min", "max", "first", "last", "percentile", "p50",
     "p99", "stddev", "distinct", "rate", "0.5", "100", "1e400", "-1", "(x)", "()", "(x, 5)"]
)  # fmt: skip


def compiled_or_column(compile_: Any, text: str) -> Any:
    """The compiled object, or None after checking the ExprError's column."""
    started = time.perf_counter()
    try:
        return compile_(text)
    except ExprError as error:
        assert 1 <= error.column <= max(len(text), 1) + 1, (text, error.column)
        assert error.text == text and error.message
        return None
    finally:
        assert time.perf_counter() - started < 2.0


@fuzz(200)
@given(st.lists(AGGREGATE_TOKENS, max_size=10).map("".join), st.lists(PAYLOADS, max_size=3), METAS)
def test_aggregate_soup_parses_or_raises_expr_error(
    text: str, payloads: list[Any], meta: EventMeta
) -> None:
    call = compiled_or_column(parse_aggregate, text)
    if call is not None and call.arg is not None:
        for payload in payloads:
            call.arg.evaluate(payload, meta)


@fuzz(150)
@given(st.lists(TOKENS, max_size=16).map("".join), st.lists(PAYLOADS, max_size=3), METAS)
def test_predicate_soup_compiles_to_a_bool_or_raises_expr_error(
    text: str, payloads: list[Any], meta: EventMeta
) -> None:
    predicate = compiled_or_column(compile_predicate, text)
    if predicate is not None:
        for payload in payloads:
            assert type(predicate.evaluate(payload, meta)) is bool


LIMITS = [
    "a" + "+a" * 999,  # 1,999 characters: under the length limit
    "a" + "+a" * 1000,  # 2,001: over it
    "(" * 49 + "a" + ")" * 49,
    "(" * 51 + "a" + ")" * 51,
    "-" * 1999 + "a",
    "not " * 499 + "a",
    "[" * 60 + "]" * 60,
    "a" + "[0]" * 600,
    "abs(" * 40 + "a" + ")" * 40,
    "coalesce(" + "a, " * 600 + "a)",
    "avg(" + "a + " * 400 + "a)",
    "count(" * 30 + ")" * 30,
]


@pytest.mark.parametrize("text", LIMITS, ids=range(len(LIMITS)))
def test_inputs_at_the_parser_limits(text: str) -> None:
    meta = EventMeta("t", None, 1.0, 1.0)
    for compile_ in (compile_predicate, parse_aggregate):
        compiled = compiled_or_column(compile_, text)
        if compiled is not None and compile_ is compile_predicate:
            assert type(compiled.evaluate({"a": 1}, meta)) is bool

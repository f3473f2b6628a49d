"""Window aggregate specs such as ``count()`` or ``avg(payload.temp)``."""

from __future__ import annotations

import ast
import math
import time
from dataclasses import dataclass

from agent.pipeline.expr.compiler import Clock, Compiler
from agent.pipeline.expr.expression import Expression
from agent.pipeline.expr.source import Source, parse

AGGREGATE_FUNCTIONS = (
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "first",
    "last",
    "stddev",
    "stddev_pop",
    "variance",
    "p50",
    "p90",
    "p95",
    "p99",
    "percentile",
    "rate",
    "delta",
    "distinct",
)
"""Aggregates a window step can compute; `agent.pipeline.aggregates` implements them."""

IMPLIED_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
"""The q of the fixed percentile aggregates."""


@dataclass
class AggregateCall:
    """A parsed aggregate: the function name and its argument expression.

    ``arg`` is None only for ``count()``, which counts events; ``count(x)``
    and the others get the compiled argument, whose ``text`` is the argument
    exactly as written. ``param`` is the q of a percentile: the literal of
    ``percentile(x, q)``, or 50, 90, 95, 99 for ``p50(x)``... (else None).
    """

    func: str
    arg: Expression | None
    text: str
    param: float | None = None


def parse_aggregate(text: str, *, clock: Clock = time.time) -> AggregateCall:
    """Parse ``func(arg)`` and compile its argument; raises ExprError with the column."""
    source = parse(text)
    call = source.tree
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise source.error("expected an aggregate such as count() or avg(value)", call)
    func = call.func.id
    if func not in AGGREGATE_FUNCTIONS:
        valid = ", ".join(AGGREGATE_FUNCTIONS)
        raise source.error(f"unknown aggregate {func!r} (valid: {valid})", call.func)
    _check_arguments(source, call, func)
    param = _percentile_q(source, call.args[1]) if func == "percentile" else None
    param = IMPLIED_PERCENTILES.get(func, param)
    if not call.args:
        return AggregateCall(func, None, text)
    compiler = Compiler(source, clock)
    node = compiler.compile(call.args[0])
    argument = Expression(source.segment(call.args[0]), node.fn, compiler.reads_meta, node.path)
    return AggregateCall(func, argument, text, param)


def _check_arguments(source: Source, call: ast.Call, func: str) -> None:
    """count takes zero or one argument, percentile two, every other aggregate one."""
    if call.keywords:
        raise source.error("keyword arguments are not allowed", call.keywords[0])
    if any(isinstance(arg, ast.Starred) for arg in call.args):
        raise source.error("starred arguments are not allowed", call)
    count = len(call.args)
    if func == "count" and count > 1:
        raise source.error(f"count() takes at most 1 argument, got {count}", call)
    if func == "percentile" and count != 2:
        message = f"percentile() takes exactly 2 arguments (value, q), got {count}"
        raise source.error(message, call)
    if func not in ("count", "percentile") and count != 1:
        raise source.error(f"{func}() takes exactly 1 argument, got {count}", call)


def _percentile_q(source: Source, node: ast.expr) -> float:
    """The q of ``percentile(x, q)``: a number literal in (0, 100]."""
    q = _number_literal(node)
    if q is None:
        message = "percentile() q must be a number literal in (0, 100], such as 99.9"
        raise source.error(message, node)
    if not 0 < q <= 100:
        message = f"percentile() q must be in (0, 100], got {source.segment(node)}"
        raise source.error(message, node)
    return q


def _number_literal(node: ast.expr) -> float | None:
    """The value of an int or float literal, optionally signed; None for anything else."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return sign * float(value)
        except OverflowError:  # an int literal beyond any float
            return sign * math.inf
    return None

"""Window aggregate specs such as ``count()`` or ``avg(payload.temp)``."""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass

from agent.pipeline.expr.compiler import Clock, Compiler
from agent.pipeline.expr.expression import Expression
from agent.pipeline.expr.source import Source, parse

AGGREGATE_FUNCTIONS = ("count", "sum", "avg", "min", "max", "first", "last")
"""Aggregates a window step can compute; the window module implements them."""


@dataclass
class AggregateCall:
    """A parsed aggregate: the function name and its argument expression.

    ``arg`` is None only for ``count()``, which counts events; ``count(x)``
    and the others get the compiled argument, whose ``text`` is the argument
    exactly as written.
    """

    func: str
    arg: Expression | None
    text: str


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
    if not call.args:
        return AggregateCall(func, None, text)
    node = Compiler(source, clock).compile(call.args[0])
    return AggregateCall(func, Expression(source.segment(call.args[0]), node.fn), text)


def _check_arguments(source: Source, call: ast.Call, func: str) -> None:
    """count takes zero or one argument, every other aggregate exactly one."""
    if call.keywords:
        raise source.error("keyword arguments are not allowed", call.keywords[0])
    if any(isinstance(arg, ast.Starred) for arg in call.args):
        raise source.error("starred arguments are not allowed", call)
    count = len(call.args)
    if func == "count" and count > 1:
        raise source.error(f"count() takes at most 1 argument, got {count}", call)
    if func != "count" and count != 1:
        raise source.error(f"{func}() takes exactly 1 argument, got {count}", call)

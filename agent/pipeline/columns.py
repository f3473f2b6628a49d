"""Evaluate a compiled expression over a whole batch, one list comprehension per column.

The closures of `agent.pipeline.expr` cost a Python call per event. For the shapes
pipelines use most — a top-level field (``device``) and a field compared with a
constant (``value > 15``) — the lookup and the comparison are inlined into a list
comprehension here, with exactly the semantics of the fused closures in
`agent.pipeline.expr.compare` (a test compares the two on random payloads).
"""

from __future__ import annotations

from typing import Any

from agent.pipeline.batch import Batch
from agent.pipeline.expr import EventMeta, Expression
from agent.pipeline.expr.nodes import Fn
from agent.pipeline.expr.paths import non_object_root

NO_META = EventMeta("", None, 0.0, 0.0)
"""Stands in for metadata when an expression reads only the payload."""

_ROOTS: dict[str, Fn] = {}
"""How each field name reads a payload that is not an object, built once per name."""


def column(expression: Expression, batch: Batch) -> list[Any]:
    """The expression's value for every event of ``batch``, in order; never raises."""
    fn = expression.fn
    if expression.reads_meta:
        return [fn(p, m) for p, m in zip(batch.payloads, batch.metas(), strict=True)]
    if expression.field_test is not None:
        return _field_test_column(expression.field_test, batch.payloads)
    meta = NO_META
    path = expression.path
    if path is not None and len(path) == 1 and type(path[0]) is str:
        name = path[0]  # a top-level field: inline the lookup, call only for odd payloads
        return [p.get(name) if type(p) is dict else fn(p, meta) for p in batch.payloads]
    return [fn(p, meta) for p in batch.payloads]


def key_column(expression: Expression | None, batch: Batch) -> list[str | None]:
    """Grouping keys: the event key when unset, else the expression's value as text.

    Keys are text because they are stored (event key column, state snapshots) and
    compared across restarts: the number 1 and the string "1" are the same key.
    """
    if expression is None:
        return batch.keys
    values = column(expression, batch)
    if all(type(v) is str for v in values):
        return values
    return [None if v is None else v if type(v) is str else _text(v) for v in values]


def _text(value: Any) -> str:
    if type(value) is float and value.is_integer():
        return str(int(value))
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)


def _field_test_column(test: tuple[str, str, Any], payloads: list[Any]) -> list[Any]:
    """``field <op> constant`` over a batch: numbers for orderings, any scalar for ==.

    Orderings are true only for an int or float field (never a bool) compared with a
    number; equality never matches a bool field against a number or string.
    """
    name, op, value = test
    other = _ROOTS.get(name) or _ROOTS.setdefault(name, non_object_root(name))
    meta = NO_META
    found = [p.get(name) if type(p) is dict else other(p, meta) for p in payloads]
    if op == "eq":
        return [type(v) is not bool and v == value for v in found]
    if op == "ne":
        return [type(v) is bool or v != value for v in found]
    f = float(value)
    if op == "gt":
        return [v > f if type(v) is float else type(v) is int and v > value for v in found]
    if op == "ge":
        return [v >= f if type(v) is float else type(v) is int and v >= value for v in found]
    if op == "lt":
        return [v < f if type(v) is float else type(v) is int and v < value for v in found]
    return [v <= f if type(v) is float else type(v) is int and v <= value for v in found]

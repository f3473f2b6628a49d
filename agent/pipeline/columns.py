"""Evaluate a compiled expression over a whole batch, one list comprehension per column."""

from __future__ import annotations

from typing import Any

from agent.pipeline.batch import Batch
from agent.pipeline.expr import EventMeta, Expression

NO_META = EventMeta("", None, 0.0, 0.0)
"""Stands in for metadata when an expression reads only the payload."""


def column(expression: Expression, batch: Batch) -> list[Any]:
    """The expression's value for every event of ``batch``, in order; never raises.

    Expressions that read only the payload skip building an EventMeta per event,
    which is most of the cost of evaluating a simple field path.
    """
    fn = expression.fn
    if expression.reads_meta:
        return [fn(p, m) for p, m in zip(batch.payloads, batch.metas(), strict=True)]
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
    return [
        None if v is None else v if type(v) is str else _text(v) for v in column(expression, batch)
    ]


def _text(value: Any) -> str:
    if type(value) is float and value.is_integer():
        return str(int(value))
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)

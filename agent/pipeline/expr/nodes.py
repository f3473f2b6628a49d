"""The compiler's intermediate result: a closure plus what specialisation needs to know."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.pipeline.expr.meta import EventMeta

Fn = Callable[[Any, EventMeta], Any]
"""A compiled expression: ``fn(payload, meta) -> value``."""

PathKey = str | int
"""One step of a payload field path: an object key or an array index."""


@dataclass(frozen=True, slots=True)
class Node:
    """A compiled sub-expression.

    Besides the closure it remembers whether it is a constant (so parents can
    fold or specialise on it), whether it is a plain payload field path (so
    ``temp > 15`` fuses the lookup into the comparison), and whether it always
    yields a bool (so predicates skip a coercion wrapper).
    """

    fn: Fn
    constant: bool = False
    value: Any = None
    path: tuple[PathKey, ...] | None = None
    boolean: bool = False
    field_test: FieldTest | None = None


FieldTest = tuple[str, str, Any]
"""``(field, operator, constant)`` of a fused ``field <op> constant`` comparison, with
operator one of gt ge lt le eq ne: lets a whole batch be compared in one comprehension."""


def constant(value: Any) -> Node:
    """A node that always yields ``value``; lists are copied so callers may mutate them."""
    if type(value) is list:
        items = tuple(value)

        def fresh_list(payload: Any, meta: EventMeta) -> Any:
            return list(items)

        return Node(fresh_list, constant=True, value=value)

    def fixed(payload: Any, meta: EventMeta) -> Any:
        return value

    return Node(fixed, constant=True, value=value, boolean=type(value) is bool)


def fold(node_fn: Fn) -> Node:
    """Evaluate a pure closure whose inputs are all constants, once, at compile time."""
    return constant(node_fn(None, _NO_META))


_NO_META = EventMeta("", None, 0.0, 0.0)
"""Folded closures never read metadata; this stands in for it."""

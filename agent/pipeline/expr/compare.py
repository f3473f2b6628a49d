"""Comparisons, with fused closures for the shapes filters use most.

``value > 15`` is the hot path of every filter step: a generic closure would
cost five calls (field, constant, operator, two type checks) per event. Here a
top-level payload field against a number or string constant becomes one
closure doing the dict lookup, type check and comparison inline; any other
left side against such a constant costs one call plus the inline check.
Everything else uses the operator functions of `values`, which define the
semantics the specialised closures must match (a test compares them).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from operator import ge, gt, le, lt
from typing import Any

from agent.pipeline.expr.meta import EventMeta
from agent.pipeline.expr.nodes import FieldTest, Fn, Node, fold
from agent.pipeline.expr.paths import non_object_root
from agent.pipeline.expr.values import (
    contains,
    equal,
    greater,
    greater_equal,
    less,
    less_equal,
    not_contains,
    not_equal,
)

Operator = Callable[[Any, Any], bool]

OPERATORS: dict[type[ast.cmpop], Operator] = {
    ast.Eq: equal,
    ast.NotEq: not_equal,
    ast.Lt: less,
    ast.LtE: less_equal,
    ast.Gt: greater,
    ast.GtE: greater_equal,
    ast.In: contains,
    ast.NotIn: not_contains,
}

_MIRRORED: dict[Operator, Operator] = {
    less: greater,
    greater: less,
    less_equal: greater_equal,
    greater_equal: less_equal,
    equal: equal,
    not_equal: not_equal,
}
"""``15 < x`` is ``x > 15``; membership has no mirror."""


def compare(operators: Sequence[Operator], operands: Sequence[Node]) -> Node:
    """Compile ``a op b`` or a chain ``a op b op c`` (each operand evaluated once)."""
    if all(node.constant for node in operands):
        return fold(_chain(operators, operands))
    if len(operators) > 1:
        return Node(_chain(operators, operands), boolean=True)
    operator, left, right = operators[0], operands[0], operands[1]
    if left.constant and operator in _MIRRORED:
        operator, left, right = _MIRRORED[operator], right, left
    if right.constant:
        fn = _against_constant(operator, left, right.value)
        return Node(fn, boolean=True, field_test=_field_test(operator, left, right.value))
    return Node(_pair(operator, left.fn, right.fn), boolean=True)


def _chain(operators: Sequence[Operator], operands: Sequence[Node]) -> Fn:
    """The general form: evaluate left to right, stop at the first false link."""
    first = operands[0].fn
    links = tuple(zip(operators, (node.fn for node in operands[1:]), strict=True))

    def chain(payload: Any, meta: EventMeta) -> bool:
        left = first(payload, meta)
        for operator, right_fn in links:
            right = right_fn(payload, meta)
            if not operator(left, right):
                return False
            left = right
        return True

    return chain


def _pair(operator: Operator, left_fn: Fn, right_fn: Fn) -> Fn:
    """Two computed operands."""

    def pair(payload: Any, meta: EventMeta) -> bool:
        return operator(left_fn(payload, meta), right_fn(payload, meta))

    return pair


def _against_constant(operator: Operator, left: Node, value: Any) -> Fn:
    """Pick the tightest closure for ``left <op> constant``."""
    if operator in (contains, not_contains):
        member = _membership(left.fn, value)
        return member if operator is contains else _negated(member)
    if operator not in _FUSED or not _fusable(operator, value):
        return _with_constant(operator, left.fn, value)
    if left.path is not None and len(left.path) == 1 and type(left.path[0]) is str:
        return _FUSED[operator](left.path[0], non_object_root(left.path[0]), value)
    if operator in (equal, not_equal):
        return _typed_equality(left.fn, value, operator is equal)
    return _typed_ordering(left.fn, _NATIVE[operator], value)


def _field_test(operator: Operator, left: Node, value: Any) -> FieldTest | None:
    """Describe a fused comparison so batch evaluation can inline it (same semantics)."""
    fused = operator in _FUSED and _fusable(operator, value)
    if not fused or left.path is None or len(left.path) != 1 or type(left.path[0]) is not str:
        return None
    return (left.path[0], _FIELD_TEST_NAMES[operator], value)


def _fusable(operator: Operator, value: Any) -> bool:
    """Fused equality takes any scalar but a bool; fused orderings a number.

    Orderings compare a float field with ``float(value)``, which skips
    CPython's slower mixed int/float comparison; that is only exact when the
    constant converts to a float without rounding.
    """
    if operator in (equal, not_equal):
        return type(value) in (int, float, str)
    if type(value) is float:
        return True
    return type(value) is int and abs(value) <= _EXACT_FLOAT_INT


_EXACT_FLOAT_INT = 2**53
"""Integers up to this size convert to float exactly."""


def _typed_ordering(left_fn: Fn, native: Operator, value: int | float) -> Fn:
    """A computed left side (``env.temp``, ``abs(x)``) ordered against a number."""
    as_float = float(value)

    def typed(payload: Any, meta: EventMeta) -> bool:
        found = left_fn(payload, meta)
        kind = type(found)
        if kind is float:
            return native(found, as_float)
        return kind is int and native(found, value)

    return typed


def _typed_equality(left_fn: Fn, value: int | float | str, positive: bool) -> Fn:
    """A computed left side (``topic[1]``, ``lower(x)``) against a number or string."""
    if positive:

        def equals(payload: Any, meta: EventMeta) -> bool:
            found = left_fn(payload, meta)
            return type(found) is not bool and bool(found == value)

        return equals

    def differs(payload: Any, meta: EventMeta) -> bool:
        found = left_fn(payload, meta)
        return type(found) is bool or bool(found != value)

    return differs


def _with_constant(operator: Operator, left_fn: Fn, value: Any) -> Fn:
    """A computed left side against a constant: one call saved."""

    def against(payload: Any, meta: EventMeta) -> bool:
        return operator(left_fn(payload, meta), value)

    return against


def _negated(fn: Fn) -> Fn:
    """``not in`` as the negation of ``in``."""

    def negated(payload: Any, meta: EventMeta) -> bool:
        return not fn(payload, meta)

    return negated


def _membership(left_fn: Fn, container: Any) -> Fn:
    """``x in [..]`` against a constant list becomes a set lookup when it can."""
    if type(container) is str:

        def substring(payload: Any, meta: EventMeta) -> bool:
            item = left_fn(payload, meta)
            return type(item) is str and item in container

        return substring
    if type(container) is not list or not all(type(v) in _SCALARS for v in container):
        return _with_constant(contains, left_fn, container)
    booleans = tuple(v for v in container if type(v) is bool)
    others = frozenset(v for v in container if type(v) is not bool)

    def in_set(payload: Any, meta: EventMeta) -> bool:
        item = left_fn(payload, meta)
        if type(item) is bool:
            return item in booleans
        return type(item) in _SCALARS and item in others

    return in_set


_SCALARS = (type(None), bool, int, float, str)


def _fused_greater(name: str, other: Fn, value: Any) -> Fn:
    """``field > number``."""
    as_float = float(value)

    def fused(payload: Any, meta: EventMeta) -> Any:  # a bool; Any spares a bool() call
        found: Any = payload.get(name) if type(payload) is dict else other(payload, meta)
        kind = type(found)
        if kind is float:
            return found > as_float
        return kind is int and found > value

    return fused


def _fused_greater_equal(name: str, other: Fn, value: Any) -> Fn:
    """``field >= number``."""
    as_float = float(value)

    def fused(payload: Any, meta: EventMeta) -> Any:  # a bool; Any spares a bool() call
        found: Any = payload.get(name) if type(payload) is dict else other(payload, meta)
        kind = type(found)
        if kind is float:
            return found >= as_float
        return kind is int and found >= value

    return fused


def _fused_less(name: str, other: Fn, value: Any) -> Fn:
    """``field < number``."""
    as_float = float(value)

    def fused(payload: Any, meta: EventMeta) -> Any:  # a bool; Any spares a bool() call
        found: Any = payload.get(name) if type(payload) is dict else other(payload, meta)
        kind = type(found)
        if kind is float:
            return found < as_float
        return kind is int and found < value

    return fused


def _fused_less_equal(name: str, other: Fn, value: Any) -> Fn:
    """``field <= number``."""
    as_float = float(value)

    def fused(payload: Any, meta: EventMeta) -> Any:  # a bool; Any spares a bool() call
        found: Any = payload.get(name) if type(payload) is dict else other(payload, meta)
        kind = type(found)
        if kind is float:
            return found <= as_float
        return kind is int and found <= value

    return fused


def _fused_equal(name: str, other: Fn, value: Any) -> Fn:
    """``field == number-or-string``; a boolean field never equals a number."""

    def fused(payload: Any, meta: EventMeta) -> bool:
        found: Any = payload.get(name) if type(payload) is dict else other(payload, meta)
        return type(found) is not bool and found == value

    return fused


def _fused_not_equal(name: str, other: Fn, value: Any) -> Fn:
    """``field != number-or-string``."""

    def fused(payload: Any, meta: EventMeta) -> bool:
        found: Any = payload.get(name) if type(payload) is dict else other(payload, meta)
        return type(found) is bool or found != value

    return fused


_NATIVE: dict[Operator, Operator] = {
    greater: gt,
    greater_equal: ge,
    less: lt,
    less_equal: le,
}
"""The builtin comparisons the typed closures call once the types are known."""

_FIELD_TEST_NAMES: dict[Operator, str] = {
    greater: "gt",
    greater_equal: "ge",
    less: "lt",
    less_equal: "le",
    equal: "eq",
    not_equal: "ne",
}

_FUSED: dict[Operator, Callable[[str, Fn, Any], Fn]] = {
    greater: _fused_greater,
    greater_equal: _fused_greater_equal,
    less: _fused_less,
    less_equal: _fused_less_equal,
    equal: _fused_equal,
    not_equal: _fused_not_equal,
}

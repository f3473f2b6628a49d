"""The public entry points: compile text once, evaluate the result per event."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.pipeline.expr.compiler import Clock, Compiler
from agent.pipeline.expr.meta import EventMeta
from agent.pipeline.expr.nodes import FieldTest, Fn, Node, PathKey
from agent.pipeline.expr.source import parse
from agent.pipeline.expr.values import truthy


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression.

    ``fn`` is the bare closure for hot loops (``fn = expr.fn`` once, then
    ``fn(payload, meta)`` per event); ``evaluate`` is the readable spelling.
    """

    text: str
    fn: Fn
    reads_meta: bool = True
    """False when only the payload is read: batch evaluation then builds no EventMeta."""
    path: tuple[PathKey, ...] | None = None
    """Set when the expression is a plain field path: batch evaluation inlines the lookup."""
    field_test: FieldTest | None = None
    """Set for ``field <op> constant``: batch evaluation inlines the comparison."""

    def evaluate(self, payload: Any, meta: EventMeta) -> Any:
        """The expression's value for one event; never raises."""
        return self.fn(payload, meta)


def compile_node(text: str, clock: Clock) -> tuple[Node, bool]:
    """Parse and compile ``text`` into a node and whether it reads metadata; raises ExprError."""
    source = parse(text)
    compiler = Compiler(source, clock)
    node = compiler.compile(source.tree)
    return node, compiler.reads_meta


def compile_expression(text: str, *, clock: Clock = time.time) -> Expression:
    """Compile ``text`` into an Expression; raises ExprError with the column.

    ``clock`` is what ``now()`` reads, injectable so tests need no sleeping.
    """
    node, reads_meta = compile_node(text, clock)
    return Expression(text, node.fn, reads_meta, node.path, node.field_test)


def compile_predicate(text: str, *, clock: Clock = time.time) -> Expression:
    """Compile ``text`` as a filter condition: the result is always a bool (null is false).

    Comparisons and boolean operators already yield bools, so they are used
    as they are; only other expressions pay for a coercion wrapper.
    """
    node, reads_meta = compile_node(text, clock)
    if node.boolean:
        return Expression(text, node.fn, reads_meta, node.path, node.field_test)
    if node.constant:
        verdict = truthy(node.value)
        return Expression(text, lambda payload, meta: verdict, reads_meta=False)
    inner = node.fn

    def predicate(payload: Any, meta: EventMeta) -> bool:
        found = inner(payload, meta)
        return found is not None and bool(found)

    return Expression(text, predicate, reads_meta)

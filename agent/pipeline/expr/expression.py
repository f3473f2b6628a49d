"""The public entry points: compile text once, evaluate the result per event."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.pipeline.expr.compiler import Clock, Compiler
from agent.pipeline.expr.meta import EventMeta
from agent.pipeline.expr.nodes import Fn, Node
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

    def evaluate(self, payload: Any, meta: EventMeta) -> Any:
        """The expression's value for one event; never raises."""
        return self.fn(payload, meta)


def compile_node(text: str, clock: Clock) -> Node:
    """Parse and compile ``text`` into a node; raises ExprError."""
    source = parse(text)
    return Compiler(source, clock).compile(source.tree)


def compile_expression(text: str, *, clock: Clock = time.time) -> Expression:
    """Compile ``text`` into an Expression; raises ExprError with the column.

    ``clock`` is what ``now()`` reads, injectable so tests need no sleeping.
    """
    return Expression(text, compile_node(text, clock).fn)


def compile_predicate(text: str, *, clock: Clock = time.time) -> Expression:
    """Compile ``text`` as a filter condition: the result is always a bool (null is false).

    Comparisons and boolean operators already yield bools, so they are used
    as they are; only other expressions pay for a coercion wrapper.
    """
    node = compile_node(text, clock)
    if node.boolean:
        return Expression(text, node.fn)
    if node.constant:
        verdict = truthy(node.value)
        return Expression(text, lambda payload, meta: verdict)
    inner = node.fn

    def predicate(payload: Any, meta: EventMeta) -> bool:
        found = inner(payload, meta)
        return found is not None and bool(found)

    return Expression(text, predicate)

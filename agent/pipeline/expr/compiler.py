"""Walk a whitelisted Python AST and build nested closures from it.

Only the node types listed in `_Compiler.handlers` are accepted; anything
else (lambda, comprehensions, attribute calls, f-strings, ...) is refused with
an ExprError at its column. No text is ever handed to ``eval``/``exec`` and no
Python source is generated: each node becomes a closure over its children's
closures, and a node whose inputs are all constants is evaluated once here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

from agent.pipeline.expr import values
from agent.pipeline.expr.compare import OPERATORS, compare
from agent.pipeline.expr.errors import ExprError
from agent.pipeline.expr.functions import FUNCTIONS
from agent.pipeline.expr.meta import EventMeta
from agent.pipeline.expr.nodes import Fn, Node, constant, fold
from agent.pipeline.expr.paths import META_NAMES, dynamic_topic_segment, path_getter, topic_segment
from agent.pipeline.expr.source import MAX_DEPTH, TOO_DEEP, Source

Clock = Callable[[], float]

CONSTANT_NAMES: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}

BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: values.add,
    ast.Sub: values.subtract,
    ast.Mult: values.multiply,
    ast.Div: values.divide,
    ast.FloorDiv: values.floor_divide,
    ast.Mod: values.modulo,
    ast.Pow: values.power,
}

UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: values.negate,
    ast.UAdd: values.plus,
    ast.Not: values.logical_not,
}

REFUSED: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.NamedExpr: "assignment (:=) is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.Dict: "object literals are not allowed",
    ast.Set: "set literals are not allowed",
    ast.Slice: "slices are not allowed",
    ast.Await: "await is not allowed",
}

_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
}


class Compiler:
    """One compilation: the parsed source, the clock for ``now()``, and the walker."""

    def __init__(self, source: Source, clock: Clock) -> None:
        self.source = source
        self.clock = clock
        self.reads_meta = False
        """Whether the expression reads topic, key or times (batch evaluation skips metas)."""
        self.handlers: dict[type[ast.AST], Callable[[Any, int], Node]] = {
            ast.Constant: self.literal,
            ast.Name: self.name,
            ast.Attribute: self.attribute,
            ast.Subscript: self.subscript,
            ast.List: self.sequence,
            ast.Tuple: self.sequence,
            ast.Compare: self.comparison,
            ast.BoolOp: self.boolean,
            ast.UnaryOp: self.unary,
            ast.BinOp: self.binary,
            ast.IfExp: self.conditional,
            ast.Call: self.call,
        }

    def error(self, message: str, node: ast.AST) -> ExprError:
        """An ExprError at ``node``'s column."""
        return self.source.error(message, node)

    def compile(self, node: ast.AST, depth: int = 1) -> Node:
        """Compile one AST node; ``depth`` bounds run-time recursion of the closures."""
        if depth > MAX_DEPTH:
            raise self.error(TOO_DEEP, node)
        handler = self.handlers.get(type(node))
        if handler is None:
            raise self.error(self.refusal(node), node)
        return handler(node, depth + 1)

    def refusal(self, node: ast.AST) -> str:
        """Why ``node`` is not part of the language."""
        if type(node) in REFUSED:
            return REFUSED[type(node)]
        return f"{type(node).__name__.lower()} is not allowed"

    def literal(self, node: ast.Constant, depth: int) -> Node:
        """Numbers, strings, booleans and null; bytes, complex and ``...`` are refused."""
        if type(node.value) in (bool, int, float, str, type(None)):
            return constant(node.value)
        refusals = {bytes: "bytes literals are", complex: "complex numbers are"}
        what = refusals.get(type(node.value), f"{node.value!r} is")
        raise self.error(f"{what} not allowed", node)

    def check_identifier(self, identifier: str, node: ast.AST, column: int | None = None) -> None:
        """Refuse dunder-style names anywhere, the classic sandbox escape route."""
        if identifier.startswith("__"):
            where = column if column is not None else self.source.node_column(node)
            message = f"name {identifier!r} is not allowed (names starting with '__' are reserved)"
            raise ExprError(message, where, self.source.text)

    def name(self, node: ast.Name, depth: int) -> Node:
        """A reserved name, a constant name, or the root of a payload field path."""
        self.check_identifier(node.id, node)
        if node.id in CONSTANT_NAMES:
            return constant(CONSTANT_NAMES[node.id])
        if node.id in META_NAMES:
            self.reads_meta = True
            return Node(META_NAMES[node.id])
        path = () if node.id == "payload" else (node.id,)
        return Node(path_getter(path), path=path)

    def attribute(self, node: ast.Attribute, depth: int) -> Node:
        """``a.b`` reads key ``b``; on a field path it extends the path."""
        base = self.compile(node.value, depth)
        self.check_identifier(node.attr, node, self.source.end_column(node) - len(node.attr))
        return self.lookup(base, node.attr)

    def subscript(self, node: ast.Subscript, depth: int) -> Node:
        """``a[i]``: topic segment, object key or array index."""
        if isinstance(node.slice, ast.Tuple):
            raise self.error("only one index is allowed", node.slice)
        if isinstance(node.value, ast.Name) and node.value.id == "topic":
            return self.topic_index(node.slice, depth)
        base = self.compile(node.value, depth)
        index = self.compile(node.slice, depth)
        if index.constant and type(index.value) in (str, int):
            return self.lookup(base, index.value)
        return self.dynamic_lookup(base, index)

    def lookup(self, base: Node, key: str | int) -> Node:
        """A constant key: part of a field path when the base is one."""
        if base.path is not None:
            path = (*base.path, key)
            return Node(path_getter(path), path=path)
        if base.constant:
            return constant(values.get_item(base.value, key))
        base_fn = base.fn

        def item(payload: Any, meta: EventMeta) -> Any:
            return values.get_item(base_fn(payload, meta), key)

        return Node(item)

    def dynamic_lookup(self, base: Node, index: Node) -> Node:
        """A key computed per event, such as ``limits[site]``."""
        base_fn, index_fn = base.fn, index.fn

        def item(payload: Any, meta: EventMeta) -> Any:
            return values.get_item(base_fn(payload, meta), index_fn(payload, meta))

        return Node(item)

    def topic_index(self, index_node: ast.expr, depth: int) -> Node:
        """``topic[1]``: a constant index is resolved without an extra call."""
        self.reads_meta = True
        index = self.compile(index_node, depth)
        if not index.constant:
            return Node(dynamic_topic_segment(index.fn))
        if type(index.value) is not int:
            raise self.error("topic segments are numbered: use topic[0], topic[-1]", index_node)
        return Node(topic_segment(index.value))

    def sequence(self, node: ast.List | ast.Tuple, depth: int) -> Node:
        """A list literal (tuples too, since JSON has only lists), mainly for ``in``."""
        items = [self.compile(element, depth) for element in node.elts]
        if all(item.constant for item in items):
            return constant([item.value for item in items])
        fns = tuple(item.fn for item in items)

        def build(payload: Any, meta: EventMeta) -> Any:
            return [fn(payload, meta) for fn in fns]

        return Node(build)

    def comparison(self, node: ast.Compare, depth: int) -> Node:
        """Comparison chains; ``is``/``is not`` only against null."""
        operands = [node.left, *node.comparators]
        operators = []
        for index, op in enumerate(node.ops):
            operators.append(self.comparison_operator(op, operands[index], operands[index + 1]))
        return compare(operators, [self.compile(operand, depth) for operand in operands])

    def comparison_operator(
        self, op: ast.cmpop, left: ast.expr, right: ast.expr
    ) -> Callable[[Any, Any], bool]:
        """Map an AST operator; ``x is null`` means ``x == null``."""
        if isinstance(op, ast.Is | ast.IsNot):
            if not any(_is_null(side) for side in (left, right)):
                raise self.error("'is' can only compare with null; use ==", right)
            return values.equal if isinstance(op, ast.Is) else values.not_equal
        return OPERATORS[type(op)]

    def boolean(self, node: ast.BoolOp, depth: int) -> Node:
        """``and``/``or``: short-circuit, always a bool."""
        items = [self.compile(value, depth) for value in node.values]
        fn = _all_of(items) if isinstance(node.op, ast.And) else _any_of(items)
        return fold(fn) if all(item.constant for item in items) else Node(fn, boolean=True)

    def unary(self, node: ast.UnaryOp, depth: int) -> Node:
        """``-x``, ``+x``, ``not x``."""
        if type(node.op) not in UNARY:
            raise self.error(f"operator '{_OPERATOR_SYMBOLS[type(node.op)]}' is not allowed", node)
        operation = UNARY[type(node.op)]
        operand = self.compile(node.operand, depth)
        operand_fn = operand.fn

        def unary(payload: Any, meta: EventMeta) -> Any:
            return operation(operand_fn(payload, meta))

        if operand.constant:
            return fold(unary)
        return Node(unary, boolean=isinstance(node.op, ast.Not))

    def binary(self, node: ast.BinOp, depth: int) -> Node:
        """Arithmetic and string concatenation, null-propagating."""
        if type(node.op) not in BINARY:
            symbol = _OPERATOR_SYMBOLS[type(node.op)]
            raise self.error(f"operator '{symbol}' is not allowed", node)
        operation = BINARY[type(node.op)]
        left, right = self.compile(node.left, depth), self.compile(node.right, depth)
        left_fn, right_fn = left.fn, right.fn

        def binary(payload: Any, meta: EventMeta) -> Any:
            return operation(left_fn(payload, meta), right_fn(payload, meta))

        return fold(binary) if left.constant and right.constant else Node(binary)

    def conditional(self, node: ast.IfExp, depth: int) -> Node:
        """``a if condition else b``; only the chosen branch is evaluated."""
        test = self.compile(node.test, depth)
        body, orelse = self.compile(node.body, depth), self.compile(node.orelse, depth)
        if test.constant:
            return body if values.truthy(test.value) else orelse
        test_fn, body_fn, orelse_fn = test.fn, body.fn, orelse.fn

        def choose(payload: Any, meta: EventMeta) -> Any:
            if values.truthy(test_fn(payload, meta)):
                return body_fn(payload, meta)
            return orelse_fn(payload, meta)

        return Node(choose, boolean=body.boolean and orelse.boolean)

    def call(self, node: ast.Call, depth: int) -> Node:
        """A built-in function call, checked for name and arity here, not at run time."""
        name = self.function_name(node)
        spec = FUNCTIONS[name]
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            raise self.error(f"{name}() takes {spec.arity_text()}, got {count}", node)
        if name == "matches":
            return self.matches(node, depth)
        args = [self.compile(arg, depth) for arg in node.args]
        if name == "now":
            clock = self.clock
            return Node(lambda payload, meta: clock())
        if name == "coalesce":
            return _coalesce(args)
        assert spec.impl is not None
        fn = _apply(spec.impl, tuple(arg.fn for arg in args))
        if all(arg.constant for arg in args):
            return fold(fn)
        return Node(fn, boolean=spec.boolean)

    def function_name(self, node: ast.Call) -> str:
        """The called name, refusing methods, keywords, ``*args`` and unknown names."""
        for keyword in node.keywords:
            raise self.error("keyword arguments are not allowed", keyword)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error(REFUSED[ast.Starred], arg)
        if isinstance(node.func, ast.Attribute):
            raise self.error("method calls are not allowed; call a function, e.g. lower(x)", node)
        if not isinstance(node.func, ast.Name):
            raise self.error("only built-in functions can be called", node)
        self.check_identifier(node.func.id, node.func)
        if node.func.id not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {node.func.id!r} (known: {known})", node.func)
        return node.func.id

    def matches(self, node: ast.Call, depth: int) -> Node:
        """``matches(s, "regex")``: the pattern must be a literal, compiled once here."""
        pattern_node = node.args[1]
        if not (isinstance(pattern_node, ast.Constant) and type(pattern_node.value) is str):
            raise self.error("matches() needs a literal string pattern", pattern_node)
        try:
            regex = re.compile(pattern_node.value)
        except re.error as exc:
            raise self.error(f"invalid regular expression: {exc.msg}", pattern_node) from None
        subject = self.compile(node.args[0], depth)
        subject_fn, search = subject.fn, regex.search

        def matches(payload: Any, meta: EventMeta) -> bool:
            text = subject_fn(payload, meta)
            return type(text) is str and search(text) is not None

        return fold(matches) if subject.constant else Node(matches, boolean=True)


def _is_null(node: ast.expr) -> bool:
    """True for the literal null, whichever spelling."""
    if isinstance(node, ast.Constant):
        return node.value is None
    return isinstance(node, ast.Name) and node.id in ("null", "None")


def _all_of(items: list[Node]) -> Fn:
    """``and`` over any number of operands, with a two-operand fast path."""
    if len(items) == 2 and items[0].boolean and items[1].boolean:
        first, second = items[0].fn, items[1].fn
        return lambda payload, meta: first(payload, meta) and second(payload, meta)
    fns = tuple(item.fn for item in items)
    truthy = values.truthy
    return lambda payload, meta: all(truthy(fn(payload, meta)) for fn in fns)


def _any_of(items: list[Node]) -> Fn:
    """``or`` over any number of operands, with a two-operand fast path."""
    if len(items) == 2 and items[0].boolean and items[1].boolean:
        first, second = items[0].fn, items[1].fn
        return lambda payload, meta: first(payload, meta) or second(payload, meta)
    fns = tuple(item.fn for item in items)
    truthy = values.truthy
    return lambda payload, meta: any(truthy(fn(payload, meta)) for fn in fns)


def _apply(impl: Callable[..., Any], fns: tuple[Fn, ...]) -> Fn:
    """Call ``impl`` on evaluated arguments; one and two arguments skip the tuple."""
    if len(fns) == 1:
        (only,) = fns
        return lambda payload, meta: impl(only(payload, meta))
    if len(fns) == 2:
        first, second = fns
        return lambda payload, meta: impl(first(payload, meta), second(payload, meta))
    return lambda payload, meta: impl(*[fn(payload, meta) for fn in fns])


def _coalesce(args: list[Node]) -> Node:
    """The first non-null argument, evaluating no further than needed."""
    fns = tuple(arg.fn for arg in args)

    def first_present(payload: Any, meta: EventMeta) -> Any:
        for fn in fns:
            found = fn(payload, meta)
            if found is not None:
                return found
        return None

    return fold(first_present) if all(arg.constant for arg in args) else Node(first_present)

"""Property tests: compiled expressions never raise, and agree with a reference interpreter.

Expressions are generated as small trees, rendered to fully parenthesised
text, compiled by the real compiler, and (for the arithmetic, comparison and
boolean subset) evaluated again by `reference`, a deliberately naive
interpreter written from the documented rules rather than from the compiler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.expr import EventMeta, ExprError, compile_expression, compile_predicate

Tree = tuple[Any, ...]

FIELDS = ["a", "b", "c", "s", "value"]
NUMBERS = st.integers(-(10**6), 10**6) | st.sampled_from([2**70, -(2**70), 2**53 + 1])
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
STRINGS = st.text(alphabet="abAB0 /", max_size=4)
EDGES = st.sampled_from([None, True, False, 0, 1, -1, 2, 0.0, -1.5, "", "a", "ab"])
"""Values where the rules have edges (bool vs 1, zero divisors, equal operands)."""
WIDE = st.none() | st.booleans() | NUMBERS | FLOATS | STRINGS
SCALARS = st.integers(0, 3).flatmap(lambda pick: WIDE if pick == 0 else EDGES)
"""Mostly edge values, so that coincidences such as ``x == 1`` with ``x = true`` happen."""
NESTED = st.dictionaries(st.sampled_from(["x", "y"]), SCALARS, max_size=2)
OBJECTS = st.fixed_dictionaries(
    {"a": SCALARS, "b": SCALARS},
    optional={
        "c": SCALARS,
        "s": SCALARS,
        "value": SCALARS,
        "n": NESTED | SCALARS,
        "l": st.lists(SCALARS, max_size=3),
    },
)
PAYLOADS = OBJECTS | SCALARS | st.lists(SCALARS, max_size=3) | st.binary(max_size=4)
TOPICS = st.lists(st.text(alphabet="ab+#", min_size=0, max_size=3), min_size=1, max_size=4)
METAS = st.builds(
    EventMeta,
    TOPICS.map("/".join),
    st.none() | STRINGS,
    FLOATS,
    FLOATS,
)

ARITHMETIC = ["+", "-", "*", "/", "//", "%", "**"]
COMPARISONS = ["==", "!=", "<", "<=", ">", ">="]


# --- the reference interpreter ----------------------------------------------------------


def is_num(value: Any) -> bool:
    """Numbers are ints and floats; JSON booleans are not numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def truth(value: Any) -> bool:
    """Null is false, everything else is Python truthiness."""
    return False if value is None else bool(value)


def ref_compare(op: str, left: Any, right: Any) -> bool:
    """Equality is total but keeps bools apart; ordering needs two numbers or two strings."""
    if op in ("==", "!="):
        if isinstance(left, bool) or isinstance(right, bool):
            same = isinstance(left, bool) and isinstance(right, bool) and left == right
        else:
            same = left == right
        return same if op == "==" else not same
    if not (is_num(left) and is_num(right)) and not (
        isinstance(left, str) and isinstance(right, str)
    ):
        return False
    return bool(
        {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    )


ARITH_FUNCTIONS = {
    "+": lambda left, right: left + right,
    "-": lambda left, right: left - right,
    "*": lambda left, right: left * right,
    "/": lambda left, right: left / right,
    "//": lambda left, right: left // right,
    "%": lambda left, right: left % right,
    "**": lambda left, right: left**right,
}


def ref_arith(op: str, left: Any, right: Any) -> Any:
    """Numbers only (plus string joining); every failure is null."""
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if not (is_num(left) and is_num(right)) or not ref_arith_allowed(op, left, right):
        return None
    try:
        result = ARITH_FUNCTIONS[op](left, right)
    except OverflowError:
        return None
    return None if isinstance(result, complex) else result


def ref_arith_allowed(op: str, left: Any, right: Any) -> bool:
    """No division by zero, no exponent above 1000, no integer power above 100000 bits."""
    if op in ("/", "//", "%"):
        return bool(right != 0)
    if op != "**":
        return True
    if right > 1000 or (left == 0 and right < 0):
        return False
    both_int = isinstance(left, int) and isinstance(right, int)
    return not (both_int and right > 0 and abs(left).bit_length() * right > 100_000)


def ref_field(path: tuple[str, ...], payload: Any) -> Any:
    """Walk dicts; a non-object payload is ``value`` itself."""
    current = payload
    for position, name in enumerate(path):
        if isinstance(current, dict):
            current = current.get(name)
        elif position == 0 and name == "value":
            current = payload
        else:
            return None
    return current


def reference(tree: Tree, payload: Any) -> Any:
    """Evaluate a generated tree by the documented rules."""
    return REFERENCE[tree[0]](tree, payload)


def ref_chain(tree: Tree, payload: Any) -> bool:
    """``a < b <= c``: every link holds, each operand evaluated once."""
    values = [reference(operand, payload) for operand in tree[2]]
    links = zip(tree[1], values, values[1:], strict=False)
    return all(ref_compare(op, left, right) for op, left, right in links)


def ref_neg(tree: Tree, payload: Any) -> Any:
    """Unary minus on numbers only."""
    operand = reference(tree[1], payload)
    return -operand if is_num(operand) else None


def ref_if(tree: Tree, payload: Any) -> Any:
    """Only the chosen branch matters."""
    chosen = tree[2] if truth(reference(tree[1], payload)) else tree[3]
    return reference(chosen, payload)


REFERENCE = {
    "lit": lambda tree, payload: tree[1],
    "field": lambda tree, payload: ref_field(tree[1], payload),
    "neg": ref_neg,
    "not": lambda tree, payload: not truth(reference(tree[1], payload)),
    "arith": lambda tree, payload: ref_arith(
        tree[1], reference(tree[2], payload), reference(tree[3], payload)
    ),
    "and": lambda tree, payload: all(truth(reference(item, payload)) for item in tree[1]),
    "or": lambda tree, payload: any(truth(reference(item, payload)) for item in tree[1]),
    "if": ref_if,
    "chain": ref_chain,
}


# --- generating trees and their text ----------------------------------------------------


def literal_text(value: Any, spelling: int) -> str:
    """Render a literal, varying the spelling of booleans and null."""
    if value is None:
        return ["null", "None"][spelling % 2]
    if isinstance(value, bool):
        return ["true", "True"][spelling % 2] if value else ["false", "False"][spelling % 2]
    if isinstance(value, float) and (value < 0 or math.copysign(1.0, value) < 0):
        return f"({value!r})"
    if isinstance(value, int) and value < 0:
        return f"({value})"
    return repr(value)


def field_text(path: tuple[str, ...], spelling: int) -> str:
    """``a``, ``payload.a`` or ``payload["a"]`` for the same field."""
    if spelling % 3 == 1:
        return "payload." + ".".join(path)
    if spelling % 3 == 2:
        return "payload" + "".join(f'["{name}"]' for name in path)
    return ".".join(path)


def render(tree: Tree) -> str:
    """Fully parenthesised text of a tree."""
    return RENDER[tree[0]](tree)


def render_chain(tree: Tree) -> str:
    """``(a < b <= c)``."""
    parts = [render(tree[2][0])]
    for op, operand in zip(tree[1], tree[2][1:], strict=True):
        parts += [op, render(operand)]
    return "(" + " ".join(parts) + ")"


RENDER = {
    "lit": lambda tree: literal_text(tree[1], tree[2]),
    "field": lambda tree: field_text(tree[1], tree[2]),
    "neg": lambda tree: f"(-{render(tree[1])})",
    "not": lambda tree: f"(not {render(tree[1])})",
    "arith": lambda tree: f"({render(tree[2])} {tree[1]} {render(tree[3])})",
    "and": lambda tree: "(" + " and ".join(render(item) for item in tree[1]) + ")",
    "or": lambda tree: "(" + " or ".join(render(item) for item in tree[1]) + ")",
    "if": lambda tree: f"({render(tree[2])} if {render(tree[1])} else {render(tree[3])})",
    "chain": render_chain,
}


LITERALS = st.tuples(st.just("lit"), SCALARS, st.integers(0, 1))
FIELD_REFS = st.tuples(
    st.just("field"),
    st.sampled_from([(name,) for name in FIELDS] + [("n", "x"), ("n", "y"), ("missing",)]),
    st.integers(0, 2),
)


@st.composite
def subset_trees(draw: st.DrawFn, depth: int = 3) -> Tree:
    """Trees of the arithmetic/comparison/boolean subset, at most ``depth`` deep."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(LITERALS | FIELD_REFS)
    child = subset_trees(depth - 1)
    kind = draw(st.sampled_from(["neg", "not", "arith", "and", "or", "if", "chain"]))
    if kind in ("neg", "not"):
        return (kind, draw(child))
    if kind == "arith":
        return ("arith", draw(st.sampled_from(ARITHMETIC)), draw(child), draw(child))
    if kind in ("and", "or"):
        return (kind, [draw(child) for _ in range(draw(st.integers(2, 3)))])
    if kind == "if":
        return ("if", draw(child), draw(child), draw(child))
    operators = draw(st.lists(st.sampled_from(COMPARISONS), min_size=1, max_size=3))
    return ("chain", operators, [draw(child) for _ in range(len(operators) + 1)])


def same(actual: Any, expected: Any) -> bool:
    """Equal values of the same type, with NaN equal to NaN."""
    if type(actual) is not type(expected):
        return False
    if isinstance(actual, float) and math.isnan(actual):
        return math.isnan(expected)
    return bool(actual == expected)


def assert_agrees(tree: Tree, payloads: list[Any]) -> None:
    """The compiled text of ``tree`` and the reference give the same value on each payload."""
    text = render(tree)
    expression = compile_expression(text)
    meta = EventMeta("t", None, 0.0, 0.0)
    for payload in payloads:
        actual = expression.evaluate(payload, meta)
        expected = reference(tree, payload)
        assert same(actual, expected), (text, payload, actual, expected)


@settings(max_examples=600, deadline=None)
@given(subset_trees(), st.lists(PAYLOADS, min_size=1, max_size=3))
def test_compiled_subset_agrees_with_the_reference(tree: Tree, payloads: list[Any]) -> None:
    assert_agrees(tree, payloads)


@st.composite
def single_operations(draw: st.DrawFn) -> Tree:
    """One operator over two leaves: dense coverage of each operator's edge cases."""
    left, right = draw(LITERALS | FIELD_REFS), draw(LITERALS | FIELD_REFS)
    kind = draw(st.sampled_from(["arith", "chain", "and", "or", "neg", "not"]))
    if kind == "arith":
        return ("arith", draw(st.sampled_from(ARITHMETIC)), left, right)
    if kind == "chain":
        return ("chain", [draw(st.sampled_from(COMPARISONS))], [left, right])
    if kind in ("and", "or"):
        return (kind, [left, right])
    return (kind, left)


@settings(max_examples=2000, deadline=None)
@given(single_operations(), st.lists(PAYLOADS, min_size=1, max_size=3))
def test_single_operations_agree_with_the_reference(tree: Tree, payloads: list[Any]) -> None:
    assert_agrees(tree, payloads)


# --- the whole language never raises at run time ----------------------------------------

FUNCTION_ARITIES = {
    "abs": [1],
    "round": [1, 2],
    "min": [1, 2, 3],
    "max": [1, 2, 3],
    "clamp": [3],
    "now": [0],
    "lower": [1],
    "upper": [1],
    "startswith": [2],
    "to_number": [1],
    "len": [1],
    "coalesce": [1, 2, 3],
}
PATTERNS = ["'^a'", "'b+$'", "'[0-9]'", "''", "'(a|b)*c'"]
ATOMS = st.sampled_from(
    [
        "key",
        "event_time",
        "ingest_time",
        "payload",
        "value",
        "n",
        "n.x",
        "a",
        "s",
        "missing.deep",
        "[]",
        "[1, 'a', null]",
        "1e308",
        "2 ** 1000",
        "(-1)",
        "0",
        "0.0",
        "''",
    ]
)


@st.composite
def any_text(draw: st.DrawFn, depth: int = 4) -> str:
    """Text from the whole grammar: functions, subscripts, membership, metadata."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(ATOMS | st.builds(render, LITERALS | FIELD_REFS))
    kind = draw(st.sampled_from(sorted(COMPOUNDS)))
    return COMPOUNDS[kind](draw, any_text(depth - 1))


def call_text(draw: st.DrawFn, child: st.SearchStrategy[str]) -> str:
    """A function call with a valid number of arguments."""
    name = draw(st.sampled_from(sorted(FUNCTION_ARITIES)))
    arity = draw(st.sampled_from(FUNCTION_ARITIES[name]))
    return f"{name}({', '.join(draw(child) for _ in range(arity))})"


def topic_text(draw: st.DrawFn, child: st.SearchStrategy[str]) -> str:
    """The topic or a segment; a constant non-integer index is a compile error, so none is made."""
    pick = draw(st.integers(0, 2))
    if pick == 0:
        return "(topic + '')"
    if pick == 1:
        return f"topic[{draw(st.integers(-5, 5))}]"
    return f"topic[coalesce(a, {draw(child)})]"


OPERATORS = [*ARITHMETIC, *COMPARISONS, "and", "or"]
COMPOUNDS: dict[str, Callable[[st.DrawFn, st.SearchStrategy[str]], str]] = {
    "call": call_text,
    "index": lambda draw, child: f"({draw(child)})[{draw(child)}]",
    "topic": topic_text,
    "in": lambda draw, child: (
        f"({draw(child)} {draw(st.sampled_from(['in', 'not in']))} {draw(child)})"
    ),
    "matches": lambda draw, child: f"matches({draw(child)}, {draw(st.sampled_from(PATTERNS))})",
    "list": lambda draw, child: "[" + ", ".join(draw(st.lists(child, max_size=3))) + "]",
    "op": lambda draw, child: f"({draw(child)} {draw(st.sampled_from(OPERATORS))} {draw(child)})",
}


@settings(max_examples=600, deadline=None)
@given(any_text() | subset_trees().map(render), st.lists(PAYLOADS, max_size=3), METAS)
def test_compiled_expressions_never_raise(text: str, payloads: list[Any], meta: EventMeta) -> None:
    expression = compile_expression(text, clock=lambda: 1.5)
    predicate = compile_predicate(text, clock=lambda: 1.5)
    for payload in payloads:
        expression.evaluate(payload, meta)
        assert type(predicate.evaluate(payload, meta)) is bool


TOKENS = st.sampled_from(
    [
        "a", "b", "value", "payload", "topic", "key", "n", "x", "1", "0", "2.5", "'s'", '"t"',
        ".", ",", "(", ")", "[", "]", "{", "}", ":", "+", "-", "*", "/", "//", "%", "**",
        "<", ">", "==", "!=", "<=", ">=", "=", " and ", " or ", " not ", " in ", " is ",
        " if ", " else ", "abs", "round", "min", "max", "clamp", "now", "lower", "upper",
        "startswith", "matches", "to_number", "len", "coalesce", "lambda", "__class__",
        " for ", "~", "&", "|", "@", ":=", "*", "null", "true", "None", "f'", "é", "\n",
        " ", "#", "\\", "1j", "...", "b'x'",
    ]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(TOKENS, max_size=16).map("".join), st.lists(PAYLOADS, max_size=3), METAS)
def test_arbitrary_text_compiles_or_raises_expr_error(
    text: str, payloads: list[Any], meta: EventMeta
) -> None:
    try:
        expression = compile_expression(text)
    except ExprError as error:
        assert 1 <= error.column <= max(len(text), 1) + 1, (text, error.column)
        assert error.text == text
        return
    for payload in payloads:
        expression.evaluate(payload, meta)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_unicode_text_compiles_or_raises_expr_error(text: str) -> None:
    try:
        compile_expression(text)
    except ExprError as error:
        assert 1 <= error.column <= max(len(text), 1) + 1, (text, error.column)

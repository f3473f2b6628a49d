"""The expression language: names, operators, functions, null rules and compile errors."""

from __future__ import annotations

import dataclasses
import math
import pickle
from typing import Any

import pytest

from agent.pipeline.expr import (
    AGGREGATE_FUNCTIONS,
    FUNCTIONS,
    EventMeta,
    ExprError,
    compile_expression,
    compile_predicate,
    parse_aggregate,
)
from agent.pipeline.expr import values as ops

META = EventMeta("site/greenhouse/temp", "dev-7", 1_700_000_000.5, 1_700_000_001.25)

PAYLOAD: dict[str, Any] = {
    "value": 21.5,
    "count": 3,
    "name": "Sensor-A",
    "ok": True,
    "none": None,
    "env": {"temp": 19.0, "deep": {"x": 1}},
    "readings": [1, 2, 3],
    "tags": {"site": "north", "key": "tagged"},
    "topic": "payload-topic",
    "key": "payload-key",
    "limits": {"north": 20},
    "zone": "north",
}


def run(text: str, payload: Any = None, meta: EventMeta = META) -> Any:
    """Compile and evaluate against the shared payload unless one is given."""
    return compile_expression(text).evaluate(PAYLOAD if payload is None else payload, meta)


def error_of(text: str) -> ExprError:
    """The ExprError that compiling ``text`` raises."""
    with pytest.raises(ExprError) as caught:
        compile_expression(text)
    return caught.value


# --- names and paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("value", 21.5),
        ("env.temp", 19.0),
        ("payload.env.temp", 19.0),
        ("env.deep.x", 1),
        ("payload.value", 21.5),
        ("readings[0]", 1),
        ("readings[-1]", 3),
        ("readings[3]", None),
        ("readings[-4]", None),
        ('tags["site"]', "north"),
        ('payload["tags"]["site"]', "north"),
        ("tags.site", "north"),
        ("missing", None),
        ("missing.deeper.still", None),
        ("value.x", None),
        ("readings.x", None),
        ("env[0]", None),
        ("name[0]", None),
        ("limits[zone]", 20),
        ("limits[readings]", None),
        ("readings[count - 1]", 3),
        ("readings[ok]", None),
        ("payload.topic", "payload-topic"),
        ('payload["key"]', "payload-key"),
        ("(env).temp", 19.0),
        ("coalesce(env, 1).temp", 19.0),
        ("[1, 2][1]", 2),
        ("[value, 2][0]", 21.5),
    ],
)
def test_payload_field_paths(text: str, expected: Any) -> None:
    assert run(text) == expected


def test_payload_alone_is_the_whole_payload() -> None:
    assert run("payload") is PAYLOAD


@pytest.mark.parametrize("payload", [42, 4.5, "raw text", [1, 2]])
def test_value_and_payload_are_a_bare_payload(payload: Any) -> None:
    assert run("value", payload) == payload
    assert run("payload", payload) == payload
    assert run("payload.value", payload) == payload


def test_other_fields_of_a_bare_payload_are_null() -> None:
    assert run("temp", 42) is None
    assert run("value.temp", 42) is None
    assert run("payload[0]", [7, 8]) == 7
    assert run("value > 15", 42) is True
    assert run("value + 1", 42) == 43


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("topic", "site/greenhouse/temp"),
        ("topic[0]", "site"),
        ("topic[1]", "greenhouse"),
        ("topic[-1]", "temp"),
        ("topic[-3]", "site"),
        ("topic[3]", None),
        ("topic[-4]", None),
        ("topic[count - 2]", "greenhouse"),
        ("topic[name]", None),
        ("key", "dev-7"),
        ("event_time", 1_700_000_000.5),
        ("ingest_time", 1_700_000_001.25),
        ("ingest_time - event_time", 0.75),
        ("topic.x", None),
    ],
)
def test_reserved_names_read_event_metadata(text: str, expected: Any) -> None:
    assert run(text) == expected


def test_key_may_be_null() -> None:
    assert run("key", meta=EventMeta("a", None, 0.0, 0.0)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("null", None),
        ("True", True),
        ("False", False),
        ("None", None),
    ],
)
def test_constant_names(text: str, expected: Any) -> None:
    assert run(text) is expected


# --- operators -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("2.5", 2.5),
        ("'s'", "s"),
        ('"d"', "d"),
        ("0x10", 16),
        ("[1, 'a', null]", [1, "a", None]),
        ("(1, 2)", [1, 2]),
        ("1 + 2", 3),
        ("1 + 2.5", 3.5),
        ("'a' + 'b'", "ab"),
        ("name + '!'", "Sensor-A!"),
        ("7 - 10", -3),
        ("3 * 4", 12),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7 % -3", -2),
        ("2 % -1.5", -1.0),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("2 ** 1000", 2**1000),
        ("4 ** 0.5", 2.0),
        ("-count", -3),
        ("+count", 3),
        ("--count", 3),
        ("1 + 2 * 3 ** 2", 19),
        ("(1 + 2) * 3", 9),
        ("count * 2 + value", 27.5),
    ],
)
def test_literals_and_arithmetic(text: str, expected: Any) -> None:
    result = run(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        "1 / 0",
        "1 // 0",
        "1 % 0",
        "1.5 / 0.0",
        "0 ** -1",
        "2 ** 1001",
        "2 ** 1000.5",
        "(2 ** 1000) ** 1000",
        "10.0 ** 400",
        "(-8) ** 0.5",
        "2 ** 1000 ** 2 / 1.5",
        "missing + 1",
        "1 - missing",
        "none * 2",
        "'a' + 1",
        "1 + 'a'",
        "'a' * 3",
        "'%s' % 1",
        "true + 1",
        "ok * 2",
        "readings + readings",
        "-name",
        "-true",
        "+'a'",
        "-missing",
    ],
)
def test_arithmetic_outside_its_domain_is_null(text: str) -> None:
    assert run(text) is None


def test_huge_int_meeting_a_float_is_null_not_an_overflow() -> None:
    huge = {"big": 10**400}
    for text in ("big + 1.5", "big - 1.5", "big * 1.5", "big / 3", "big // 0.5", "big % 0.5"):
        assert run(text, huge) is None, text
    assert run("big ** -1", huge) is None
    assert run("big > 1.5", huge) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("value > 15", True),
        ("value >= 21.5", True),
        ("value < 21.5", False),
        ("value <= 21.5", True),
        ("value == 21.5", True),
        ("value != 21.5", False),
        ("15 < value", True),
        ("21.5 <= value", True),
        ("30 > value", True),
        ("30 >= value", True),
        ("21.5 == value", True),
        ("count == 3.0", True),
        ("count > 2.5", True),
        ("name == 'Sensor-A'", True),
        ("name != 'x'", True),
        ("name > 'A'", True),
        ("'Z' > name", True),
        ("name < 'a'", True),
        ("1 < count < 5", True),
        ("1 < count < 3", False),
        ("1 < 2 < count < 4 <= 4", True),
        ("count == count", True),
        ("env == env", True),
        ("readings == [1, 2, 3]", True),
        ("ok == true", True),
        ("ok != false", True),
        ("topic[1] == 'greenhouse'", True),
        ("key == 'dev-7'", True),
        ("env.temp < value", True),
        ("value > env.temp", True),
        ("abs(value) > 3", True),
    ],
)
def test_comparisons(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("missing > 1", False),
        ("missing < 1", False),
        ("missing >= 1", False),
        ("missing <= 1", False),
        ("1 < missing", False),
        ("missing == 1", False),
        ("missing != 1", True),
        ("missing == null", True),
        ("null == missing", True),
        ("missing != null", False),
        ("value == null", False),
        ("value != null", True),
        ("none == null", True),
        ("missing is null", True),
        ("value is not null", True),
        ("null is missing", True),
        ("missing is None", True),
        ("null < null", False),
        ("null <= null", False),
        ("name > 1", False),
        ("1 < name", False),
        ("name == 1", False),
        ("true == 1", False),
        ("ok == 1", False),
        ("1 == true", False),
        ("ok != 1", True),
        ("false == 0", False),
        ("ok > false", False),
        ("ok > 0", False),
        ("readings > [0]", False),
        ("env > env", False),
        ("1 < missing < 3", False),
    ],
)
def test_comparisons_with_null_and_mixed_types(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("count in [1, 2, 3]", True),
        ("count in (1, 2, 3)", True),
        ("count in [1, 2]", False),
        ("count not in [1, 2]", True),
        ("value in [21.5]", True),
        ("count in [3.0]", True),
        ("zone in ['north', 'south']", True),
        ("zone not in ['north']", False),
        ("ok in [1]", False),
        ("ok in [true]", True),
        ("1 in [true]", False),
        ("missing in [null]", True),
        ("missing in [1, 2]", False),
        ("missing not in [1, 2]", True),
        ("readings in [1, 2]", False),
        ("env in [1, 2]", False),
        ("'Sens' in name", True),
        ("'x' in name", False),
        ("'x' not in name", True),
        ("1 in name", False),
        ("missing in name", False),
        ("2 in readings", True),
        ("true in readings", False),
        ("'site' in tags", True),
        ("'nope' in tags", False),
        ("1 in tags", False),
        ("1 in missing", False),
        ("1 in 5", False),
        ("count in [value, 3]", True),
        ("[1] in [[1], 2]", True),
        ("topic[0] in ['site', 'x']", True),
    ],
)
def test_membership(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("value > 15 and count == 3", True),
        ("value > 15 and count == 4", False),
        ("value > 30 or count == 3", True),
        ("value > 30 or count == 4", False),
        ("not value > 30", True),
        ("not missing", True),
        ("not name", False),
        ("not ''", True),
        ("not 0", True),
        ("not []", True),
        ("name and count", True),
        ("missing and count", False),
        ("missing or 0", False),
        ("missing or name", True),
        ("1 and 2 and 0", False),
        ("0 or 0 or 1", True),
        ("true and true and not false", True),
    ],
)
def test_boolean_operators_return_bools(text: str, expected: bool) -> None:
    assert run(text) is expected


def test_boolean_operators_short_circuit() -> None:
    ticks: list[float] = []

    def clock() -> float:
        ticks.append(1.0)
        return 1.0

    compile_expression("false and now() > 0", clock=clock).evaluate(PAYLOAD, META)
    compile_expression("1 or now() > 0", clock=clock).evaluate(PAYLOAD, META)
    compile_expression("1 if true else now()", clock=clock).evaluate(PAYLOAD, META)
    assert ticks == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'hot' if value > 20 else 'cold'", "hot"),
        ("'hot' if value > 30 else 'cold'", "cold"),
        ("1 if missing else 2", 2),
        ("1 if name else 2", 1),
        ("1 if true else 2", 1),
        ("1 if 0 else 2", 2),
        ("'a' if count == 3 else 'b' if count == 4 else 'c'", "a"),
    ],
)
def test_conditional_expression(text: str, expected: Any) -> None:
    assert run(text) == expected


# --- functions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("abs(name)", None),
        ("abs(missing)", None),
        ("abs(true)", None),
        ("round(2.567)", 3),
        ("round(2.5)", 2),
        ("round(3.5)", 4),
        ("round(2.567, 2)", 2.57),
        ("round(1234, -2)", 1200),
        ("round(value, 0)", 22.0),
        ("round(name)", None),
        ("round(1.5, 'x')", None),
        ("round(1.5, true)", None),
        ("round(1.5, 5000)", None),
        ("round(10.0 ** 300 * 10.0 ** 300)", None),
        ("round(10.0 ** 300 * 10.0 ** 300 - 10.0 ** 300 * 10.0 ** 300)", None),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2)", 3),
        ("min(3)", 3),
        ("min(readings)", 1),
        ("max(readings)", 3),
        ("min(1, null, -2)", -2),
        ("max(missing, 4)", 4),
        ("max(missing)", None),
        ("max(null, null)", None),
        ("min('b', 'a')", "a"),
        ("min(1, 'a')", None),
        ("max(1, true)", None),
        ("max([])", None),
        ("clamp(value, 0, 10)", 10),
        ("clamp(-5, 0, 10)", 0),
        ("clamp(5, 0, 10)", 5),
        ("clamp(5, 10, 0)", None),
        ("clamp(name, 0, 10)", None),
        ("clamp(5, missing, 10)", None),
        ("lower(name)", "sensor-a"),
        ("upper(name)", "SENSOR-A"),
        ("lower(count)", None),
        ("upper(missing)", None),
        ("startswith(name, 'Sen')", True),
        ("startswith(name, 'x')", False),
        ("startswith(count, '3')", False),
        ("startswith(name, missing)", False),
        ("matches(name, '^S.*-A$')", True),
        ("matches(name, 'sor')", True),
        ("matches(name, '^sor')", False),
        ("matches(count, '3')", False),
        ("matches(topic, '/greenhouse/')", True),
        ("to_number('42')", 42),
        ("to_number(' -7 ')", -7),
        ("to_number('2.5')", 2.5),
        ("to_number('2.5e3')", 2500.0),
        ("to_number('.5')", 0.5),
        ("to_number(true)", 1),
        ("to_number(false)", 0),
        ("to_number(7)", 7),
        ("to_number(7.5)", 7.5),
        ("to_number('abc')", None),
        ("to_number('')", None),
        ("to_number('1_000')", None),
        ("to_number('nan')", None),
        ("to_number('inf')", None),
        ("to_number('1e999')", None),
        ("to_number(missing)", None),
        ("to_number(readings)", None),
        ("len(name)", 8),
        ("len(readings)", 3),
        ("len(env)", 2),
        ("len(count)", None),
        ("len(missing)", None),
        ("coalesce(missing, none, 5)", 5),
        ("coalesce(value, 5)", 21.5),
        ("coalesce(missing)", None),
        ("coalesce(false, 1)", False),
    ],
)
def test_functions(text: str, expected: Any) -> None:
    result = run(text)
    assert result == expected
    assert type(result) is type(expected)


def test_len_of_a_raw_payload() -> None:
    assert run("len(payload)", b"\x00\x01") == 2


def test_to_number_refuses_more_digits_than_python_converts() -> None:
    assert run("to_number(digits)", {"digits": "9" * 5000}) is None


def test_now_reads_the_injected_clock() -> None:
    expr = compile_expression("now() - event_time", clock=lambda: 1_700_000_010.5)
    assert expr.evaluate(PAYLOAD, META) == 10.0


def test_now_reads_wall_clock_by_default() -> None:
    assert run("now() > 1600000000") is True


def test_coalesce_stops_at_the_first_present_value() -> None:
    calls: list[int] = []

    def clock() -> float:
        calls.append(1)
        return 1.0

    compile_expression("coalesce(value, now())", clock=clock).evaluate(PAYLOAD, META)
    assert calls == []


def test_every_listed_function_exists() -> None:
    expected = {"abs", "round", "min", "max", "clamp", "now", "lower", "upper"}
    expected |= {"startswith", "matches", "to_number", "len", "coalesce"}
    assert set(FUNCTIONS) == expected


# --- predicates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("value > 15", True),
        ("missing", False),
        ("none", False),
        ("value", True),
        ("0", False),
        ("''", False),
        ("name", True),
        ("readings", True),
        ("[]", False),
        ("null", False),
        ("true", True),
        ("1 + 1", True),
        ("missing + 1", False),
        ("lower(name)", True),
        ("'hot' if value > 30 else ''", False),
        ("coalesce(missing, 0)", False),
    ],
)
def test_predicates_always_yield_bools(text: str, expected: bool) -> None:
    assert compile_predicate(text).evaluate(PAYLOAD, META) is expected


@pytest.mark.parametrize(
    ("text", "closure"),
    [
        ("value > 15", "_fused_greater."),
        ("15 >= value", "_fused_less_equal."),
        ("status == 'ok'", "_fused_equal."),
        ("env.temp < 1.5", "_typed_ordering."),
        ("topic[1] != 'x'", "_typed_equality."),
        ("site in ['a', 'b']", "_membership."),
    ],
)
def test_common_shapes_compile_to_one_specialised_closure(text: str, closure: str) -> None:
    assert compile_predicate(text).fn.__qualname__.startswith(closure)


# --- fused comparisons agree with the generic operators --------------------------------

SAMPLES: list[Any] = [None, True, False, 0, 1, -1, 15, 15.0, 15.5, 2**60, 2**60 + 1]
SAMPLES += [-0.0, math.inf, -math.inf, math.nan, "15", "", "a", [15], {"v": 15}]
CONSTANTS = ["15", "15.0", "15.5", "-1", "0", "2**60", "1.5e300", "'15'", "'a'", "''"]
CONSTANTS += ["null", "true", "false", "2**80"]
GENERIC = {
    "==": ops.equal,
    "!=": ops.not_equal,
    "<": ops.less,
    "<=": ops.less_equal,
    ">": ops.greater,
    ">=": ops.greater_equal,
}


@pytest.mark.parametrize("op", list(GENERIC))
@pytest.mark.parametrize("constant", CONSTANTS)
def test_specialised_comparisons_match_the_generic_operators(op: str, constant: str) -> None:
    right = compile_expression(constant).evaluate(None, META)
    forward = compile_expression(f"v {op} {constant}").fn
    mirrored = compile_expression(f"{constant} {_mirror(op)} v").fn
    computed = compile_expression(f"coalesce(v) {op} {constant}").fn
    for sample in SAMPLES:
        expected = GENERIC[op](sample, right)
        for fn in (forward, mirrored, computed):
            assert fn({"v": sample}, META) is expected, (sample, op, constant)


def _mirror(op: str) -> str:
    """The operator that gives the same answer with operands swapped."""
    return {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)


@pytest.mark.parametrize("container", ["[1, 'a', null, true, 2.5]", "['x']", "[[1], 1]", "[]"])
def test_specialised_membership_matches_the_generic_operator(container: str) -> None:
    right = compile_expression(container).evaluate(None, META)
    member = compile_expression(f"v in {container}").fn
    absent = compile_expression(f"v not in {container}").fn
    for sample in SAMPLES:
        assert member({"v": sample}, META) is ops.contains(sample, right), sample
        assert absent({"v": sample}, META) is not ops.contains(sample, right), sample


def test_specialised_comparison_on_a_bare_payload() -> None:
    assert compile_expression("value > 15").evaluate(16, META) is True
    assert compile_expression("temp > 15").evaluate(16, META) is False
    assert compile_expression("value == 'x'").evaluate("x", META) is True
    assert compile_expression("value != 'x'").evaluate(None, META) is True


# --- constant folding ------------------------------------------------------------------


def test_constant_subexpressions_are_folded_at_compile_time() -> None:
    expr = compile_expression("(1 + 2) * 3 > 8 and lower('A') == 'a'")
    assert expr.fn.__qualname__.startswith("constant.")
    assert expr.evaluate(None, META) is True


def test_constant_lists_are_fresh_per_evaluation() -> None:
    expr = compile_expression("[1, 2]")
    first = expr.evaluate(None, META)
    first.append(3)
    assert expr.evaluate(None, META) == [1, 2]


def test_now_is_never_folded() -> None:
    times = iter([1.0, 2.0])
    expr = compile_expression("now() + 0", clock=lambda: next(times))
    assert [expr.evaluate(None, META), expr.evaluate(None, META)] == [1.0, 2.0]


# --- compile errors --------------------------------------------------------------------

KNOWN = (
    "abs, clamp, coalesce, len, lower, matches, max, min, now, round, startswith, to_number, upper"
)
DUNDER = "name '{}' is not allowed (names starting with '__' are reserved)"
METHOD = "method calls are not allowed; call a function, e.g. lower(x)"


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("", "expression is empty", 1),
        ("   ", "expression is empty", 1),
        ("value >", "unexpected end of expression", 8),
        ("value > ", "unexpected end of expression", 8),
        ("value > > 1", "invalid syntax", 9),
        ("a b", "invalid syntax", 3),
        ("(value > 1", "invalid syntax: '(' was never closed", 1),
        ("value > 1)", "invalid syntax: unmatched ')'", 10),
        ("name == 'abc", "invalid syntax: unterminated string literal (detected at line 1)", 9),
        ("  value >> 1", "operator '>>' is not allowed", 3),
        ("  (value", "invalid syntax: '(' was never closed", 3),
        ("é == (1", "invalid syntax: '(' was never closed", 6),
        ("a = 1", "invalid syntax", 3),
        ("a\n+ (", "invalid syntax", 3),
        ("(a\n+ (", "invalid syntax: '(' was never closed", 6),
        ("x\0", "invalid syntax: source code string cannot contain null bytes", 2),
        ("lambda: 1", "lambda is not allowed", 1),
        ("[x for x in readings]", "comprehensions are not allowed", 1),
        ("1 + {x for x in readings}", "comprehensions are not allowed", 5),
        ("{k: 1 for k in tags}", "comprehensions are not allowed", 1),
        ("max(x for x in readings)", "comprehensions are not allowed", 4),
        ("(y := 3)", "assignment (:=) is not allowed", 2),
        ("f'{value}' == 'x'", "f-strings are not allowed", 1),
        ("[*readings]", "starred arguments are not allowed", 2),
        ("max(*readings)", "starred arguments are not allowed", 5),
        ("{'a': 1}", "object literals are not allowed", 1),
        ("{1, 2}", "set literals are not allowed", 1),
        ("readings[0:2]", "slices are not allowed", 10),
        ("readings[0, 1]", "only one index is allowed", 10),
        ("await value", "await is not allowed", 1),
        ("value & 1", "operator '&' is not allowed", 1),
        ("value | 1", "operator '|' is not allowed", 1),
        ("value ^ 1", "operator '^' is not allowed", 1),
        ("value << 1", "operator '<<' is not allowed", 1),
        ("value @ 1", "operator '@' is not allowed", 1),
        ("~value", "operator '~' is not allowed", 1),
        ("b'x' == payload", "bytes literals are not allowed", 1),
        ("value * 2j", "complex numbers are not allowed", 9),
        ("...", "Ellipsis is not allowed", 1),
        ("value.__class__", DUNDER.format("__class__"), 7),
        ("env . __dict__", DUNDER.format("__dict__"), 7),
        ("__builtins__", DUNDER.format("__builtins__"), 1),
        ("__import__('os')", DUNDER.format("__import__"), 1),
        ("x.__class__.__bases__", DUNDER.format("__class__"), 3),
        ("name.lower()", METHOD, 1),
        ("value > 1 and name.upper() == 'A'", METHOD, 15),
        ("(lower if ok else upper)(name)", "only built-in functions can be called", 1),
        ("readings[0]()", "only built-in functions can be called", 1),
        ("exec('1')", f"unknown function 'exec' (known: {KNOWN})", 1),
        ("1 + eval('1')", f"unknown function 'eval' (known: {KNOWN})", 5),
        ("open('x')", f"unknown function 'open' (known: {KNOWN})", 1),
        ("round(value, ndigits=1)", "keyword arguments are not allowed", 14),
        ("abs(**tags)", "keyword arguments are not allowed", 5),
        ("abs()", "abs() takes exactly 1 argument, got 0", 1),
        ("abs(1, 2)", "abs() takes exactly 1 argument, got 2", 1),
        ("round()", "round() takes 1 to 2 arguments, got 0", 1),
        ("round(1, 2, 3)", "round() takes 1 to 2 arguments, got 3", 1),
        ("x + min()", "min() takes at least 1 argument, got 0", 5),
        ("max()", "max() takes at least 1 argument, got 0", 1),
        ("coalesce()", "coalesce() takes at least 1 argument, got 0", 1),
        ("clamp(1, 2)", "clamp() takes exactly 3 arguments, got 2", 1),
        ("now(1)", "now() takes no arguments, got 1", 1),
        ("startswith(name)", "startswith() takes exactly 2 arguments, got 1", 1),
        ("matches(name)", "matches() takes exactly 2 arguments, got 1", 1),
        ("matches(name, pattern)", "matches() needs a literal string pattern", 15),
        ("matches(name, 'a' + 'b')", "matches() needs a literal string pattern", 15),
        ("matches(name, 1)", "matches() needs a literal string pattern", 15),
        (
            "matches(name, '(')",
            "invalid regular expression: missing ), unterminated subpattern",
            15,
        ),
        ("matches(name, '[')", "invalid regular expression: unterminated character set", 15),
        ("value is 1", "'is' can only compare with null; use ==", 10),
        ("value is not name", "'is' can only compare with null; use ==", 14),
        ("topic['x']", "topic segments are numbered: use topic[0], topic[-1]", 7),
        ("topic[1.5]", "topic segments are numbered: use topic[0], topic[-1]", 7),
    ],
)
def test_compile_errors_name_the_problem_and_column(text: str, message: str, column: int) -> None:
    error = error_of(text)
    assert (error.message, error.column) == (message, column)
    assert str(error) == f"{message} at column {column}"
    assert error.text == text


def test_syntax_errors_count_columns_across_lines() -> None:
    error = error_of("value > 1 and\n  (temp <")
    assert error.message == "invalid syntax"
    assert error.column == 14


def test_multi_line_text_inside_parentheses_is_accepted() -> None:
    expr = compile_expression("(value > 15\n and count == 3)")
    assert expr.evaluate(PAYLOAD, META) is True


def test_leading_whitespace_is_not_an_indentation_error() -> None:
    assert compile_expression("\n   value").evaluate(PAYLOAD, META) == 21.5


def test_columns_count_characters_not_bytes() -> None:
    error = error_of("'température' == x.__y")
    assert error.column == 20


def test_comments_are_ignored() -> None:
    assert compile_expression("value > 15  # hot").evaluate(PAYLOAD, META) is True


def test_overly_long_text_is_refused() -> None:
    error = error_of("1 + " * 500 + "1")
    assert (error.message, error.column) == (
        "expression is too long (2001 characters, limit 2000)",
        2001,
    )


def test_text_of_exactly_the_limit_is_accepted() -> None:
    text = "value " + " " * 1985 + "> 15     "
    assert len(text) == 2000
    assert compile_expression(text).evaluate(PAYLOAD, META) is True


def test_nesting_of_fifty_levels_is_accepted() -> None:
    assert compile_expression("-" * 49 + "count").evaluate(PAYLOAD, META) == -3


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("-" * 50 + "count", 51),
        ("abs(" * 50 + "1" + ")" * 50, 201),
        ("[" * 50 + "1" + "]" * 50, 51),
        ("1" + "+1" * 60, 1),
        ("1" + "+1" * 999, 1),
        ("not " * 400 + "x", 201),
        ("-" * 1999 + "x", 51),
    ],
    ids=["unary", "calls", "lists", "operator-chain", "parser-recursion", "not", "longest"],
)
def test_deep_nesting_is_refused(text: str, column: int) -> None:
    error = error_of(text)
    assert (error.message, error.column) == (
        "expression is nested too deeply (limit 50 levels)",
        column,
    )


def test_parentheses_do_not_count_as_nesting() -> None:
    assert compile_expression("(" * 60 + "count" + ")" * 60).evaluate(PAYLOAD, META) == 3


def test_the_parsers_own_parenthesis_limit_is_reported() -> None:
    error = error_of("(" * 300 + "x" + ")" * 300)
    assert (error.message, error.column) == ("invalid syntax: too many nested parentheses", 201)


def test_errors_survive_pickling() -> None:
    error = error_of("value >")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.message, clone.column, clone.text) == (
        "unexpected end of expression",
        8,
        "value >",
    )
    assert str(clone) == str(error)


# --- aggregates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "func", "arg_text", "expected"),
    [
        ("count()", "count", None, None),
        ("count(value)", "count", "value", 21.5),
        ("sum(value)", "sum", "value", 21.5),
        ("avg(value)", "avg", "value", 21.5),
        ("min(env.temp)", "min", "env.temp", 19.0),
        ("max(payload.env.temp)", "max", "payload.env.temp", 19.0),
        ("first(name)", "first", "name", "Sensor-A"),
        ("last(readings[-1])", "last", "readings[-1]", 3),
        ("  sum( value * 2 )", "sum", "value * 2", 43.0),
        ("avg(to_number(tags['x']))", "avg", "to_number(tags['x'])", None),
    ],
)
def test_parse_aggregate(text: str, func: str, arg_text: str | None, expected: Any) -> None:
    call = parse_aggregate(text)
    assert (call.func, call.text) == (func, text)
    if arg_text is None:
        assert call.arg is None
    else:
        assert call.arg is not None
        assert call.arg.text == arg_text
        assert call.arg.evaluate(PAYLOAD, META) == expected


VALID = ", ".join(AGGREGATE_FUNCTIONS)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("median(value)", f"unknown aggregate 'median' (valid: {VALID})", 1),
        (" p98(value)", f"unknown aggregate 'p98' (valid: {VALID})", 2),
        ("value", "expected an aggregate such as count() or avg(value)", 1),
        ("avg(value) + 1", "expected an aggregate such as count() or avg(value)", 1),
        ("x.avg(value)", "expected an aggregate such as count() or avg(value)", 1),
        ("avg()", "avg() takes exactly 1 argument, got 0", 1),
        ("sum(a, b)", "sum() takes exactly 1 argument, got 2", 1),
        ("count(a, b)", "count() takes at most 1 argument, got 2", 1),
        ("avg(x=value)", "keyword arguments are not allowed", 5),
        ("avg(*value)", "starred arguments are not allowed", 1),
        ("avg(value >)", "invalid syntax", 12),
        ("avg(value.__class__)", DUNDER.format("__class__"), 11),
        ("avg(foo(value))", f"unknown function 'foo' (known: {KNOWN})", 5),
        ("", "expression is empty", 1),
    ],
)
def test_aggregate_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(ExprError) as caught:
        parse_aggregate(text)
    assert (caught.value.message, caught.value.column) == (message, column)


def test_aggregate_names_are_exported() -> None:
    assert AGGREGATE_FUNCTIONS[:7] == ("count", "sum", "avg", "min", "max", "first", "last")
    assert {"stddev", "p99", "percentile", "rate", "delta", "distinct"} <= set(AGGREGATE_FUNCTIONS)


# --- event metadata and the Expression object ------------------------------------------


def test_event_meta_is_frozen_and_slotted() -> None:
    meta = EventMeta("a/b", None, 1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.topic = "c"  # type: ignore[misc]
    assert not hasattr(meta, "__dict__")
    assert meta == EventMeta(topic="a/b", key=None, event_time=1.0, ingest_time=2.0)
    assert dataclasses.replace(meta, key="k").key == "k"
    assert hash(meta) == hash(EventMeta("a/b", None, 1.0, 2.0))


def test_expression_exposes_text_and_the_hot_loop_callable() -> None:
    expr = compile_expression("value * 2")
    assert expr.text == "value * 2"
    assert expr.fn(PAYLOAD, META) == expr.evaluate(PAYLOAD, META) == 43.0

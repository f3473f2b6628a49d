"""The safe expression language of pipeline filters, window keys and aggregates.

Text is parsed once with Python's ``ast`` module, checked against a whitelist
and compiled into nested closures; it is never passed to ``eval``/``exec``.
Every mistake is an `ExprError` at compile time (config load), with a 1-based
column; a compiled expression never raises while events flow.

Names
    ``temp``, ``env.temp``, ``readings[0]``, ``tags["site"]`` read payload
    fields (``payload.env.temp`` is the same as ``env.temp``); ``payload`` is
    the whole payload. If the payload is not an object (a bare number), the
    root field ``value`` is the whole payload. Reserved: ``topic`` (the full
    topic), ``topic[i]`` (a ``/`` level, negative from the end), ``key``,
    ``event_time``, ``ingest_time`` (epoch seconds), ``true``/``false``/
    ``null`` and ``True``/``False``/``None``. A payload field that shadows a
    reserved name is read as ``payload.topic`` or ``payload["key"]``.

Operators
    Literals (int, float, str, bool, null, lists); ``== != < <= > >=``
    (chains allowed); ``and or not``; ``+ - * / // % **``; unary ``- +``;
    ``in`` / ``not in``; ``a if cond else b``; ``x is null``.

Functions
    abs, round(x, n=0), min(...), max(...), clamp(x, lo, hi), now(), lower,
    upper, startswith(s, prefix), matches(s, "regex") (``re.search``, pattern
    must be a literal), to_number(x), len, coalesce(a, b, ...).

Null and type rules (nothing raises at run time)
    1. A missing field, index out of range, or lookup on a non-container is null.
    2. Arithmetic is defined on numbers (``+`` also joins two strings); any
       other operand, including null and booleans, gives null, as do division
       by zero, an exponent above 1000, an integer power above 100000 bits,
       overflow and complex results.
    3. ``==``/``!=`` are always defined: ``null == null`` is true,
       ``x != null`` is true for any present value, and a boolean never equals
       a number (``true != 1``).
    4. ``< <= > >=`` compare two numbers or two strings; anything else,
       including null, is false. ``in`` is list membership (by ``==``),
       substring, or object key; anything else is false, and ``not in`` is
       its negation.
    5. Truthiness is Python's with null false; ``and``/``or``/``not`` and
       predicates return bools. Functions return null (``startswith`` and
       ``matches``: false) for arguments of the wrong type.

Limits
    At most 2000 characters and 50 levels of nesting (each operator is a
    level, so ``a+b+c`` is three deep). Refused: lambda, comprehensions,
    ``:=``, f-strings, ``*args``, keyword arguments, method calls such as
    ``x.lower()``, object and set literals, slices, bitwise operators, bytes
    and complex literals, and any name starting with ``__``. For multi-line
    text the column counts characters from the start of the whole text.
"""

from agent.pipeline.expr.aggregate import AGGREGATE_FUNCTIONS, AggregateCall, parse_aggregate
from agent.pipeline.expr.errors import ExprError
from agent.pipeline.expr.expression import Expression, compile_expression, compile_predicate
from agent.pipeline.expr.functions import FUNCTIONS
from agent.pipeline.expr.meta import EventMeta

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "FUNCTIONS",
    "AggregateCall",
    "EventMeta",
    "ExprError",
    "Expression",
    "compile_expression",
    "compile_predicate",
    "parse_aggregate",
]

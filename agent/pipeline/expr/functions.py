"""The built-in functions: each a total function over evaluated arguments.

Like the operators in `values`, a function answers null (or false, for the
predicates) for arguments of the wrong type instead of raising, because a
filter must never drop the whole pipeline over one odd payload. ``now``,
``coalesce`` and ``matches`` need the compiler's help (a clock, lazy
arguments, a regex compiled once) and are listed here for arity only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.pipeline.expr.values import is_number

MAX_ROUND_DIGITS = 1000
"""``round(x, n)`` with a larger ``|n|`` is null: Python would build ``10**|n|``."""

_INTEGER = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function's name, arity and implementation, checked at compile time."""

    name: str
    min_args: int
    max_args: int | None
    impl: Callable[..., Any] | None = None
    boolean: bool = False

    def arity_text(self) -> str:
        """Describe the accepted argument count the way error messages need it."""
        if self.max_args is None:
            return f"at least {_arguments(self.min_args)}"
        if self.min_args == self.max_args:
            return "no arguments" if self.min_args == 0 else f"exactly {_arguments(self.min_args)}"
        return f"{self.min_args} to {self.max_args} arguments"


def _arguments(count: int) -> str:
    """Pluralise 'argument' for error messages."""
    return f"{count} argument" if count == 1 else f"{count} arguments"


def fn_abs(value: Any) -> Any:
    """Absolute value of a number."""
    return abs(value) if is_number(value) else None


def fn_round(value: Any, digits: Any = None) -> Any:
    """Python's round (half to even): an int without ``digits``, else same type."""
    if not is_number(value):
        return None
    try:
        if digits is None:
            return round(value)
        if type(digits) is not int or abs(digits) > MAX_ROUND_DIGITS:
            return None
        return round(value, digits)
    except (OverflowError, ValueError):  # round(inf), round(nan)
        return None


def _comparable_values(args: tuple[Any, ...]) -> list[Any] | None:
    """Non-null arguments (or the elements of a single list), if all numbers or all strings."""
    candidates = args[0] if len(args) == 1 and type(args[0]) is list else args
    present = [value for value in candidates if value is not None]
    if present and (all(map(is_number, present)) or all(type(v) is str for v in present)):
        return present
    return None


def fn_min(*args: Any) -> Any:
    """Smallest of the non-null arguments; null if none or if types are mixed."""
    present = _comparable_values(args)
    return None if present is None else min(present)


def fn_max(*args: Any) -> Any:
    """Largest of the non-null arguments; null if none or if types are mixed."""
    present = _comparable_values(args)
    return None if present is None else max(present)


def fn_clamp(value: Any, low: Any, high: Any) -> Any:
    """``value`` limited to ``[low, high]``; null for non-numbers or ``low > high``."""
    if not (is_number(value) and is_number(low) and is_number(high)) or low > high:
        return None
    return min(max(value, low), high)


def fn_lower(value: Any) -> Any:
    """Lower-case a string."""
    return value.lower() if type(value) is str else None


def fn_upper(value: Any) -> Any:
    """Upper-case a string."""
    return value.upper() if type(value) is str else None


def fn_startswith(value: Any, prefix: Any) -> bool:
    """Prefix test on two strings; false for anything else."""
    return type(value) is str and type(prefix) is str and value.startswith(prefix)


def fn_len(value: Any) -> Any:
    """Length of a string, list, object or raw payload."""
    return len(value) if type(value) in (str, list, tuple, dict, bytes) else None


def fn_to_number(value: Any) -> Any:
    """Parse decimal text (``"42"`` -> 42, ``"2.5e3"`` -> 2500.0) or pass numbers through.

    A strict pattern instead of ``float()`` refuses ``"nan"``, ``"inf"`` and
    ``"1_000"``, which no sensor means as a number.
    """
    if is_number(value):
        return value
    if type(value) is bool:
        return int(value)
    return _parse_number(value) if type(value) is str else None


def _parse_number(text: str) -> int | float | None:
    """An int for integer text, a finite float for decimal text, else null."""
    try:
        if _INTEGER.fullmatch(text):
            return int(text)
        number = float(text) if _DECIMAL.fullmatch(text) else math.nan
    except ValueError:  # more digits than int() converts
        return None
    return number if math.isfinite(number) else None


FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        FunctionSpec("abs", 1, 1, fn_abs),
        FunctionSpec("round", 1, 2, fn_round),
        FunctionSpec("min", 1, None, fn_min),
        FunctionSpec("max", 1, None, fn_max),
        FunctionSpec("clamp", 3, 3, fn_clamp),
        FunctionSpec("now", 0, 0),
        FunctionSpec("lower", 1, 1, fn_lower),
        FunctionSpec("upper", 1, 1, fn_upper),
        FunctionSpec("startswith", 2, 2, fn_startswith, boolean=True),
        FunctionSpec("matches", 2, 2, boolean=True),
        FunctionSpec("to_number", 1, 1, fn_to_number),
        FunctionSpec("len", 1, 1, fn_len),
        FunctionSpec("coalesce", 1, None),
    )
}
"""Every callable name; the compiler refuses any other."""

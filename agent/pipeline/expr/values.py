"""Run-time value semantics: total functions that never raise on JSON-shaped values.

Every operator of the language is one function here, so the compiled closures,
constant folding and the documentation all share one definition of what
``null > 1`` or ``"a" + 1`` means. Values are what a JSON decoder produces
(``None``, ``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``) plus
``bytes`` for raw payloads; exact type checks keep ``bool`` out of arithmetic.
"""

from __future__ import annotations

from typing import Any

MAX_EXPONENT = 1000
"""Larger exponents evaluate to null instead of burning CPU on huge powers."""

MAX_POWER_BITS = 100_000
"""Integer powers whose result would need more bits than this evaluate to null."""


NUMBER_TYPES = (int, float)
"""Exact types that count as numbers: ``type(True)`` is ``bool``, so booleans do not."""


def is_number(value: Any) -> bool:
    """Tell numbers from everything else; ``True`` is a boolean here, not a 1."""
    return type(value) in NUMBER_TYPES


def truthy(value: Any) -> bool:
    """Coerce to bool the Python way, with null as false."""
    return value is not None and bool(value)


def equal(left: Any, right: Any) -> bool:
    """Equality that keeps booleans apart from numbers (JSON ``true`` is not ``1``)."""
    if type(left) is bool or type(right) is bool:
        return left is right
    return bool(left == right)


def not_equal(left: Any, right: Any) -> bool:
    """The negation of `equal`, so ``x != null`` is true for every present value."""
    return not equal(left, right)


def _orderable(left: Any, right: Any) -> bool:
    """Ordering is defined between two numbers or two strings only."""
    if type(left) in NUMBER_TYPES:
        return type(right) in NUMBER_TYPES
    return type(left) is str and type(right) is str


def less(left: Any, right: Any) -> bool:
    """``<``; false when the operands cannot be ordered (null, mixed types)."""
    return _orderable(left, right) and left < right


def less_equal(left: Any, right: Any) -> bool:
    """``<=``; false when the operands cannot be ordered."""
    return _orderable(left, right) and left <= right


def greater(left: Any, right: Any) -> bool:
    """``>``; false when the operands cannot be ordered."""
    return _orderable(left, right) and left > right


def greater_equal(left: Any, right: Any) -> bool:
    """``>=``; false when the operands cannot be ordered."""
    return _orderable(left, right) and left >= right


def contains(item: Any, container: Any) -> bool:
    """``in``: list membership, substring, or object key; false for anything else."""
    kind = type(container)
    if kind is list or kind is tuple:
        return any(equal(item, element) for element in container)
    if kind is str or kind is dict:
        return type(item) is str and item in container
    return False


def not_contains(item: Any, container: Any) -> bool:
    """``not in`` is exactly ``not (item in container)``."""
    return not contains(item, container)


def add(left: Any, right: Any) -> Any:
    """``+`` on numbers, or concatenation of two strings; null otherwise."""
    if type(left) in NUMBER_TYPES and type(right) in NUMBER_TYPES:
        try:
            return left + right
        except OverflowError:  # an int too large to meet a float
            return None
    if type(left) is str and type(right) is str:
        return left + right
    return None


def subtract(left: Any, right: Any) -> Any:
    """``-`` on numbers; null otherwise."""
    if type(left) not in NUMBER_TYPES or type(right) not in NUMBER_TYPES:
        return None
    try:
        return left - right
    except OverflowError:
        return None


def multiply(left: Any, right: Any) -> Any:
    """``*`` on numbers only: string repetition would let a payload allocate at will."""
    if type(left) not in NUMBER_TYPES or type(right) not in NUMBER_TYPES:
        return None
    try:
        return left * right
    except OverflowError:
        return None


def divide(left: Any, right: Any) -> Any:
    """``/``; division by zero is null, not an error."""
    if type(left) not in NUMBER_TYPES or type(right) not in NUMBER_TYPES:
        return None
    try:
        return left / right
    except ArithmeticError:
        return None


def floor_divide(left: Any, right: Any) -> Any:
    """``//``; division by zero is null."""
    if type(left) not in NUMBER_TYPES or type(right) not in NUMBER_TYPES:
        return None
    try:
        return left // right
    except ArithmeticError:
        return None


def modulo(left: Any, right: Any) -> Any:
    """``%`` on numbers only (never string formatting); modulo by zero is null."""
    if type(left) not in NUMBER_TYPES or type(right) not in NUMBER_TYPES:
        return None
    try:
        return left % right
    except ArithmeticError:
        return None


def power(base: Any, exponent: Any) -> Any:
    """``**`` bounded in exponent and result size; complex results are null."""
    if type(base) not in NUMBER_TYPES or type(exponent) not in NUMBER_TYPES:
        return None
    if exponent > MAX_EXPONENT:
        return None
    if type(base) is int and type(exponent) is int and _too_many_bits(base, exponent):
        return None
    try:
        result = base**exponent
    except (ArithmeticError, ValueError):
        return None
    return None if type(result) is complex else result


def _too_many_bits(base: int, exponent: int) -> bool:
    """Estimate an integer power's size before computing it."""
    return exponent > 0 and abs(base).bit_length() * exponent > MAX_POWER_BITS


def negate(value: Any) -> Any:
    """Unary ``-`` on numbers; null otherwise."""
    return -value if is_number(value) else None


def plus(value: Any) -> Any:
    """Unary ``+`` on numbers; null otherwise."""
    return value if is_number(value) else None


def logical_not(value: Any) -> bool:
    """``not``, with null counting as false."""
    return not truthy(value)


def get_item(container: Any, index: Any) -> Any:
    """``x[i]`` and ``x.name``: object key or array index; null when absent or ill-typed."""
    kind = type(container)
    if kind is dict:
        return container.get(index) if type(index) in _KEY_TYPES else None
    if (kind is list or kind is tuple) and type(index) is int:
        length = len(container)
        return container[index] if -length <= index < length else None
    return None


_KEY_TYPES = (str, int, float, bool, type(None))
"""Hashable scalar types a dict lookup accepts; lists and dicts as keys are null."""

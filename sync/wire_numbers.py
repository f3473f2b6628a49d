"""Floats as exact scaled integers, so sensor readings delta-encode losslessly.

A reading such as 21.37 is stored as 2137 with scale 2 when, and only when, dividing
back gives the identical float: Python's int / int division is correctly rounded, and
so is the decimal literal a float's repr stands for, so `round(v * 10**d) / 10**d`
equals `v` whenever `d` covers every decimal of `repr(v)` and the check below passes.
Anything else (-0.0, exponents, inf, nan, more digits than fit) falls back to the
float's IEEE bit pattern read as a signed 64-bit integer, which is exact for every
float and still close between neighbouring values of the same magnitude.
"""

from __future__ import annotations

import math
from array import array

BITS = -1  # scale code: the column holds IEEE 754 bit patterns, not scaled decimals
MAX_SCALE = 30
_LIMIT = 2**62
_SAMPLE = 16


def to_ints(values: list[float]) -> tuple[int, list[int]]:
    """(scale, integers) for a list of floats: the smallest exact decimal scale, or BITS.

    The scale is first guessed from a sample (repr is the costly step) and verified on
    every value; only when that fails are all values inspected.
    """
    guess = _decimals(values[:_SAMPLE])
    if guess is not None:
        ints = _scaled(values, guess)
        if ints is not None:
            return guess, ints
    scale = _decimals(values)
    if scale is not None and scale != guess:
        ints = _scaled(values, scale)
        if ints is not None:
            return scale, ints
    return BITS, to_bits(values)


def from_ints(scale: int, ints: list[int]) -> list[float]:
    """The floats `to_ints` was given."""
    if scale == BITS:
        return from_bits(ints)
    if scale == 0:
        return [float(i) for i in ints]
    power = 10**scale
    return [i / power for i in ints]


def rescale(ints: list[int], by: int) -> list[int]:
    """Integers at a finer decimal scale (`by` more digits)."""
    if by == 0:
        return ints
    factor = 10**by
    return [i * factor for i in ints]


def fits(ints: list[int]) -> bool:
    """True when every integer is within +-2**62 (differences then fit 64 bits)."""
    return not ints or (max(ints) < _LIMIT and -min(ints) < _LIMIT)


def to_bits(values: list[float]) -> list[int]:
    """The IEEE 754 bit pattern of each float, as a signed 64-bit integer."""
    return array("q", array("d", values).tobytes()).tolist()


def from_bits(ints: list[int]) -> list[float]:
    """Floats from their bit patterns (OverflowError when one does not fit 64 bits)."""
    return array("d", array("q", ints).tobytes()).tolist()


def valid_scale(scale: object) -> bool:
    """True for a scale code a decoder may act on (bounded: 10**scale must stay cheap)."""
    return type(scale) is int and BITS <= scale <= MAX_SCALE


def _decimals(values: list[float]) -> int | None:
    reprs = [repr(v) for v in values]
    joined = "".join(reprs)
    if "e" in joined or "n" in joined:  # exponent, inf, nan
        return None
    scale = max([len(r) - r.index(".") for r in reprs], default=1) - 1
    return scale if scale <= MAX_SCALE else None


def _scaled(values: list[float], scale: int) -> list[int] | None:
    power = 10**scale
    ints = [round(v * power) for v in values]
    if [i / power for i in ints] != values:
        return None
    if 0.0 in values and any(math.copysign(1.0, v) < 0 for v in values if v == 0):
        return None  # -0.0 would come back as 0.0
    return ints if fits(ints) else None

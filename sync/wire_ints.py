"""Integer columns for wire version 2: delta, zigzag, fixed width, byte planes.

Why this shape: zstd (its entropy stage codes bytes) compresses a column of small,
equally wide numbers far better than decimal text, and splitting each number's bytes
into planes (all low bytes, then all next bytes ...) puts the near-constant high bytes
together where they cost almost nothing. Every step runs in C (array, bytes slicing)
except one list comprehension per step.

A column is described by `[mode, base, width]` (kept in the block's schema) and its
planes (`count * width` bytes):

* PLAIN: values zigzag-encoded (`base` unused, 0);
* DELTA: `base` is the first value, the planes hold the zigzagged differences between
  neighbours (count - 1 of them);
* OFFSET: `base` is the minimum, the planes hold `value - base` (never negative).
"""

from __future__ import annotations

import itertools
import sys
from array import array

from sync.wire_bytes import Reader, svarint, uvarint
from sync.wire_types import WireFormatError

PLAIN, DELTA, OFFSET = 0, 1, 2
MAX_WIDTH = 16
_TYPECODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_TYPECODES = {w: c for w, c in _TYPECODES.items() if array(c).itemsize == w}
Meta = list[int]


def pack(values: list[int], mode: int) -> tuple[Meta, list[bytes]]:
    """Encode one column; returns its meta and its byte planes (`width` of them)."""
    if mode == DELTA:
        base = values[0] if values else 0
        stored = _zigzag([b - a for a, b in itertools.pairwise(values)])
    elif mode == OFFSET:
        base = min(values, default=0)
        stored = [v - base for v in values] if base else values
    else:
        base, stored = 0, _zigzag(values)
    width = (max(stored, default=0).bit_length() + 7) // 8
    return [mode, base, width], _to_planes(stored, width)


def encode_meta(meta: Meta) -> bytes:
    """A column's meta in binary: mode and width as uvarints, base as a signed varint.

    Binary, not JSON: a base may be any 64-bit float pattern or integer difference,
    beyond what a JSON number carries.
    """
    mode, base, width = meta
    return uvarint(mode) + svarint(base) + uvarint(width)


def decode_meta(reader: Reader) -> Meta:
    """The inverse of encode_meta (validated when the column is unpacked)."""
    return [reader.uvarint(), reader.svarint(), reader.uvarint()]


def stored_count(meta: Meta, count: int) -> int:
    """How many numbers the planes of a column of `count` values hold."""
    return max(count - 1, 0) if meta[0] == DELTA else count


def unpack(meta: Meta, count: int, reader: Reader) -> list[int]:
    """Decode a column of `count` values whose planes come next in `reader`."""
    mode, base, width = _checked(meta)
    stored = _from_planes(reader.take(stored_count(meta, count) * width), width)
    if not stored and mode != DELTA:
        stored = [0] * count
    if mode == DELTA:
        if count == 0:
            return []
        diffs = _unzigzag(stored) if stored else [0] * (count - 1)
        return list(itertools.accumulate(diffs, initial=base))
    if mode == OFFSET:
        return [v + base for v in stored] if base else stored
    return _unzigzag(stored)


def _checked(meta: object) -> tuple[int, int, int]:
    if not (isinstance(meta, list) and len(meta) == 3 and all(type(x) is int for x in meta)):
        raise WireFormatError(f"column meta is not [mode, base, width]: {meta!r}")
    mode, base, width = meta
    if mode not in (PLAIN, DELTA, OFFSET) or not 0 <= width <= MAX_WIDTH:
        raise WireFormatError(f"column meta out of range: {meta!r}")
    return mode, base, width


def _zigzag(values: list[int]) -> list[int]:
    return [v << 1 if v >= 0 else (~v << 1) | 1 for v in values]


def _unzigzag(values: list[int]) -> list[int]:
    return [(z >> 1) ^ -(z & 1) for z in values]


def _to_planes(values: list[int], width: int) -> list[bytes]:
    if width == 0:
        return []
    code = _TYPECODES.get(width)
    if code is None:
        raw = b"".join([v.to_bytes(width, "little") for v in values])
    else:
        numbers = array(code, values)
        if sys.byteorder == "big":
            numbers.byteswap()
        raw = numbers.tobytes()
    if width == 1:
        return [raw]
    return [raw[k::width] for k in range(width)]


def _from_planes(planes: bytes, width: int) -> list[int]:
    if width == 0:
        return []
    count = len(planes) // width
    if width == 1:
        return list(planes)
    raw = bytearray(len(planes))
    for k in range(width):
        raw[k::width] = planes[k * count : (k + 1) * count]
    code = _TYPECODES.get(width)
    if code is None:
        return [int.from_bytes(raw[i : i + width], "little") for i in range(0, len(raw), width)]
    numbers = array(code)
    numbers.frombytes(raw)
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers.tolist()

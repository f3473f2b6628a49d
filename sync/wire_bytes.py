"""Varints and a bounds-checked reader: a hostile length can only ever raise.

Every read checks the bytes that remain before it slices or allocates, so a message
that declares a gigabyte of data fails at once with a reason instead of allocating.
"""

from __future__ import annotations

import struct

from sync.wire_types import WireFormatError

_F64 = struct.Struct("<d")
MAX_VARINT_BYTES = 10  # enough for 64 bits plus zigzag; longer means garbage


def uvarint(value: int) -> bytes:
    """LEB128: 7 bits a byte, low bits first, high bit set on all but the last byte."""
    if value < 0:
        raise ValueError(f"uvarint of a negative number ({value})")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def svarint(value: int) -> bytes:
    """A signed varint (zigzag: 0, -1, 1, -2 ... become 0, 1, 2, 3 ...)."""
    return uvarint(value << 1 if value >= 0 else (~value << 1) | 1)


def text(value: str) -> bytes:
    """A length-prefixed UTF-8 string."""
    raw = value.encode()
    return uvarint(len(raw)) + raw


def f64(value: float) -> bytes:
    """A float, bit-exact (little-endian IEEE 754 double)."""
    return _F64.pack(value)


class Reader:
    """Reads a message front to back; every overrun is a WireFormatError naming `what`."""

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self.data) - self.pos

    def take(self, size: int) -> bytes:
        """The next `size` bytes; refused when fewer remain."""
        if size < 0 or size > self.remaining:
            raise WireFormatError(
                f"{self.what}: needs {size} bytes at offset {self.pos}, {self.remaining} remain"
            )
        start, self.pos = self.pos, self.pos + size
        return bytes(self.data[start : self.pos])

    def uvarint(self) -> int:
        """An unsigned varint of at most MAX_VARINT_BYTES bytes."""
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            if self.pos >= len(self.data):
                raise WireFormatError(f"{self.what}: varint runs past the end")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise WireFormatError(f"{self.what}: varint longer than {MAX_VARINT_BYTES} bytes")

    def svarint(self) -> int:
        """A zigzag-encoded signed varint."""
        raw = self.uvarint()
        return (raw >> 1) ^ -(raw & 1)

    def text(self) -> str:
        """A length-prefixed UTF-8 string."""
        raw = self.take(self.uvarint())
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise WireFormatError(f"{self.what}: a string is not UTF-8") from exc

    def f64(self) -> float:
        """A little-endian double."""
        value: float = _F64.unpack(self.take(_F64.size))[0]
        return value

"""Byte-level mutations for structure-aware fuzzing: what a bad link or an attacker sends.

Each mutation takes valid bytes and returns damaged ones. `resign` re-computes the
trailing CRC-32, so a mutation gets past the checksum and reaches the decoders
themselves (the checksum alone would catch almost every random change).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from hypothesis import strategies as st

Mutation = Callable[[bytes], bytes]

INTERESTING_INTS = (
    0, 1, 2, 7, 8, 127, 128, 255, 256, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1,
    2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70,
)  # fmt: skip
"""Boundaries of every integer width a decoder might trust: counts, lengths, widths."""


def resign(data: bytes) -> bytes:
    """`data` with its last 4 bytes replaced by the CRC-32 of the bytes before them."""
    body = data[:-4] if len(data) >= 4 else b""
    return body + struct.pack(">I", zlib.crc32(body))


def uvarint(value: int) -> bytes:
    """LEB128, unbounded (a hostile encoder may write more than 64 bits)."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    """One damaging edit: flip, overwrite, insert, delete, truncate, duplicate, varint."""
    kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup", "varint"]))
    at = draw(st.integers(0, 2**20))  # a position, modulo the length
    size = draw(st.integers(1, 16))
    junk = draw(st.binary(min_size=1, max_size=16))
    bit = draw(st.integers(0, 7))
    number = uvarint(draw(st.sampled_from(INTERESTING_INTS)))

    def mutate(data: bytes) -> bytes:
        i = at % len(data) if data else 0
        head, tail = data[:i], data[i:]
        edits = {
            "flip": lambda: head + bytes([tail[0] ^ (1 << bit)]) + tail[1:] if tail else data,
            "set": lambda: head + junk + tail[len(junk) :],
            "insert": lambda: head + junk + tail,
            "delete": lambda: head + tail[size:],
            "truncate": lambda: head,
            "dup": lambda: head + tail[:size] * 2 + tail[size:],
            "varint": lambda: head + number + tail[1:],  # a hostile varint over one byte
        }
        return edits[kind]()

    return mutate


@st.composite
def damaged(draw: st.DrawFn, message: bytes, other: bytes | None = None) -> bytes:
    """`message` after 1-4 mutations, maybe spliced with `other`, maybe re-signed."""
    data = message
    if other is not None and draw(st.booleans()):
        cut_a = draw(st.integers(0, len(message)))
        cut_b = draw(st.integers(0, len(other)))
        data = message[:cut_a] + other[cut_b:]
    for mutate in draw(st.lists(mutations(), min_size=1, max_size=4)):
        data = mutate(data)
    return resign(data) if draw(st.integers(0, 9)) else data

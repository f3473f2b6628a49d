"""The wire format: round trip, and every corruption refused with a reason (never a crash)."""

from __future__ import annotations

import contextlib
import math
import struct
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.outbox import Gap, StoredEvent
from sync.wire import Ack, Batch, WireFormatError, decode, encode


def batch(n: int = 3, gaps: tuple[Gap, ...] = ()) -> Batch:
    events = [
        StoredEvent(10 + i, 1764201600.0 + i, 1764201601.5 + i, f"k{i}", "a/b",
                    b'{"v": %d}' % i, {"h": "x"} if i == 0 else None)
        for i in range(n)
    ]  # fmt: skip
    return Batch("pi-1", "ep0ch", "sensors", events, list(gaps), 9 + n)


def test_round_trip_keeps_every_field() -> None:
    original = batch(gaps=(Gap(1, 9, "max_bytes", 1.5),))
    decoded = decode(encode(original))
    assert decoded == original
    assert decoded.batch_id == "ep0ch:sensors:10-12"


def test_binary_payloads_survive() -> None:
    raw = bytes(range(256))
    original = Batch("d", "e", "s", [StoredEvent(1, 1.0, 1.0, None, None, raw)], [], 1)
    assert decode(encode(original)).events[0].payload == raw


def test_uncompressed_batches_decode() -> None:
    assert decode(encode(batch(), level=0)) == batch()


def resign(data: bytes) -> bytes:
    return data + struct.pack(">I", zlib.crc32(data))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x01", "batch too short"),
        (resign(b"\x07\x00\x00\x00\x00\x02{}"), "unsupported wire version 7"),
        (resign(b"\x01\x00\x00\x00\x10\x00{}"), "header length runs past the end"),
        (resign(b"\x01\x01\x00\x00\x00\x02{}" + b"not zstd"), "body is not valid zstd"),
        (resign(b"\x01\x00\x00\x00\x00\x02{}[]"), "malformed batch fields"),
        (resign(b"\x01\x00\x00\x00\x00\x03{x}[]"), "header is not valid JSON"),
    ],
)
def test_bad_batches_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        decode(data)


def test_a_flipped_bit_fails_the_checksum() -> None:
    data = bytearray(encode(batch()))
    data[20] ^= 0x01
    with pytest.raises(WireFormatError, match="checksum mismatch"):
        decode(bytes(data))


def test_decompression_bomb_is_refused() -> None:
    body = zstandard.ZstdCompressor().compress(b"[" + b" " * 10_000_000 + b"]")
    header = b'{"device":"d","epoch":"e","stream":"s","upto_seq":0,"count":0,"gaps":[]}'
    data = resign(struct.pack(">BBI", 1, 1, len(header)) + header + body)
    with pytest.raises(WireFormatError, match="decompresses past"):
        decode(data, max_size=1_000_000)


def test_out_of_range_and_unordered_sequence_numbers_are_refused() -> None:
    events = [StoredEvent(2**63, 1.0, 1.0, None, None, b"1")]
    with pytest.raises(WireFormatError, match="outside"):
        decode(encode(Batch("d", "e", "s", events, [], 2**63)))
    events = [
        StoredEvent(5, 1.0, 1.0, None, None, b"1"),
        StoredEvent(4, 1.0, 1.0, None, None, b"1"),
    ]
    with pytest.raises(WireFormatError, match="not strictly increasing"):
        decode(encode(Batch("d", "e", "s", events, [], 5)))


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_event_times_are_refused(version: int, bad: float) -> None:
    """The store's INSERT OR IGNORE would drop such a row silently, as a duplicate."""
    for times in ((bad, 1.0), (1.0, bad)):
        events = [StoredEvent(1, *times, None, None, b"1")]
        with pytest.raises(WireFormatError, match=r"finite|malformed"):
            decode(encode(Batch("d", "e", "s", events, [], 1), version=version))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=400))
def test_random_and_truncated_input_only_ever_raises_wire_format_error(
    junk: bytes, cut: int
) -> None:
    for data in (junk, encode(batch())[:cut], resign(junk)):
        with contextlib.suppress(WireFormatError):
            decode(data)


def test_ack_round_trip_and_garbage() -> None:
    ack = Ack("b", "s", "e", 7, "ok", committed=3, duplicates=1)
    assert Ack.from_bytes(ack.to_bytes()) == ack
    with pytest.raises(WireFormatError):
        Ack.from_bytes(b"[1,2]")


def test_signed_acks_verify_only_with_their_key() -> None:
    key, other = b"k" * 32, b"o" * 32
    ack = Ack("ep:s:1-5", "s", "ep", 5, "ok", committed=5)
    signed = ack.to_bytes(key)
    assert Ack.from_bytes(signed, key) == ack
    assert Ack.from_bytes(signed) == ack  # a device without a key ignores the signature
    with pytest.raises(WireFormatError, match="does not match"):
        Ack.from_bytes(signed, other)
    with pytest.raises(WireFormatError, match="unsigned ack"):
        Ack.from_bytes(ack.to_bytes(), key)
    forged = signed.replace(b'"upto_seq":5', b'"upto_seq":9')
    with pytest.raises(WireFormatError, match="does not match"):
        Ack.from_bytes(forged, key)


def test_a_non_ascii_ack_signature_is_a_wire_format_error() -> None:
    forged = (
        b'{"v":1,"batch_id":"b","stream":"s","epoch":"e","upto_seq":1,"status":"ok",'
        b'"sig":"\xc3\xa9"}'
    )
    with pytest.raises(WireFormatError, match="does not match"):
        Ack.from_bytes(forged, b"k" * 32)

"""Fuzzing the wire decoder: damaged, hostile and bomb batches are refused with a reason.

The promise (sync/wire.py): `decode` raises WireFormatError, whose message the hub
sends back, and nothing else, whatever the bytes; it never runs long and never
allocates far beyond `max_size`. A signed batch that was changed in any way is
refused ("bad signature", or "checksum mismatch" when the CRC does not hold).
"""

from __future__ import annotations

import time
import tracemalloc

import orjson
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from sync.outbox import StoredEvent
from sync.wire import Batch, WireFormatError, decode, encode
from sync.wire_bytes import f64, text, uvarint
from tests.fuzz.budget import fuzz
from tests.fuzz.mutations import damaged, resign
from tests.fuzz.wire_inputs import (
    MAX_SIZE,
    dictionaries,
    hostile_v1,
    hostile_v2,
    key_for,
    v1_frame,
    valid_messages,
)

SECONDS_PER_DECODE = 2.0
"""Generous for a loaded 2-core machine: a decode of these inputs takes well under 10 ms."""


def decode_or_reason(data: bytes, *, signed: bool = False) -> Batch | str:
    """The decoded batch, or the refusal's reason; anything else fails the test."""
    started = time.perf_counter()
    try:
        return decode(
            data, MAX_SIZE, dictionaries=dictionaries(), hmac_key_for=key_for if signed else None
        )
    except WireFormatError as exc:
        assert str(exc), "a refusal must say why"
        return str(exc)
    finally:
        assert time.perf_counter() - started < SECONDS_PER_DECODE


@fuzz(150)
@given(valid_messages(), valid_messages(), st.data())
def test_mutated_batches_are_refused_with_a_reason_or_decode_consistently(
    message: tuple[object, bytes], other: tuple[object, bytes], data: st.DataObject
) -> None:
    """Flips, inserts, deletes, cuts, splices and hostile varints, mostly re-signed."""
    _, original = message
    mutated = data.draw(damaged(original, other[1]))
    result = decode_or_reason(mutated)
    if isinstance(result, Batch):  # what decodes must be a batch the store can take
        seqs = [e.seq for e in result.events]
        assert seqs == sorted(set(seqs))
        assert all(0 <= s <= result.upto_seq for s in seqs)


@fuzz(100)
@given(valid_messages(), valid_messages(), st.data())
def test_a_changed_signed_batch_never_passes_as_signed(
    message: tuple[object, bytes], other: tuple[object, bytes], data: st.DataObject
) -> None:
    """With every device holding a key, only the untouched bytes may decode."""
    _, original = message
    mutated = data.draw(damaged(original, other[1]))
    result = decode_or_reason(mutated, signed=True)
    if isinstance(result, Batch):
        assert mutated[:-4] == original[:-4]


@fuzz(250)
@given(hostile_v2())
def test_hostile_version_2_fields_are_refused_with_a_reason(message: bytes) -> None:
    """Counts, lengths, widths, scales and schemas at every boundary, CRC and HMAC valid."""
    for signed in (False, True):
        decode_or_reason(message, signed=signed)


@fuzz(120)
@given(hostile_v1())
def test_hostile_version_1_fields_are_refused_with_a_reason(message: bytes) -> None:
    decode_or_reason(message)


@fuzz(200)
@given(st.binary(min_size=10, max_size=300), st.sampled_from([1, 2]))
def test_random_bodies_behind_a_valid_version_byte_and_crc(junk: bytes, version: int) -> None:
    decode_or_reason(resign(bytes([version]) + junk))


# ------------------------------------------------------------------ bombs: time and memory


def _peak_while(data: bytes) -> tuple[str, int]:
    tracemalloc.start()
    try:
        result = decode_or_reason(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, str), "a bomb must be refused"
    return result, peak


def _v2(body: bytes, compressed: bool = True) -> bytes:
    if compressed:
        params = zstandard.ZstdCompressionParameters.from_level(
            19, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=0
        )
        body = zstandard.ZstdCompressor(compression_params=params).compress(body)
    return resign(bytes([2, 1 if compressed else 0]) + text("pi-1") + body + b"crc!")


def _schema(raw: bytes) -> bytes:
    return uvarint(len(raw)) + raw


def _header(count: int) -> bytes:
    return text("e") + text("s") + uvarint(2) + uvarint(count) + uvarint(0) + f64(1.0)


BOMBS = {
    "v1 zstd body of 64 MiB zeros": v1_frame(
        b'{"device":"d","epoch":"e","stream":"s","upto_seq":1,"count":1,"gaps":[]}',
        zstandard.ZstdCompressor(level=9).compress(b"\0" * (64 << 20)), flags=1,
    ),
    "v1 many small frames": v1_frame(
        b'{"device":"d","epoch":"e","stream":"s","upto_seq":1,"count":1,"gaps":[]}',
        zstandard.ZstdCompressor(level=19).compress(b" " * (1 << 19)) * 16, flags=1,
    ),
    "v2 zstd body of 64 MiB zeros": _v2(_header(1) + b"\0" * (64 << 20)),
    "v2 a million events declared": _v2(_header(10**6) + b"\0" * 64),
    "v2 a schema of 100,000 keys": _v2(
        _header(1) + _schema(b"[0,0,[" + b"null," * 100_000 + b"null],[]]")
    ),
    "v2 a schema nested 1,000 deep": _v2(_header(1) + _schema(b"[" * 1000 + b"]" * 1000)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_are_refused_within_a_memory_bound(name: str) -> None:
    """tracemalloc's peak stays within a bound of a few times `max_size` (1 MiB here).

    What is traced includes zstd's own buffers (a level 19 frame asks for a few MiB of
    window); a frame asking for more than 128 MiB is refused by zstd itself, and what
    it fills is bounded by `max_size`.
    """
    reason, peak = _peak_while(BOMBS[name])
    assert peak < 12 * MAX_SIZE, f"{name}: {peak} bytes traced; refused with {reason!r}"


# ------------------------------------------------------------------ found by fuzzing


def _deep(depth: int) -> Batch:
    payload = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    return Batch("d", "e", "s", [StoredEvent(1, 1.0, 1.0, None, "t", payload, None)], [], 1)


def test_a_deeply_nested_json_payload_round_trips_in_version_2() -> None:
    batch = _deep(253)
    assert decode(encode(batch)) == batch


def test_a_payload_json_accepts_can_always_be_encoded() -> None:
    batch = _deep(300)
    orjson.loads(batch.events[0].payload)  # the agent's JSON parser takes it
    assert decode(encode(batch)) == batch


def test_version_1_carries_the_deeply_nested_payload() -> None:
    """The same payload is fine in version 1: the bug is in the columnar body only."""
    for depth in (253, 300, 1000):
        batch = _deep(depth)
        assert decode(encode(batch, version=1)) == batch

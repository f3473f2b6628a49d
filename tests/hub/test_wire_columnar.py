"""Wire version 2 is lossless for any batch, and any damage only ever raises WireFormatError."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import zlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.outbox import StoredEvent
from sync.wire import Batch, WireFormatError, decode, encode
from tests.hub.wire_strategies import batches

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same_events(a: Batch, b: Batch) -> None:
    assert b == a
    for x, y in zip(a.events, b.events, strict=True):
        assert y.payload == x.payload  # bytes: exact
        assert repr(y.event_time) == repr(x.event_time)  # bit-exact floats, -0.0 included
        assert repr(y.ingest_time) == repr(x.ingest_time)


@SETTINGS
@given(batches(), st.sampled_from([0, 3]))
def test_any_batch_round_trips_exactly(batch: Batch, level: int) -> None:
    same_events(batch, decode(encode(batch, level)))


def sensor_batch(n: int, first: int = 1) -> Batch:
    events = []
    for i in range(n):
        device = f"pi-{i % 3:03d}"
        ts = round(1764201600.0 + i * 0.013, 3)
        value: float | int = round(21.0 + (i % 7) * 0.01, 2) if i % 2 else 600 + i
        payload = orjson.dumps({"device": device, "sensor": "t", "ts": ts, "value": value})
        events.append(
            StoredEvent(first + i, ts, ts + 0.004321, device, f"plant/{device}/t", payload)
        )
    return Batch("gw-1", "9f2c51d0a4e3b7c1", "sensors", events, [], first + n - 1)


def test_a_sensor_stream_is_far_smaller_than_json() -> None:
    batch = sensor_batch(1000)
    assert decode(encode(batch)) == batch
    raw = sum(len(e.payload) for e in batch.events)
    assert len(encode(batch)) * 10 < raw


def test_large_batches_round_trip_with_one_block_per_plane() -> None:
    batch = sensor_batch(600, first=2**40)
    assert decode(encode(batch, 1)) == batch


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": 1}',  # other spacing
        b'{"a":1,"a":2}',  # duplicate field
        b'{"a":123456789012345678901234567890}',  # beyond 64 bits
        b'{"a":1.0e5}',  # not orjson's float text
        b"[1,2]",
        b"",
        b"\xff\xfe",
        b'{"a":NaN}',
    ],
)
def test_payloads_not_in_compact_form_are_kept_byte_for_byte(payload: bytes) -> None:
    events = [
        StoredEvent(1, 1.0, 1.0, "k", "t", payload),
        StoredEvent(2, 1.0, 1.0, "k", "t", b"{}"),
    ]
    assert decode(encode(Batch("d", "e", "s", events, [], 2))).events[0].payload == payload


def resign(data: bytes) -> bytes:
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


@SETTINGS
@given(batches(), st.data())
def test_damaged_messages_only_ever_raise_wire_format_error(
    batch: Batch, data: st.DataObject
) -> None:
    """Flips and cuts, re-signed with a valid CRC so the decoders themselves are attacked."""
    for level in (0, 3):
        message = bytearray(encode(batch, level))
        at = data.draw(st.integers(0, len(message) - 5))
        message[at] ^= data.draw(st.integers(1, 255))
        cut = data.draw(st.integers(0, len(message)))
        for damaged in (
            bytes(message),
            resign(bytes(message)),
            resign(bytes(message[:cut]) + b"crc!"),
        ):
            with contextlib.suppress(WireFormatError):
                decode(damaged, max_size=1 << 20)


@SETTINGS
@given(batches(), st.data())
def test_a_flip_without_resigning_is_a_checksum_mismatch(batch: Batch, data: st.DataObject) -> None:
    message = bytearray(encode(batch))
    message[data.draw(st.integers(0, len(message) - 1))] ^= data.draw(st.integers(1, 255))
    with pytest.raises(WireFormatError, match=r"checksum mismatch|unsupported wire version"):
        decode(bytes(message))


def test_batches_of_unique_strings_stay_compact() -> None:
    """Ids and messages that never repeat go to the text column, not one pattern each."""
    events = [
        StoredEvent(i + 1, 1.0 + i, 1.0 + i, None, "logs",
                    orjson.dumps({"level": "info", "msg": f"request {i} took {i * 7 % 300} ms"}))
        for i in range(1000)
    ]  # fmt: skip
    batch = Batch("d", "e", "s", events, [], 1000)
    assert decode(encode(batch)) == batch
    assert len(encode(batch)) * 3 < len(encode(batch, version=1))


def test_a_keyless_stream_uses_a_payload_field_as_its_subject() -> None:
    """Without a key the device id in the payload still groups series: as small as keyed."""
    keyed = sensor_batch(1000)
    events = [dataclasses.replace(e, key=None, topic="plant") for e in keyed.events]
    keyless = dataclasses.replace(keyed, events=events)
    assert decode(encode(keyless)) == keyless
    assert len(encode(keyless)) < len(encode(keyed)) * 1.2

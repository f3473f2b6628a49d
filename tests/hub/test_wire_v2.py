"""Wire v2: dictionaries, signatures, versions; hostile messages are refused with a reason."""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib

import orjson
import pytest
import zstandard

from sync.outbox import Gap, StoredEvent
from sync.wire import (
    Batch,
    WireFormatError,
    decode,
    dictionary_id,
    encode,
    train_dictionary,
)
from sync.wire_bytes import f64, svarint, text, uvarint

KEY = b"k" * 32


def sensor_batch(n: int = 10, first: int = 1, device: str = "pi-1") -> Batch:
    events = [
        StoredEvent(first + i, 1764201600.0 + i * 0.01, 1764201600.004 + i * 0.01, device,
                    f"plant/{device}/temp",
                    orjson.dumps({"device": device, "sensor": "temp", "value": 21.0 + i / 100}))
        for i in range(n)
    ]  # fmt: skip
    return Batch(device, "9f2c51d0a4e3b7c1", "sensors", events, [Gap(0, 0, "max_age", 2.5)],
                 first + n - 1)  # fmt: skip


@pytest.fixture(scope="module")
def dictionary() -> bytes:
    return train_dictionary([sensor_batch(10, first=1 + 10 * i) for i in range(300)], 4096)


def test_default_is_version_2_and_version_1_can_still_be_written() -> None:
    batch = sensor_batch()
    assert encode(batch)[0] == 2
    assert encode(batch, version=1)[0] == 1
    assert decode(encode(batch, version=1)) == decode(encode(batch)) == batch
    with pytest.raises(ValueError, match="cannot encode wire version 3"):
        encode(batch, version=3)
    with pytest.raises(ValueError, match="no dictionaries"):
        encode(batch, version=1, hmac_key=KEY)


def test_a_dictionary_is_found_by_its_id_and_makes_small_batches_smaller(dictionary: bytes) -> None:
    batch = sensor_batch(10, first=5000)
    data = encode(batch, dictionary=dictionary)
    assert data[2:10] == dictionary_id(dictionary)
    assert decode(data, dictionaries={dictionary_id(dictionary): dictionary}) == batch
    assert len(data) < len(encode(batch)) * 0.7


def test_an_unknown_dictionary_is_refused_by_name(dictionary: bytes) -> None:
    data = encode(sensor_batch(), dictionary=dictionary)
    with pytest.raises(
        WireFormatError, match=f"unknown dictionary id {dictionary_id(dictionary).hex()}"
    ):
        decode(data)
    with pytest.raises(WireFormatError, match="this hub knows: 00"):
        decode(data, dictionaries={b"\0" * 8: b"other"})


def test_training_needs_enough_samples() -> None:
    with pytest.raises(ValueError, match="cannot train a dictionary"):
        train_dictionary([sensor_batch(1)])


def keys(device: str) -> bytes | None:
    return KEY if device == "pi-1" else None


def test_a_signed_batch_is_accepted_with_the_devices_key() -> None:
    batch = sensor_batch()
    assert decode(encode(batch, hmac_key=KEY), hmac_key_for=keys) == batch
    assert decode(encode(batch, hmac_key=KEY)) == batch  # a hub without keys ignores the tag
    other = sensor_batch(device="pi-2")
    assert decode(encode(other), hmac_key_for=keys) == other  # pi-2 has no key: unsigned is fine


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode(sensor_batch()), "bad signature: batch of 'pi-1' is not signed"),
        (encode(sensor_batch(), hmac_key=b"wrong"), "bad signature: HMAC does not match"),
        (encode(sensor_batch(), version=1), "version 1, which cannot be signed"),
    ],
)
def test_a_device_with_a_key_must_sign(data: bytes, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        decode(data, hmac_key_for=keys)


def resign(data: bytes) -> bytes:
    return data + struct.pack(">I", zlib.crc32(data))


def test_corruption_and_forgery_are_told_apart() -> None:
    data = bytearray(encode(sensor_batch(), hmac_key=KEY))
    data[-10] ^= 1  # inside the tag: the CRC catches it first
    with pytest.raises(WireFormatError, match="checksum mismatch"):
        decode(bytes(data), hmac_key_for=keys)
    with pytest.raises(WireFormatError, match="bad signature"):
        decode(resign(bytes(data[:-4])), hmac_key_for=keys)


def v2(body: bytes, flags: int = 0, device: str = "device") -> bytes:
    return resign(bytes([2, flags]) + text(device) + body)


NO_TIME = f64(math.nan)  # sent_at unknown
HEADER = text("e") + text("s") + svarint(0) + uvarint(0) + uvarint(0) + NO_TIME


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (v2(b"", flags=0x80), "unknown flag bits 0x80"),
        (resign(bytes([2, 0]) + b"\xff" * 11), "varint longer than 10 bytes"),
        (resign(bytes([2, 0]) + uvarint(2**40) + b"abc"), "needs 1099511627776 bytes"),
        (v2(b"", flags=0x04), "too short for its signature"),
        (v2(b"not zstd", flags=0x01), "body is not valid zstd"),
        (
            v2(text("e") + text("s") + svarint(0) + uvarint(0) + uvarint(10**9)),
            "declares 1000000000 gaps",
        ),
        (v2(HEADER + uvarint(3) + b"[1]"), "column schema is not a list of 4"),
        (v2(HEADER + uvarint(2) + b"[x"), "column schema is not valid JSON"),
        (
            v2(text("e") + text("s") + svarint(0) + uvarint(10**9) + uvarint(0) + NO_TIME),
            "past the limit",
        ),
    ],
)
def test_hostile_messages_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        decode(data, max_size=1 << 20)


def columns(count: int, metas: list[tuple[int, int, int]], planes: bytes = b"") -> bytes:
    schema = orjson.dumps([3, 3, ["k"], [[None, None, 0, [], []]]])
    packed = b"".join(uvarint(m) + svarint(b) + uvarint(w) for m, b, w in metas)
    head = text("e") + text("s") + svarint(count) + uvarint(count) + uvarint(0) + NO_TIME
    return v2(head + uvarint(len(schema)) + schema + packed + planes)


ZERO = [(1, 1, 0), (1, 0, 0), (2, 0, 0), (2, 0, 0), (2, 0, 0), (0, 0, 0), (2, 0, 0), (2, 0, 0)]


def test_a_well_formed_hand_written_block_decodes() -> None:
    batch = decode(columns(3, ZERO))
    assert [e.seq for e in batch.events] == [1, 2, 3]
    assert {e.payload for e in batch.events} == {b"{}"}


@pytest.mark.parametrize(
    ("metas", "planes", "reason"),
    [
        ([*ZERO[:3], (2, 0, 1), *ZERO[4:]], b"\x00", "needs 3 bytes"),  # a short column
        ([*ZERO[:3], (2, 5, 0), *ZERO[4:]], b"", "IndexError"),  # key id out of range
        ([*ZERO[:4], (2, 0, 1), *ZERO[5:]], b"\x00\x00\x07", "IndexError"),  # pattern id
        ([*ZERO[:2], (9, 0, 0), *ZERO[3:]], b"", "column meta out of range"),
        ([*ZERO[:2], (2, 0, 99), *ZERO[3:]], b"", "column meta out of range"),
        (ZERO, b"extra", "5 unexpected trailing bytes"),
    ],
)
def test_mismatched_columns_are_refused(
    metas: list[tuple[int, int, int]], planes: bytes, reason: str
) -> None:
    with pytest.raises(WireFormatError, match=reason):
        decode(columns(3, metas, planes))


def test_a_decompression_bomb_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(
        3, format=zstandard.FORMAT_ZSTD1_MAGICLESS
    )
    bomb = zstandard.ZstdCompressor(compression_params=params).compress(b"\0" * 10_000_000)
    with pytest.raises(WireFormatError, match="decompresses past the 1000000-byte limit"):
        decode(v2(bomb, flags=0x01), max_size=1_000_000)


def test_many_events_in_no_bytes_are_refused() -> None:
    with pytest.raises(WireFormatError, match="past the limit"):
        decode(columns(10**8, ZERO), max_size=1 << 20)


def test_a_small_block_cannot_expand_into_huge_payloads() -> None:
    schema = orjson.dumps([3, 3, ["k"], [[None, None, 0, ["x"], [["y" * 5000]]]]])
    packed = b"".join(uvarint(m) + svarint(b) + uvarint(w) for m, b, w in ZERO)
    head = text("e") + text("s") + svarint(1000) + uvarint(1000) + uvarint(0) + NO_TIME
    data = v2(head + uvarint(len(schema)) + schema + packed)
    assert len(decode(data).events[0].payload) == 5008
    with pytest.raises(WireFormatError, match="patterns expand past the 1000000-byte limit"):
        decode(data, max_size=1_000_000)


def test_large_batches_carry_their_own_statistics_instead_of_a_dictionary(
    dictionary: bytes,
) -> None:
    batch = sensor_batch(300)
    data = encode(batch, dictionary=dictionary)
    assert data[1] & 0x02 == 0
    assert decode(data) == batch


def test_the_send_time_travels_in_version_2_and_is_unknown_in_version_1() -> None:
    batch = dataclasses.replace(sensor_batch(), sent_at=1764201600.125)
    assert decode(encode(batch)).sent_at == 1764201600.125
    assert decode(encode(batch, version=1)).sent_at is None
    assert decode(encode(sensor_batch())).sent_at is None

"""Valid and hostile wire messages for the fuzz tests: every version, dictionary, signature.

Valid messages come from tests/hub/wire_strategies.py; hostile ones are assembled field
by field, so a count, a length or a column width can be set to any boundary value
while the rest of the message stays well-formed and the CRC (and HMAC) stay valid.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass

import orjson
import zstandard
from hypothesis import strategies as st

from sync.outbox import Gap, StoredEvent
from sync.wire import Batch, dictionary_id, encode, train_dictionary
from sync.wire_bytes import f64, svarint, text
from tests.fuzz.mutations import INTERESTING_INTS, uvarint
from tests.hub.wire_strategies import batches

KEY = b"fuzz-key-" * 4
MAX_SIZE = 1 << 20
"""The decode limit the fuzz tests pass (the hub's default is 256 MiB; 1 MiB keeps a
bomb that slips through cheap to notice)."""


@functools.cache
def dictionary() -> bytes:
    """A small trained dictionary (trained once per process: ~0.3 s)."""
    samples = [sensor_batch(10, first=1 + 10 * i) for i in range(120)]
    return train_dictionary(samples, 2048)


def dictionaries() -> dict[bytes, bytes]:
    """The dictionaries the fuzzed hub knows."""
    return {dictionary_id(dictionary()): dictionary()}


def key_for(device: str) -> bytes:
    """Every device signs (as on a hub with a device_keys_file, which refuses keyless
    devices before decoding), so a forged or stripped signature must always fail."""
    return KEY


def sensor_batch(n: int, first: int = 1, device: str = "pi-1") -> Batch:
    """A typical sensor batch: keyed JSON readings on one topic pattern."""
    events = [
        StoredEvent(first + i, 1764201600.0 + i * 0.01, 1764201600.004 + i * 0.01, device,
                    f"plant/{device}/temp",
                    orjson.dumps({"device": device, "sensor": "temp", "value": 21.0 + i / 100}))
        for i in range(n)
    ]  # fmt: skip
    return Batch(device, "9f2c51d0a4e3b7c1", "sensors", events, [Gap(0, 0, "max_age", 2.5)],
                 first + n - 1)  # fmt: skip


@dataclass(frozen=True)
class Encoding:
    """How a valid message was written, so the test knows what the decoder needs."""

    version: int
    level: int
    dictionary: bool
    signed: bool

    def encode(self, batch: Batch) -> bytes:
        """The batch written this way."""
        return encode(
            batch, self.level, version=self.version,
            dictionary=dictionary() if self.dictionary else None,
            hmac_key=KEY if self.signed else None,
        )  # fmt: skip


ENCODINGS = st.sampled_from(
    [
        Encoding(1, 0, False, False), Encoding(1, 3, False, False),
        Encoding(2, 0, False, False), Encoding(2, 3, False, False),
        Encoding(2, 3, True, False), Encoding(2, 3, False, True), Encoding(2, 3, True, True),
        Encoding(2, 0, False, True),
    ]
)  # fmt: skip


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[Encoding, bytes]:
    """A random batch, or a typical sensor batch, in one of the encodings."""
    how = draw(ENCODINGS)
    batch = draw(batches() | st.integers(1, 40).map(sensor_batch))
    return how, how.encode(batch)


# ------------------------------------------------------------------ hostile version 2

HOSTILE_INT = st.sampled_from(INTERESTING_INTS) | st.integers(0, 2**80)


def _v2_frame(flags: int, device: str, body: bytes, signed: bool, dict_id: bytes) -> bytes:
    data = bytes([2, flags]) + dict_id + text(device) + body
    if signed:
        data += hmac.digest(KEY, data, hashlib.sha256)
    return data + struct.pack(">I", zlib.crc32(data))


@st.composite
def hostile_v2_header(draw: st.DrawFn) -> bytes:
    """A version 2 batch header whose counts and numbers are drawn from the boundaries."""
    parts = [text(draw(st.text(max_size=4))), text(draw(st.text(max_size=4)))]
    parts.append(svarint(draw(st.integers(-(2**70), 2**70))))
    parts.append(uvarint(draw(HOSTILE_INT)))  # event count
    gaps = draw(st.sampled_from([0, 1, 2, 2**20, 2**63]))
    parts.append(uvarint(gaps))
    for _ in range(min(gaps, 2)):
        parts += [svarint(draw(st.integers(-5, 2**64))), svarint(draw(st.integers(-5, 2**64))),
                  text("r"), f64(draw(st.floats()))]  # fmt: skip
    parts.append(f64(draw(st.floats())))
    return b"".join(parts)


SCHEMA_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip


@st.composite
def hostile_schema(draw: st.DrawFn) -> bytes:
    """A column schema: mostly the right shape with hostile scales, keys and patterns."""
    if draw(st.integers(0, 4)) == 0:
        raw = _dumps(draw(SCHEMA_VALUES))
    else:
        scale = st.sampled_from([-2, -1, 0, 1, 30, 31, 400, 2**40]) | SCHEMA_VALUES
        keys = st.lists(st.none() | st.text(max_size=3), max_size=4) | SCHEMA_VALUES
        pattern = st.lists(SCHEMA_VALUES, min_size=0, max_size=6)
        raw = _dumps([draw(scale), draw(scale), draw(keys), draw(st.lists(pattern, max_size=3))])
    return uvarint(len(raw)) + raw


def _dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return b"[0,0,[],[]]"


@st.composite
def hostile_columns(draw: st.DrawFn) -> bytes:
    """Eight column metas (mode, base, width) from the boundaries, then some plane bytes."""
    metas = b"".join(
        uvarint(draw(st.sampled_from([0, 1, 2, 3, 2**64])))
        + svarint(draw(st.integers(-(2**70), 2**70)))
        + uvarint(draw(st.sampled_from([0, 1, 2, 3, 4, 8, 9, 16, 17, 2**40])))
        for _ in range(8)
    )
    return metas + draw(st.binary(max_size=64))


@functools.cache
def _compressor(with_dictionary: bool) -> zstandard.ZstdCompressor:
    loaded = zstandard.ZstdCompressionDict(dictionary()) if with_dictionary else None
    params = zstandard.ZstdCompressionParameters.from_level(
        1, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=0
    )
    return zstandard.ZstdCompressor(compression_params=params, dict_data=loaded)


@st.composite
def hostile_v2(draw: st.DrawFn) -> bytes:
    """A whole version 2 message, CRC (and HMAC when flagged) valid, with a hostile body."""
    body = draw(hostile_v2_header()) + draw(hostile_schema()) + draw(hostile_columns())
    flags = draw(st.sampled_from([0, 1, 3, 4, 5, 7, 8, 0x80]))
    dict_id = dictionary_id(dictionary()) if flags & 2 else b""
    if flags & 1:
        body = _compressor(bool(flags & 2)).compress(body)
    return _v2_frame(flags, draw(st.sampled_from(["pi-1", "", "é"])), body, bool(flags & 4),
                     dict_id)  # fmt: skip


# ------------------------------------------------------------------ hostile version 1


def v1_frame(header: bytes, body: bytes, flags: int = 0) -> bytes:
    """A version 1 message around `header` and `body`, CRC valid."""
    data = struct.pack(">BBI", 1, flags, len(header)) + header + body
    return data + struct.pack(">I", zlib.crc32(data))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=9)
    | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@st.composite
def hostile_v1(draw: st.DrawFn) -> bytes:
    """A version 1 message: right keys with wrong types and values, rows of any shape."""
    header = {
        "device": draw(st.sampled_from(["pi-1", 5, None, [], "x" * 40])),
        "epoch": draw(JSON_VALUES), "stream": draw(JSON_VALUES),
        "upto_seq": draw(st.sampled_from([0, 1, -1, 2**63 - 1, 2**64 - 1, 1e300, "7", True])),
        "count": draw(st.sampled_from([0, 1, 2, 10**18, -1, 1.5, "1", None])),
        "gaps": draw(st.lists(JSON_VALUES, max_size=3) | JSON_VALUES),
    }  # fmt: skip
    if draw(st.booleans()):
        header.pop(draw(st.sampled_from(sorted(header))))
    row = st.lists(JSON_VALUES, min_size=6, max_size=9) | JSON_VALUES
    rows = draw(st.lists(row, max_size=4) | JSON_VALUES)
    body = orjson.dumps(rows)
    flags = draw(st.sampled_from([0, 1, 2, 0xFF]))
    if flags & 1:
        body = zstandard.ZstdCompressor(level=1).compress(body)
    return v1_frame(orjson.dumps(header), body, flags)

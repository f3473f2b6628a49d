"""The uplink wire format: one batch of one stream's events, versioned and checksummed.

Every version starts with a version byte and ends with a CRC-32 of the bytes before
it, so the hub can tell which decoder to use and refuse corruption with a reason. The
hub decodes every version a device has ever written (tests/hub/wire_fixtures/ keeps a
sample of each); `encode` writes the newest unless asked for an older one, so an old
device or hub can be emulated.

* Version 1 (sync.wire_v1): JSON header, zstd over a JSON array of rows.
* Version 2 (sync.wire_v2): binary header, columnar body (sync.wire_columnar), optional
  trained zstd dictionary (sync.wire_dictionary) and HMAC-SHA256 per device.

docs/sync-protocol.md documents both byte by byte.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from sync import wire_v1, wire_v2
from sync.wire_dictionary import DICTIONARY_SIZE, dictionary_id, train_dictionary
from sync.wire_types import Batch, WireFormatError
from sync.wire_v2 import KeyLookup

__all__ = [
    "DICTIONARY_SIZE", "MAX_DECOMPRESSED", "VERSION", "VERSIONS", "Ack", "Batch",
    "WireFormatError", "ack_topic", "decode", "dictionary_id", "encode",
    "train_dictionary", "up_topic",
]  # fmt: skip

VERSION = wire_v2.VERSION
VERSIONS = (wire_v1.VERSION, wire_v2.VERSION)
MAX_DECOMPRESSED = 256 * 1024 * 1024
_CRC = struct.Struct(">I")
_MIN_SIZE = 10
_MAX_SEQ = 2**63 - 1  # SQLite's INTEGER range


def encode(
    batch: Batch, level: int = 3, *, version: int = VERSION,
    dictionary: bytes | None = None, hmac_key: bytes | None = None,
) -> bytes:  # fmt: skip
    """Serialize a batch; `level` 0 means no compression.

    `dictionary` (from train_dictionary) and `hmac_key` need version 2.
    """
    if version == wire_v2.VERSION:
        return wire_v2.encode(batch, level, dictionary, hmac_key)
    if version != wire_v1.VERSION:
        raise ValueError(f"cannot encode wire version {version} (known: {VERSIONS})")
    if dictionary is not None or hmac_key is not None:
        raise ValueError("wire version 1 has no dictionaries and no signatures")
    return wire_v1.encode(batch, level)


def decode(
    data: bytes, max_size: int = MAX_DECOMPRESSED, *,
    dictionaries: Mapping[bytes, bytes] | None = None, hmac_key_for: KeyLookup | None = None,
) -> Batch:  # fmt: skip
    """Verify and decode a batch of any known version; WireFormatError says why not.

    `dictionaries` maps dictionary_id(d) to d for every dictionary devices may use;
    `hmac_key_for(device)` returns the device's key, or None when it signs nothing.
    A device with a key must sign: an unsigned or wrongly signed batch is refused.
    """
    if len(data) < _MIN_SIZE:
        raise WireFormatError(f"batch too short ({len(data)} bytes)")
    version = data[0]
    if version not in VERSIONS:
        raise WireFormatError(f"unsupported wire version {version} (this hub reads 1, 2)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise WireFormatError("checksum mismatch: batch corrupted in transit")
    if version == wire_v1.VERSION:
        batch, count = wire_v1.decode(data, max_size)
        _refuse_unsigned_v1(batch.device, hmac_key_for)
    else:
        batch, count = wire_v2.decode(data, max_size, dictionaries, hmac_key_for)
    _check_consistent(batch, count)
    return batch


def _refuse_unsigned_v1(device: str, hmac_key_for: KeyLookup | None) -> None:
    if hmac_key_for is not None and hmac_key_for(device) is not None:
        raise WireFormatError(
            f"bad signature: batch of {device!r} is version 1, which cannot be signed"
        )


def _check_consistent(batch: Batch, count: int) -> None:
    seqs = [e.seq for e in batch.events]
    numbers = [*seqs, batch.upto_seq, *(n for g in batch.gaps for n in (g.first_seq, g.last_seq))]
    if any(not 0 <= n <= _MAX_SEQ for n in numbers):
        raise WireFormatError("a sequence number is outside 0..2**63-1")
    if any(g.first_seq > g.last_seq for g in batch.gaps):
        raise WireFormatError("a gap ends before it starts")
    if len(seqs) != count:
        raise WireFormatError(f"header says {count} events, body holds {len(seqs)}")
    if any(b <= a for a, b in itertools.pairwise(seqs)):
        raise WireFormatError("event sequence numbers are not strictly increasing")
    if seqs and seqs[-1] > batch.upto_seq:
        raise WireFormatError("an event lies past the batch's upto_seq")
    if not all(math.isfinite(e.event_time) and math.isfinite(e.ingest_time) for e in batch.events):
        # SQLite's INSERT OR IGNORE would drop such a row as if it were a duplicate.
        raise WireFormatError("an event time is not a finite number")
    for event in batch.events:
        if event.headers is not None:
            _check_storable(event.headers)


def _check_storable(headers: object) -> None:
    """Headers the store can write back as JSON (orjson stops at 254 levels of nesting)."""
    try:
        orjson.dumps(headers)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise WireFormatError(f"event headers cannot be stored: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Ack:
    """The hub's answer to one batch, published on the device's ack topic."""

    batch_id: str
    stream: str
    epoch: str
    upto_seq: int
    status: str  # "ok" | "rejected"
    reason: str = ""
    committed: int = 0
    duplicates: int = 0

    def to_bytes(self, hmac_key: bytes | None = None) -> bytes:
        """Encode as a small JSON object (acks are rare and tiny; readability wins).

        With the device's key the ack carries `sig`, an HMAC-SHA256 of its other fields:
        a device that signs its batches accepts only signed acks, so nobody who can
        merely publish on its ack topic can make it drop events no hub committed.
        """
        fields: dict[str, object] = {"v": 1, **{f: getattr(self, f) for f in self.__slots__}}
        if hmac_key is not None:
            fields["sig"] = _ack_signature(hmac_key, fields)
        return orjson.dumps(fields)

    @classmethod
    def from_bytes(cls, data: bytes, hmac_key: bytes | None = None) -> Ack:
        """Decode an ack; WireFormatError when it is not one, or not signed by `hmac_key`."""
        try:
            obj = orjson.loads(data)
            fields = {f: obj[f] for f in ("batch_id", "stream", "epoch", "upto_seq", "status")}
            extra = {f: obj[f] for f in ("reason", "committed", "duplicates") if f in obj}
            ack = cls(**fields, **extra)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise WireFormatError(f"not an ack: {exc!r}") from exc
        if hmac_key is not None:
            _check_ack_signature(hmac_key, obj)
        return ack


def _ack_signature(key: bytes, fields: dict[str, object]) -> str:
    unsigned = {name: value for name, value in fields.items() if name != "sig"}
    message = orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)
    return hmac.digest(key, message, hashlib.sha256).hex()


def _check_ack_signature(key: bytes, obj: dict[str, object]) -> None:
    signature = obj.get("sig")
    if not isinstance(signature, str):
        raise WireFormatError("unsigned ack (this device signs its batches: acks must be signed)")
    if not hmac.compare_digest(signature.encode(), _ack_signature(key, obj).encode()):
        raise WireFormatError("ack signature does not match this device's key")


def up_topic(prefix: str, device: str) -> str:
    """Where a device publishes its batches."""
    return f"{prefix}/{device}/up"


def ack_topic(prefix: str, device: str) -> str:
    """Where the hub answers a device."""
    return f"{prefix}/{device}/ack"

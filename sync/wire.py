"""The uplink wire format: one batch of one stream's events, versioned and checksummed.

Layout of version 1 (all integers big-endian), documented in docs/sync-protocol.md:

    offset  size  field
    0       1     version (1)
    1       1     flags (bit 0: body is zstd-compressed)
    2       4     header length H
    6       H     header: JSON object (device, epoch, stream, batch id, seq range, gaps)
    6+H     B     body: events as one JSON array, zstd-compressed when flag 0 is set
    end-4   4     CRC-32 of every byte before it

The version byte comes first so the format can evolve: a hub decodes every version
it has ever written. The checksum lets the hub reject a corrupted batch with a reason
instead of committing garbage.
"""

from __future__ import annotations

import base64
import itertools
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import zstandard

from sync.outbox import Gap, StoredEvent

VERSION = 1
FLAG_ZSTD = 0x01
_PREFIX = struct.Struct(">BBI")
_CRC = struct.Struct(">I")
MAX_DECOMPRESSED = 256 * 1024 * 1024


class WireFormatError(ValueError):
    """A batch that cannot be decoded; the message says why (the hub sends it back)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One stream's events from one device, as the hub commits them."""

    device: str
    epoch: str
    stream: str
    events: Sequence[StoredEvent]
    gaps: Sequence[Gap]
    upto_seq: int

    @property
    def batch_id(self) -> str:
        """Deterministic id: a retried batch has the same id as its first try."""
        first = self.events[0].seq if self.events else self.upto_seq
        return f"{self.epoch}:{self.stream}:{first}-{self.upto_seq}"


def encode(batch: Batch, level: int = 3) -> bytes:
    """Serialize and compress a batch (version 1)."""
    header = orjson.dumps(_header(batch))
    body = orjson.dumps([_event_row(e) for e in batch.events])
    flags = 0
    if level > 0:
        body = zstandard.ZstdCompressor(level=level).compress(body)
        flags |= FLAG_ZSTD
    data = _PREFIX.pack(VERSION, flags, len(header)) + header + body
    return data + _CRC.pack(zlib.crc32(data))


def decode(data: bytes, max_size: int = MAX_DECOMPRESSED) -> Batch:
    """Verify and decode a batch; raise WireFormatError with the reason otherwise."""
    if len(data) < _PREFIX.size + _CRC.size:
        raise WireFormatError(f"batch too short ({len(data)} bytes)")
    version, flags, header_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise WireFormatError(f"unsupported wire version {version} (this hub reads 1)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise WireFormatError("checksum mismatch: batch corrupted in transit")
    header_end = _PREFIX.size + header_len
    if header_end > len(data) - _CRC.size:
        raise WireFormatError("header length runs past the end of the batch")
    header = _loads(data[_PREFIX.size : header_end], "header")
    body = data[header_end : -_CRC.size]
    if flags & FLAG_ZSTD:
        body = _decompress(body, max_size)
    return _batch_from(header, _loads(body, "body"))


def _header(batch: Batch) -> dict[str, Any]:
    return {
        "device": batch.device,
        "epoch": batch.epoch,
        "stream": batch.stream,
        "upto_seq": batch.upto_seq,
        "count": len(batch.events),
        "gaps": [[g.first_seq, g.last_seq, g.reason, g.recorded_at] for g in batch.gaps],
    }


def _event_row(event: StoredEvent) -> list[Any]:
    try:
        payload, binary = event.payload.decode(), 0
    except UnicodeDecodeError:
        payload, binary = base64.b64encode(event.payload).decode(), 1
    return [
        event.seq, event.event_time, event.ingest_time, event.key, event.topic,
        payload, event.headers, binary,
    ]  # fmt: skip


def _decompress(body: bytes, max_size: int) -> bytes:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(body)
        out = reader.read(max_size + 1)
    except zstandard.ZstdError as exc:
        raise WireFormatError(f"body is not valid zstd: {exc}") from exc
    if len(out) > max_size:
        raise WireFormatError(f"body decompresses past the {max_size}-byte limit")
    return bytes(out)


def _loads(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WireFormatError(f"{what} is not valid JSON: {exc}") from exc


def _batch_from(header: Any, rows: Any) -> Batch:
    try:
        events = [_event_from(row) for row in rows]
        gaps = [Gap(int(f), int(last), str(r), float(at)) for f, last, r, at in header["gaps"]]
        batch = Batch(
            str(header["device"]), str(header["epoch"]), str(header["stream"]),
            events, gaps, int(header["upto_seq"]),
        )  # fmt: skip
        count = int(header["count"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WireFormatError(f"malformed batch fields: {exc!r}") from exc
    _check_consistent(batch, count)
    return batch


def _event_from(row: list[Any]) -> StoredEvent:
    seq, event_time, ingest_time, key, topic, payload, headers, binary = row
    raw = base64.b64decode(payload) if binary else str(payload).encode()
    if headers is not None and not isinstance(headers, dict):
        raise TypeError("headers must be an object")
    return StoredEvent(
        int(seq), float(event_time), float(ingest_time),
        None if key is None else str(key), None if topic is None else str(topic),
        raw, headers,
    )  # fmt: skip


_MAX_SEQ = 2**63 - 1  # SQLite's INTEGER range


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

    def to_bytes(self) -> bytes:
        """Encode as a small JSON object (acks are rare and tiny; readability wins)."""
        return orjson.dumps({"v": 1, **{f: getattr(self, f) for f in self.__slots__}})

    @classmethod
    def from_bytes(cls, data: bytes) -> Ack:
        """Decode an ack; WireFormatError when it is not one."""
        try:
            obj = orjson.loads(data)
            fields = {f: obj[f] for f in ("batch_id", "stream", "epoch", "upto_seq", "status")}
            extra = {f: obj[f] for f in ("reason", "committed", "duplicates") if f in obj}
            return cls(**fields, **extra)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise WireFormatError(f"not an ack: {exc!r}") from exc


def up_topic(prefix: str, device: str) -> str:
    """Where a device publishes its batches."""
    return f"{prefix}/{device}/up"


def ack_topic(prefix: str, device: str) -> str:
    """Where the hub answers a device."""
    return f"{prefix}/{device}/ack"

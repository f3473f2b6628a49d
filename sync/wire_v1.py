"""Wire version 1: a JSON header and a zstd-compressed JSON array of event rows.

Layout (all integers big-endian), kept byte for byte so that every batch a version 1
device ever sent still decodes (tests/hub/wire_fixtures/ holds samples):

    offset  size  field
    0       1     version (1)
    1       1     flags (bit 0: body is zstd-compressed)
    2       4     header length H
    6       H     header: JSON object (device, epoch, stream, batch id, seq range, gaps)
    6+H     B     body: events as one JSON array, zstd-compressed when flag 0 is set
    end-4   4     CRC-32 of every byte before it
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import orjson
import zstandard

from sync.outbox import Gap, StoredEvent
from sync.wire_types import Batch, WireFormatError

VERSION = 1
FLAG_ZSTD = 0x01
_PREFIX = struct.Struct(">BBI")
_CRC = struct.Struct(">I")


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


def decode(data: bytes, max_size: int) -> tuple[Batch, int]:
    """The batch and the event count its header declares (checked by the caller).

    The caller has verified the CRC and the version byte.
    """
    _, flags, header_len = _PREFIX.unpack_from(data)
    header_end = _PREFIX.size + header_len
    if header_end > len(data) - _CRC.size:
        raise WireFormatError("header length runs past the end of the batch")
    header = _loads(data[_PREFIX.size : header_end], "header")
    body = data[header_end : -_CRC.size]
    if flags & FLAG_ZSTD:
        body = decompress(body, max_size)
    return _batch_from(header, _loads(body, "body"))


def decompress(body: bytes, max_size: int, dictionary: Any = None) -> bytes:
    """zstd-decompress at most `max_size` bytes; refuse anything larger (a bomb)."""
    try:
        decompressor = zstandard.ZstdDecompressor(dict_data=dictionary)
        out = decompressor.stream_reader(body).read(max_size + 1)
    except zstandard.ZstdError as exc:
        raise WireFormatError(f"body is not valid zstd: {exc}") from exc
    if len(out) > max_size:
        raise WireFormatError(f"body decompresses past the {max_size}-byte limit")
    return bytes(out)


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


def _loads(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WireFormatError(f"{what} is not valid JSON: {exc}") from exc


def _batch_from(header: Any, rows: Any) -> tuple[Batch, int]:
    try:
        events = [_event_from(row) for row in rows]
        gaps = [Gap(int(f), int(last), str(r), float(at)) for f, last, r, at in header["gaps"]]
        batch = Batch(
            str(header["device"]), str(header["epoch"]), str(header["stream"]),
            events, gaps, int(header["upto_seq"]),
        )  # fmt: skip
        return batch, int(header["count"])
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise WireFormatError(f"malformed batch fields: {exc!r}") from exc


def _event_from(row: list[Any]) -> StoredEvent:
    seq, event_time, ingest_time, key, topic, payload, headers, binary = row
    if not isinstance(payload, str) or not all(_text_or_none(v) for v in (key, topic)):
        raise TypeError("key, topic and payload must be strings")
    raw = base64.b64decode(payload) if binary else payload.encode()
    if headers is not None and not isinstance(headers, dict):
        raise TypeError("headers must be an object")
    return StoredEvent(int(seq), float(event_time), float(ingest_time), key, topic, raw, headers)


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)

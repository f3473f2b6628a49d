"""Wire version 2: a binary header, a columnar zstd body, optional dictionary and HMAC.

Layout (docs/sync-protocol.md has the full description):

    offset  size  field
    0       1     version (2)
    1       1     flags: bit 0 body is zstd, bit 1 dictionary id follows, bit 2 HMAC tag
    2       8     dictionary id (only with bit 1)
    .       v     device id: uvarint length, UTF-8 (in clear: it selects the HMAC key)
    .       B     body, zstd-compressed without its magic number when bit 0 is set:
                  the header (sync.wire_header), then the column block
                  (sync.wire_columnar)
    end-36  32    HMAC-SHA256 of every byte before it (only with bit 2)
    end-4   4     CRC-32 of every byte before it, big-endian

The CRC covers the tag too, so a corrupted message is reported as corrupted, and a
message whose CRC holds but whose tag does not is reported as a bad signature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
import zlib
from collections.abc import Callable, Mapping

import zstandard

from sync import wire_bytes
from sync.wire_bytes import Reader
from sync.wire_columnar import decode_events, encode_events
from sync.wire_dictionary import compression_dict, decompression_dict, dictionary_id
from sync.wire_header import decode_header, encode_header
from sync.wire_types import Batch, WireFormatError

VERSION = 2
FLAG_ZSTD, FLAG_DICTIONARY, FLAG_HMAC = 0x01, 0x02, 0x04
_KNOWN_FLAGS = FLAG_ZSTD | FLAG_DICTIONARY | FLAG_HMAC
TAG_SIZE = 32
_CRC = struct.Struct(">I")
BLOCK_PER_PLANE = 256  # from this many events on, every byte plane gets its own zstd block
_STRATEGY = zstandard.STRATEGY_LAZY2
KeyLookup = Callable[[str], bytes | None]


def encode(
    batch: Batch, level: int = 3, dictionary: bytes | None = None,
    hmac_key: bytes | None = None,
) -> bytes:  # fmt: skip
    """Serialize a batch as version 2; see the module docstring for the layout.

    A dictionary is used for batches below BLOCK_PER_PLANE events only: a large batch
    carries its own statistics, and a dictionary made W-wire at 1,000 events 5 % larger.
    """
    flags = FLAG_ZSTD if level > 0 else 0
    prefix = bytearray([VERSION, 0])
    if dictionary is not None and level > 0 and len(batch.events) < BLOCK_PER_PLANE:
        flags |= FLAG_DICTIONARY
        prefix += dictionary_id(dictionary)
    if hmac_key is not None:
        flags |= FLAG_HMAC
    prefix[1] = flags
    parts = [encode_header(batch), *encode_events(batch.events)]
    used = dictionary if flags & FLAG_DICTIONARY else None
    body = _compress(parts, level, used, len(batch.events)) if level > 0 else b"".join(parts)
    data = bytes(prefix) + wire_bytes.text(batch.device) + body
    if hmac_key is not None:
        data += hmac.digest(hmac_key, data, hashlib.sha256)
    return data + _CRC.pack(zlib.crc32(data))


def _compress(parts: list[bytes], level: int, dictionary: bytes | None, events: int) -> bytes:
    """One zstd frame; a large batch gets one block per part, so one entropy table each.

    The strategy is at least lazy2: the fast strategies of levels 1-4 reuse the previous
    block's entropy table, which undoes the point of one block per byte plane (W-wire at
    batch 1000: 3.9 B/event with dfast, 3.5 with lazy2, at the same speed).
    """
    strategy = zstandard.ZstdCompressionParameters.from_level(level).strategy
    params = zstandard.ZstdCompressionParameters.from_level(
        level, format=zstandard.FORMAT_ZSTD1_MAGICLESS, strategy=max(strategy, _STRATEGY),
        write_content_size=0, write_checksum=0, write_dict_id=0,
    )  # fmt: skip
    loaded = None if dictionary is None else compression_dict(dictionary, level)
    compressor = zstandard.ZstdCompressor(compression_params=params, dict_data=loaded)
    if events < BLOCK_PER_PLANE:
        return compressor.compress(b"".join(parts))
    stream = compressor.compressobj()
    chunks = []
    for part in parts:
        if part:
            chunks += [stream.compress(part), stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)]
    chunks.append(stream.flush())
    return b"".join(chunks)


# ------------------------------------------------------------------ decoding


def decode(
    data: bytes, max_size: int, dictionaries: Mapping[bytes, bytes] | None,
    hmac_key_for: KeyLookup | None,
) -> tuple[Batch, int]:  # fmt: skip
    """The batch and its declared event count. The caller has checked version and CRC."""
    reader = Reader(data[: -_CRC.size], "batch")
    flags = reader.take(2)[1]
    if flags & ~_KNOWN_FLAGS:
        raise WireFormatError(f"unknown flag bits {flags & ~_KNOWN_FLAGS:#04x} in a v2 batch")
    wanted = reader.take(8) if flags & FLAG_DICTIONARY else None
    device = reader.text()
    body_end = len(data) - _CRC.size - (TAG_SIZE if flags & FLAG_HMAC else 0)
    if body_end < reader.pos:
        raise WireFormatError("batch too short for its signature")
    _verify_signature(data, body_end, flags, device, hmac_key_for)
    body = data[reader.pos : body_end]
    if flags & FLAG_ZSTD:
        body = _decompress(body, max_size, _dictionary(wanted, dictionaries))
    elif len(body) > max_size:
        raise WireFormatError(f"body is past the {max_size}-byte limit")
    inner = Reader(body, "body")
    batch, count = decode_header(inner, device)
    events = decode_events(inner, count, max_size)
    return dataclasses.replace(batch, events=events), count


def _verify_signature(
    data: bytes, body_end: int, flags: int, device: str, hmac_key_for: KeyLookup | None
) -> None:
    """Refuse the batch when the hub holds a key for its device and the tag does not match."""
    key = None if hmac_key_for is None else hmac_key_for(device)
    if key is None:
        return
    if not flags & FLAG_HMAC:
        raise WireFormatError(f"bad signature: batch of {device!r} is not signed")
    expected = hmac.digest(key, data[:body_end], hashlib.sha256)
    if not hmac.compare_digest(expected, data[body_end : body_end + TAG_SIZE]):
        raise WireFormatError(f"bad signature: HMAC does not match the key of {device!r}")


def _dictionary(
    wanted: bytes | None, dictionaries: Mapping[bytes, bytes] | None
) -> zstandard.ZstdCompressionDict | None:
    if wanted is None:
        return None
    known = dictionaries or {}
    if wanted not in known:
        names = ", ".join(sorted(k.hex() for k in known)) or "none"
        raise WireFormatError(f"unknown dictionary id {wanted.hex()} (this hub knows: {names})")
    return decompression_dict(known[wanted])


def _decompress(
    body: bytes, max_size: int, dictionary: zstandard.ZstdCompressionDict | None
) -> bytes:
    """Decompress at most `max_size` bytes; refuse anything larger (a bomb)."""
    try:
        decompressor = zstandard.ZstdDecompressor(
            dict_data=dictionary, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        )
        reader = decompressor.stream_reader(body)
        chunks, size = [], 0
        while size <= max_size:
            chunk = reader.read(max_size + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except zstandard.ZstdError as exc:
        raise WireFormatError(f"body is not valid zstd: {exc}") from exc
    if size > max_size:
        raise WireFormatError(f"body decompresses past the {max_size}-byte limit")
    return b"".join(chunks)

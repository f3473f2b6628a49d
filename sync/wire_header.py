"""Wire version 2's batch header: what the hub needs besides the events, in binary.

Layout (varints as in sync.wire_bytes; strings are a uvarint length then UTF-8):

    epoch (string), stream (string), upto_seq (signed varint), event count (uvarint),
    gap count (uvarint), then per gap: first_seq, last_seq (signed varints),
    reason (string), recorded_at (8-byte little-endian double); then sent_at (8-byte
    little-endian double, the device clock at encoding; NaN when unknown)

The device id is not here: it travels in clear before the body, because the hub needs
it to choose the HMAC key before it decompresses anything. The rest is compressed with
the events, so a trained dictionary learns a device's epoch and stream names too.
"""

from __future__ import annotations

import math

from sync import wire_bytes
from sync.outbox import Gap
from sync.wire_bytes import Reader
from sync.wire_types import Batch, WireFormatError

_MIN_GAP_BYTES = 11  # first, last, reason length (1 byte each at least) + recorded_at


def encode_header(batch: Batch) -> bytes:
    """The header of a batch (without its device)."""
    fields = [
        wire_bytes.text(batch.epoch), wire_bytes.text(batch.stream),
        wire_bytes.svarint(batch.upto_seq), wire_bytes.uvarint(len(batch.events)),
        wire_bytes.uvarint(len(batch.gaps)),
    ]  # fmt: skip
    for gap in batch.gaps:
        fields += [
            wire_bytes.svarint(gap.first_seq), wire_bytes.svarint(gap.last_seq),
            wire_bytes.text(gap.reason), wire_bytes.f64(gap.recorded_at),
        ]  # fmt: skip
    fields.append(wire_bytes.f64(math.nan if batch.sent_at is None else batch.sent_at))
    return b"".join(fields)


def decode_header(reader: Reader, device: str) -> tuple[Batch, int]:
    """A batch without events, and the event count the header declares."""
    epoch, stream = reader.text(), reader.text()
    upto_seq, count, gap_count = reader.svarint(), reader.uvarint(), reader.uvarint()
    if gap_count > reader.remaining // _MIN_GAP_BYTES:
        raise WireFormatError(f"header declares {gap_count} gaps, too many for its size")
    gaps = [
        Gap(reader.svarint(), reader.svarint(), reader.text(), reader.f64())
        for _ in range(gap_count)
    ]
    sent_at = reader.f64()
    known = None if math.isnan(sent_at) else sent_at
    return Batch(device, epoch, stream, [], gaps, upto_seq, known), count

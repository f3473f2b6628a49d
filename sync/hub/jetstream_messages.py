"""How batches become JetStream messages: subjects, headers and message ids.

This is the contract for central consumers (docs/hub-jetstream.md):

    <prefix>.<device>.<stream>.<key>     one event (granularity event)
    <prefix>.<device>.<stream>._batch    a slice of one batch as JSON lines (granularity batch)
    <prefix>.<device>.<stream>._gap      events the device dropped before upload

Device, stream and key become single subject tokens: characters other than letters,
digits, `-` and `_` turn into `_`, a missing key is `_`, and a key whose token starts
with `_` gets one more, so `_batch` and `_gap` are never an event's subject. Tokens may
collide (`a.b` and `a_b`); the headers always carry the exact values.

The `Nats-Msg-Id` is built from the raw (device, epoch, stream, seq), so JetStream drops
a retried or twice-committed event within the stream's duplicate window.
"""

from __future__ import annotations

import base64
import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import orjson

from sync.outbox import Gap, StoredEvent
from sync.wire import Batch

MSG_ID: Final = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
H_DEVICE: Final = "Edgestream-Device"
H_EPOCH: Final = "Edgestream-Epoch"
H_STREAM: Final = "Edgestream-Stream"
H_SEQ: Final = "Edgestream-Seq"
H_FIRST_SEQ: Final = "Edgestream-First-Seq"
H_LAST_SEQ: Final = "Edgestream-Last-Seq"

_UNSAFE_TOKEN: Final = re.compile(r"[^A-Za-z0-9_-]")
# Printable ASCII stays readable in a header; `%`, spaces, control and non-ASCII
# characters are percent-encoded because NATS strips and rewrites them.
_HEADER_SAFE: Final = "".join(c for c in string.printable if c not in "% \t\n\r\x0b\x0c")


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to publish, and how many events of its batch it carries."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    events: int

    @property
    def size(self) -> int:
        """Bytes the server counts against max_payload (headers plus body)."""
        header_bytes = sum(len(k) + len(v) + 4 for k, v in self.headers.items())
        return len(self.payload) + header_bytes + 12


def token(text: str) -> str:
    """`text` as one subject token (never empty, never `.`, `*` or `>`)."""
    return _UNSAFE_TOKEN.sub("_", text) or "_"


def key_token(key: str | None) -> str:
    """The subject token of an event key; `_` alone means no key."""
    if key is None:
        return "_"
    cleaned = token(key)
    return "_" + cleaned if cleaned.startswith("_") else cleaned


def header_text(text: str) -> str:
    """A header value NATS carries unchanged; decode with urllib.parse.unquote."""
    return quote(text, safe=_HEADER_SAFE)


def base_subject(prefix: str, batch: Batch) -> str:
    """`<prefix>.<device>.<stream>`: every message of one device stream starts so."""
    return f"{prefix}.{token(batch.device)}.{token(batch.stream)}"


def _identity(batch: Batch) -> dict[str, str]:
    return {H_DEVICE: batch.device, H_EPOCH: batch.epoch, H_STREAM: batch.stream}


def event_message(prefix: str, batch: Batch, event: StoredEvent) -> OutMessage:
    """One event as one message, deduplicated by its (device, epoch, stream, seq)."""
    headers = {
        MSG_ID: f"{batch.device}/{batch.epoch}/{batch.stream}/{event.seq}",
        **_identity(batch),
        H_SEQ: str(event.seq),
        "Edgestream-Event-Time": repr(event.event_time),
        "Edgestream-Ingest-Time": repr(event.ingest_time),
    }
    if event.key is not None:
        headers["Edgestream-Key"] = header_text(event.key)
    if event.topic is not None:
        headers["Edgestream-Topic"] = header_text(event.topic)
    if event.headers:
        headers["Edgestream-Headers"] = orjson.dumps(event.headers).decode()
    subject = f"{base_subject(prefix, batch)}.{key_token(event.key)}"
    return OutMessage(subject, event.payload, headers, 1)


def gap_message(prefix: str, batch: Batch, gap: Gap) -> OutMessage:
    """An explicit record of events the device dropped (retention) before upload.

    The id holds both ends: a device merges new drops into its last gap and resends
    it longer, and that longer record must not be dropped as a duplicate.
    """
    ident = f"{batch.device}/{batch.epoch}/{batch.stream}/gap/{gap.first_seq}-{gap.last_seq}"
    headers = {
        MSG_ID: ident,
        **_identity(batch),
        H_FIRST_SEQ: str(gap.first_seq),
        H_LAST_SEQ: str(gap.last_seq),
        "Edgestream-Gap-Reason": header_text(gap.reason),
        "Edgestream-Recorded-At": repr(gap.recorded_at),
    }
    return OutMessage(f"{base_subject(prefix, batch)}._gap", b"", headers, 0)


def event_line(event: StoredEvent) -> bytes:
    """One event as one JSON line of a `_batch` message (binary payloads in base64)."""
    row: dict[str, Any] = {
        "seq": event.seq, "event_time": event.event_time, "ingest_time": event.ingest_time,
        "key": event.key, "topic": event.topic, "headers": event.headers,
    }  # fmt: skip
    try:
        row["payload"] = event.payload.decode()
    except UnicodeDecodeError:
        row["payload_b64"] = base64.b64encode(event.payload).decode()
    return orjson.dumps(row) + b"\n"


def batch_messages(
    prefix: str, batch: Batch, events: Sequence[StoredEvent], max_size: int
) -> Iterator[OutMessage]:
    """`events` as `_batch` messages of JSON lines, each under `max_size` bytes.

    A batch is sliced because a device batch may exceed the server's max_payload;
    each slice is deduplicated by its own seq range.
    """
    lines: list[bytes] = []
    size = 0
    first = 0
    for event in events:
        line = event_line(event)
        if lines and size + len(line) + 512 > max_size:
            yield _slice(prefix, batch, events[first : first + len(lines)], lines)
            first, lines, size = first + len(lines), [], 0
        lines.append(line)
        size += len(line)
    if lines:
        yield _slice(prefix, batch, events[first:], lines)


def _slice(
    prefix: str, batch: Batch, events: Sequence[StoredEvent], lines: list[bytes]
) -> OutMessage:
    low, high = events[0].seq, events[-1].seq
    headers = {
        MSG_ID: f"{batch.device}/{batch.epoch}/{batch.stream}/batch/{low}-{high}",
        **_identity(batch),
        H_FIRST_SEQ: str(low),
        H_LAST_SEQ: str(high),
        "Edgestream-Count": str(len(events)),
    }
    return OutMessage(
        f"{base_subject(prefix, batch)}._batch", b"".join(lines), headers, len(events)
    )

"""Plain records that cross the boundary between the queue's threads and the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sync.outbox import StoredEvent

# Bytes charged per event on top of its fields: the row header, the key of the
# WITHOUT ROWID b-tree and the times. It keeps `max_bytes` close to the file size.
ROW_OVERHEAD = 40


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event handed to the queue, before it has a sequence number."""

    event_time: float
    ingest_time: float
    key: str | None
    topic: str | None
    payload: bytes
    headers: str | None = None  # JSON object text, kept as text so it is stored as is

    @property
    def size(self) -> int:
        """Bytes this event counts against its stream's `max_bytes`."""
        return event_size(self.payload, self.key, self.topic, self.headers)


def encode_payload(fields: Any) -> bytes:
    """JSON bytes for an event that will wait in memory (a batch awaiting its commit).

    orjson returns its 4 KiB working buffer as the bytes object; joining copies the
    text into an object of its own size, so 5,000 pending small events hold 0.5 MB,
    not 20 MB.
    """
    return b"".join((orjson.dumps(fields), b""))


def event_size(payload: bytes, key: str | None, topic: str | None, headers: str | None) -> int:
    """The one formula for an event's footprint, shared by appends and deletes."""
    size = len(payload) + ROW_OVERHEAD
    for text in (key, topic, headers):
        if text:
            size += len(text.encode())
    return size


SQL_EVENT_SIZE = (
    f"(length(payload) + {ROW_OVERHEAD}"
    " + coalesce(length(CAST(key AS BLOB)), 0)"
    " + coalesce(length(CAST(topic AS BLOB)), 0)"
    " + coalesce(length(CAST(headers AS BLOB)), 0))"
)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Retention of one stream: how much it may hold and what happens when it is full."""

    max_bytes: int
    max_age: float
    overflow: str = "drop_oldest"  # drop_oldest | drop_newest | block


@dataclass(frozen=True, slots=True)
class InflightMark:
    """An MQTT message id stored with the event it carried (see agent/sources/mqtt.py).

    After a crash between commit and acknowledgement the broker redelivers the
    message with the same id; the mark lets the source recognise it and ack it
    without storing it twice.
    """

    source: str
    mid: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class CursorInfo:
    """One consumer's position in a stream."""

    consumer: str
    position: int
    active: bool


@dataclass(frozen=True, slots=True)
class StreamStats:
    """What `edgestream queue` prints for a stream."""

    name: str
    depth: int
    bytes: int
    last_seq: int
    oldest_ingest_time: float | None
    oldest_unsent_time: float | None
    cursors: tuple[CursorInfo, ...]
    counters: dict[str, int]


__all__ = [
    "SQL_EVENT_SIZE",
    "CursorInfo",
    "InflightMark",
    "NewEvent",
    "StoredEvent",
    "StreamLimits",
    "StreamStats",
    "event_size",
]

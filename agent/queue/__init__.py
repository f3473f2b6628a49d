"""The durable queue: named streams of events in one SQLite file (WAL, group commit)."""

from agent.queue.durable import DATABASE_NAME, DurableQueue
from agent.queue.errors import CommitFailedError, QueueClosedError, QueueError, UnknownStreamError
from agent.queue.records import (
    InflightMark,
    NewEvent,
    StreamLimits,
    StreamStats,
    encode_payload,
)
from agent.queue.streams import DEADLETTER_STREAM
from agent.queue.transaction import WriteTx

__all__ = [
    "DATABASE_NAME",
    "DEADLETTER_STREAM",
    "CommitFailedError",
    "DurableQueue",
    "InflightMark",
    "NewEvent",
    "QueueClosedError",
    "QueueError",
    "StreamLimits",
    "StreamStats",
    "UnknownStreamError",
    "WriteTx",
    "encode_payload",
]

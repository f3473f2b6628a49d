"""The republish sink's to-do list, kept in the central store's own transactions.

When republishing is on, every event a commit adds (never a duplicate) also gets a
row in `republish_outbox`, in the same transaction; the sink publishes rows in id
order and deletes them once the broker acknowledged them. A hub crash in between
republishes those events again: MQTT consumers get each event at least once, and each
message names its (device, epoch, stream, seq) so they can drop a repeat.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from sync.outbox import StoredEvent
from sync.wire import Batch

DDL = """CREATE TABLE IF NOT EXISTS republish_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, epoch TEXT NOT NULL,
    stream TEXT NOT NULL, seq INTEGER NOT NULL)"""


@dataclass(frozen=True, slots=True)
class Pending:
    """One event waiting to be republished, and where it came from."""

    id: int
    device: str
    epoch: str
    stream: str
    event: StoredEvent


def stored_seqs(conn: sqlite3.Connection, batch: Batch) -> set[int]:
    """Sequence numbers of the batch already in the store (read before inserting it)."""
    if not batch.events:
        return set()
    rows = conn.execute(
        "SELECT seq FROM events WHERE device = ? AND epoch = ? AND stream = ?"
        " AND seq BETWEEN ? AND ?",
        (batch.device, batch.epoch, batch.stream, batch.events[0].seq, batch.events[-1].seq),
    )
    return {seq for (seq,) in rows}


def enqueue(conn: sqlite3.Connection, batch: Batch, already: set[int]) -> None:
    """Queue the batch's new events (those not in `already`) for republishing."""
    conn.executemany(
        "INSERT INTO republish_outbox (device, epoch, stream, seq) VALUES (?, ?, ?, ?)",
        [
            (batch.device, batch.epoch, batch.stream, e.seq)
            for e in batch.events
            if e.seq not in already
        ],
    )


def pending(conn: sqlite3.Connection, limit: int) -> list[Pending]:
    """The oldest `limit` events to republish, with their stored content."""
    rows = conn.execute(
        "SELECT o.id, o.device, o.epoch, o.stream, e.seq, e.event_time, e.ingest_time, e.key,"
        " e.topic, e.payload FROM republish_outbox o JOIN events e"
        " ON e.device = o.device AND e.epoch = o.epoch AND e.stream = o.stream AND e.seq = o.seq"
        " ORDER BY o.id LIMIT ?",
        (limit,),
    )
    return [
        Pending(ident, device, epoch, stream, StoredEvent(seq, at, ingest, key, topic, payload))
        for ident, device, epoch, stream, seq, at, ingest, key, topic, payload in rows
    ]


def done(conn: sqlite3.Connection, upto_id: int) -> None:
    """Forget every republished row up to `upto_id`."""
    conn.execute("DELETE FROM republish_outbox WHERE id <= ?", (upto_id,))

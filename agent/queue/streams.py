"""The writer thread's in-memory view of each stream's counters.

`next_seq` and `bytes` live in memory on the writer thread so that an append costs
no extra query; they are written back to the `streams` table in the same transaction
as the rows they describe, and reloaded from it after a failed commit.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from agent.queue.records import StreamLimits

DEADLETTER_STREAM = "_deadletter"
DEADLETTER_LIMITS = StreamLimits(max_bytes=16 * 1024 * 1024, max_age=30 * 86400.0)


@dataclass(slots=True)
class StreamState:
    """Mutable counters of one stream, owned by the writer thread."""

    id: int
    name: str
    next_seq: int
    bytes: int
    limits: StreamLimits


def load_streams(
    conn: sqlite3.Connection, limits: dict[str, StreamLimits]
) -> dict[str, StreamState]:
    """Create missing stream rows and return the state of every configured stream."""
    states: dict[str, StreamState] = {}
    for name, stream_limits in limits.items():
        conn.execute(
            "INSERT OR IGNORE INTO streams(name, created_at) VALUES (?, ?)", (name, time.time())
        )
        row = conn.execute(
            "SELECT id, next_seq, bytes FROM streams WHERE name = ?", (name,)
        ).fetchone()
        states[name] = StreamState(row[0], name, row[1], row[2], stream_limits)
    return states


def reload_counters(conn: sqlite3.Connection, states: dict[str, StreamState]) -> None:
    """Bring the in-memory counters back to what the database holds (after a rollback).

    A stream defined by the rolled-back transaction (a config reload) has no row any
    more and is forgotten; the reload that defined it fails and can be retried.
    """
    for name, state in list(states.items()):
        row = conn.execute(
            "SELECT next_seq, bytes FROM streams WHERE id = ?", (state.id,)
        ).fetchone()
        if row is None:
            del states[name]
        else:
            state.next_seq, state.bytes = row[0], row[1]


def save_counters(conn: sqlite3.Connection, states: list[StreamState]) -> None:
    """Write the counters of the streams a transaction touched."""
    conn.executemany(
        "UPDATE streams SET next_seq = ?, bytes = ? WHERE id = ?",
        [(s.next_seq, s.bytes, s.id) for s in states],
    )

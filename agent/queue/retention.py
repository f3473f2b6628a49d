"""Housekeeping on the writer thread: delete what every consumer has read, enforce limits.

Runs inside a group transaction, so a drop, its gap record and its counter commit
together or not at all. Events are examined oldest first in bounded chunks, so a
large backlog never has to fit in memory.
"""

from __future__ import annotations

import sqlite3
import time

from agent.queue.records import SQL_EVENT_SIZE
from agent.queue.streams import StreamState
from agent.queue.transaction import WriteTx

_CHUNK = 2000


def min_active_cursor(conn: sqlite3.Connection, state: StreamState) -> int | None:
    """The smallest position among the stream's active consumers, or None if it has none."""
    row = conn.execute(
        "SELECT min(position), count(*) FROM cursors WHERE stream_id = ? AND active = 1",
        (state.id,),
    ).fetchone()
    return None if row[1] == 0 else int(row[0])


def delete_consumed(tx: WriteTx, conn: sqlite3.Connection, state: StreamState) -> int:
    """Delete events every active consumer has acknowledged; return how many went."""
    upto = min_active_cursor(conn, state)
    if upto is None:
        return 0
    count, size = conn.execute(
        f"SELECT count(*), coalesce(sum({SQL_EVENT_SIZE}), 0) FROM events"
        " WHERE stream_id = ? AND seq <= ?",
        (state.id, upto),
    ).fetchone()
    if count:
        tx.stream(state.name)
        conn.execute("DELETE FROM events WHERE stream_id = ? AND seq <= ?", (state.id, upto))
        state.bytes -= size
    conn.execute("DELETE FROM gaps WHERE stream_id = ? AND last_seq <= ?", (state.id, upto))
    return int(count)


def enforce_max_bytes(tx: WriteTx, conn: sqlite3.Connection, state: StreamState) -> int:
    """With `drop_oldest`, drop the oldest events until the stream fits; return the count."""
    if state.limits.overflow != "drop_oldest" or state.bytes <= state.limits.max_bytes:
        return 0
    excess = state.bytes - state.limits.max_bytes
    cutoff, count, size = _prefix_covering(conn, state, excess)
    return _drop_prefix(tx, conn, state, cutoff, count, size, "max_bytes")


def enforce_max_age(
    tx: WriteTx, conn: sqlite3.Connection, state: StreamState, now: float | None = None
) -> int:
    """Drop events ingested longer than `max_age` ago (oldest first); return the count."""
    oldest_allowed = (time.time() if now is None else now) - state.limits.max_age
    oldest = conn.execute(
        "SELECT ingest_time FROM events WHERE stream_id = ? ORDER BY seq LIMIT 1", (state.id,)
    ).fetchone()
    if oldest is None or oldest[0] >= oldest_allowed:
        return 0
    cutoff, count, size = _prefix_older_than(conn, state, oldest_allowed)
    return _drop_prefix(tx, conn, state, cutoff, count, size, "max_age")


def _drop_prefix(
    tx: WriteTx,
    conn: sqlite3.Connection,
    state: StreamState,
    cutoff: int | None,
    count: int,
    size: int,
    reason: str,
) -> int:
    if cutoff is None or count == 0:
        return 0
    first = conn.execute("SELECT min(seq) FROM events WHERE stream_id = ?", (state.id,)).fetchone()[
        0
    ]
    tx.stream(state.name)
    conn.execute("DELETE FROM events WHERE stream_id = ? AND seq <= ?", (state.id, cutoff))
    state.bytes -= size
    tx.add_gap(state.name, first, cutoff, reason)
    tx.incr(state.name, f"dropped.{reason}", count)
    return count


def _prefix_covering(
    conn: sqlite3.Connection, state: StreamState, excess: int
) -> tuple[int | None, int, int]:
    """The shortest oldest-first prefix whose size covers `excess` bytes."""
    cutoff, count, size, after = None, 0, 0, 0
    while size < excess:
        rows = _chunk(conn, state, after)
        if not rows:
            break
        for seq, _ingest, row_size in rows:
            cutoff, count, size = seq, count + 1, size + row_size
            if size >= excess:
                break
        after = rows[-1][0]
    return cutoff, count, size


def _prefix_older_than(
    conn: sqlite3.Connection, state: StreamState, oldest_allowed: float
) -> tuple[int | None, int, int]:
    """The oldest-first prefix whose events were all ingested before `oldest_allowed`."""
    cutoff, count, size, after = None, 0, 0, 0
    while True:
        rows = _chunk(conn, state, after)
        for seq, ingest_time, row_size in rows:
            if ingest_time >= oldest_allowed:
                return cutoff, count, size
            cutoff, count, size = seq, count + 1, size + row_size
        if len(rows) < _CHUNK:
            return cutoff, count, size
        after = rows[-1][0]


def _chunk(
    conn: sqlite3.Connection, state: StreamState, after: int
) -> list[tuple[int, float, int]]:
    return conn.execute(
        f"SELECT seq, ingest_time, {SQL_EVENT_SIZE} FROM events"
        " WHERE stream_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (state.id, after, _CHUNK),
    ).fetchall()

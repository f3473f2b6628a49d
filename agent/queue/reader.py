"""Read-only queries of the queue, run on a reader thread beside the writer.

WAL mode lets these run while the writer commits: a consumer reading a backlog never
delays ingest, and every read is bounded (by count and bytes), so a backlog of millions
streams from disk instead of landing in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from agent.queue.records import SQL_EVENT_SIZE, CursorInfo, StreamStats
from sync.outbox import Gap, OutboxBatch, StoredEvent

T = TypeVar("T")

_NO_END = 2**63 - 1
"""Largest SQLite integer: the upper bound of a read that has none."""


class ReadWorker:
    """One thread with its own read connection; queries run there, off the event loop."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgestream[queue].reader")
        self._conn: sqlite3.Connection | None = None
        self._connect = connect

    def call(self, fn: Callable[..., T], *args: Any) -> Any:
        """Run `fn(conn, *args)` on the reader thread; returns a concurrent Future."""
        return self._executor.submit(self._with_conn, fn, *args)

    def _with_conn(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            self._conn = self._connect()
        return fn(self._conn, *args)

    def close(self) -> None:
        """Close the connection and stop the thread (blocking)."""
        self._executor.submit(self._close_conn).result()
        self._executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def stream_id(conn: sqlite3.Connection, stream: str) -> int | None:
    """The numeric id of a stream, or None when the queue never held it."""
    row = conn.execute("SELECT id FROM streams WHERE name = ?", (stream,)).fetchone()
    return None if row is None else int(row[0])


def cursor_position(conn: sqlite3.Connection, stream: str, consumer: str) -> int:
    """Where a consumer stands in a stream: 0 before its first acknowledgement."""
    row = conn.execute(
        "SELECT c.position FROM cursors c JOIN streams s ON s.id = c.stream_id"
        " WHERE s.name = ? AND c.consumer = ?",
        (stream, consumer),
    ).fetchone()
    return 0 if row is None else int(row[0])


def read_after(
    conn: sqlite3.Connection,
    stream: str,
    after_seq: int,
    max_events: int,
    max_bytes: int,
    before_seq: int | None = None,
) -> OutboxBatch:
    """Events after `after_seq` in order, bounded by count and bytes, with gaps in range.

    At least one event is returned even when it alone exceeds `max_bytes`, so an
    oversized event can never wedge a consumer. The queries share one read
    transaction: gaps and events must come from the same commit, or a gap committed
    between them could move the cursor past events this read never saw. With
    `before_seq`, nothing at or past it is returned (a consumer filling a hole below
    a range it already sent).
    """
    conn.execute("BEGIN")
    try:
        return _read_after_in_snapshot(conn, stream, after_seq, max_events, max_bytes, before_seq)
    finally:
        conn.execute("COMMIT")


def _read_after_in_snapshot(
    conn: sqlite3.Connection,
    stream: str,
    after_seq: int,
    max_events: int,
    max_bytes: int,
    before_seq: int | None,
) -> OutboxBatch:
    sid = stream_id(conn, stream)
    if sid is None:
        return OutboxBatch(stream, (), (), after_seq)
    events = _events_after(conn, sid, after_seq, max_events, max_bytes, before_seq)
    horizon = _next_seq_stored(conn, sid, events[-1].seq) if events else None
    if before_seq is not None:
        horizon = before_seq if horizon is None else min(horizon, before_seq)
    gaps = _gaps_after(conn, sid, after_seq, horizon)
    upto = max([after_seq] + [e.seq for e in events[-1:]] + [g.last_seq for g in gaps])
    return OutboxBatch(stream, events, gaps, upto)


def _events_after(
    conn: sqlite3.Connection,
    sid: int,
    after_seq: int,
    max_events: int,
    max_bytes: int,
    before_seq: int | None = None,
) -> list[StoredEvent]:
    rows = conn.execute(
        "SELECT seq, event_time, ingest_time, key, topic, payload, headers FROM events"
        " WHERE stream_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
        (sid, after_seq, _NO_END if before_seq is None else before_seq, max_events),
    )
    events: list[StoredEvent] = []
    size = 0
    for seq, event_time, ingest_time, key, topic, payload, headers in rows:
        size += len(payload)
        if events and size > max_bytes:
            break
        parsed = orjson.loads(headers) if headers else None
        events.append(StoredEvent(seq, event_time, ingest_time, key, topic, payload, parsed))
    return events


def _next_seq_stored(conn: sqlite3.Connection, sid: int, seq: int) -> int | None:
    row = conn.execute(
        "SELECT min(seq) FROM events WHERE stream_id = ? AND seq > ?", (sid, seq)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def _gaps_after(
    conn: sqlite3.Connection, sid: int, after_seq: int, horizon: int | None
) -> list[Gap]:
    """Gaps past the cursor that lie before the next unread event (`horizon`), if any."""
    sql = "SELECT first_seq, last_seq, reason, recorded_at FROM gaps WHERE stream_id = ?"
    sql += " AND last_seq > ?"
    params: list[int] = [sid, after_seq]
    if horizon is not None:
        sql += " AND first_seq < ?"
        params.append(horizon)
    rows = conn.execute(sql + " ORDER BY first_seq", params).fetchall()
    end = _NO_END if horizon is None else horizon - 1
    return [
        Gap(max(first, after_seq + 1), min(last, end), reason, at)
        for first, last, reason, at in rows
    ]


def newest_start(
    conn: sqlite3.Connection, stream: str, after_seq: int, max_events: int, max_bytes: int
) -> int:
    """Where to read after for the newest batch past `after_seq` (bounded by count and bytes).

    `read_after` from the returned position gives the last `max_events` events (fewer
    if they pass `max_bytes`): what a consumer draining newest first sends first.
    """
    sid = stream_id(conn, stream)
    if sid is None:
        return after_seq
    rows = conn.execute(
        f"SELECT seq, {SQL_EVENT_SIZE} FROM events WHERE stream_id = ? AND seq > ?"
        " ORDER BY seq DESC LIMIT ?",
        (sid, after_seq, max_events),
    )
    start, size = after_seq, 0
    for seq, row_size in rows:
        size += row_size
        if start != after_seq and size > max_bytes:
            break
        start = seq - 1
    return start


def load_state(conn: sqlite3.Connection, owner: str) -> dict[str, bytes]:
    """All named state of one component (a pipeline's window snapshot, say)."""
    rows = conn.execute("SELECT name, value FROM state WHERE owner = ?", (owner,))
    return {name: bytes(value) for name, value in rows}


def inflight_digest(conn: sqlite3.Connection, source: str, mid: int) -> bytes | None:
    """The digest stored with an MQTT message id, to recognise a redelivery."""
    row = conn.execute(
        "SELECT digest FROM mqtt_inflight WHERE source = ? AND mid = ?", (source, mid)
    ).fetchone()
    return None if row is None else bytes(row[0])


def stream_stats(conn: sqlite3.Connection) -> list[StreamStats]:
    """Depth, bytes, age, cursors and counters of every stream, for `edgestream queue`."""
    streams = conn.execute("SELECT id, name, next_seq, bytes FROM streams ORDER BY name")
    return [_one_stream_stats(conn, *row) for row in streams.fetchall()]


def _one_stream_stats(
    conn: sqlite3.Connection, sid: int, name: str, next_seq: int, size: int
) -> StreamStats:
    depth, oldest = _depth_and_oldest(conn, sid)
    cursors = tuple(
        CursorInfo(consumer, position, bool(active))
        for consumer, position, active in conn.execute(
            "SELECT consumer, position, active FROM cursors WHERE stream_id = ? ORDER BY consumer",
            (sid,),
        )
    )
    lowest = min((c.position for c in cursors if c.active), default=None)
    unsent = _oldest_after(conn, sid, lowest) if lowest is not None else oldest
    counters = dict(
        conn.execute("SELECT name, value FROM counters WHERE stream = ?", (name,)).fetchall()
    )
    return StreamStats(name, depth, size, next_seq - 1, oldest, unsent, cursors, counters)


def _depth_and_oldest(conn: sqlite3.Connection, sid: int) -> tuple[int, float | None]:
    """Events stored and the ingest time of the first, without reading every row.

    A count(*) over millions of queued events took seconds, on the reader thread the
    uplink also reads its batches from (a scrape every 5 s halved the drain of a 10M
    backlog). Events leave a stream only as a prefix (consumed, max_bytes, max_age) and
    the only holes inside it are numbers never stored, each inside a recorded gap
    (drop_newest); so the depth is the span of stored numbers minus the gaps within.
    """
    first = _edge_seq(conn, sid, "first")
    if first is None:
        return 0, None
    first_seq, first_ingest = first
    last = _edge_seq(conn, sid, "last")
    last_seq = first_seq if last is None else last[0]
    missing = conn.execute(
        "SELECT coalesce(sum(min(last_seq, ?2) - max(first_seq, ?1) + 1), 0) FROM gaps"
        " WHERE stream_id = ?3 AND last_seq >= ?1 AND first_seq <= ?2",
        (first_seq, last_seq, sid),
    ).fetchone()[0]
    return last_seq - first_seq + 1 - int(missing), first_ingest


_EDGE_SQL = {
    "first": "SELECT seq, ingest_time FROM events WHERE stream_id = ? ORDER BY seq LIMIT 1",
    "last": "SELECT seq, ingest_time FROM events WHERE stream_id = ? ORDER BY seq DESC LIMIT 1",
}


def _edge_seq(conn: sqlite3.Connection, sid: int, edge: str) -> tuple[int, float] | None:
    """The first or last stored event's number and ingest time (one index probe)."""
    row = conn.execute(_EDGE_SQL[edge], (sid,)).fetchone()
    return None if row is None else (int(row[0]), float(row[1]))


def _oldest_after(conn: sqlite3.Connection, sid: int, position: int) -> float | None:
    row = conn.execute(
        "SELECT ingest_time FROM events WHERE stream_id = ? AND seq > ? ORDER BY seq LIMIT 1",
        (sid, position),
    ).fetchone()
    return None if row is None else float(row[0])

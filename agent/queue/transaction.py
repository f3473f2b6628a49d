"""Operations that run inside the writer thread's group transaction.

Every write to the queue goes through a `WriteTx`: appends, cursor moves, pipeline
state and counters. Because a pipeline's outputs, its state and its cursor are written
through the same object in the same SQLite transaction, a crash can never separate
them (promise 4).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from agent.queue.errors import UnknownStreamError
from agent.queue.records import InflightMark, NewEvent, StreamLimits
from agent.queue.streams import StreamState, load_streams


class WriteTx:
    """The write API handed to jobs on the writer thread; valid for one job only."""

    def __init__(self, conn: sqlite3.Connection, streams: dict[str, StreamState]) -> None:
        self._conn = conn
        self._streams = streams
        self.undo: dict[str, tuple[int, int]] = {}
        self.touched: dict[str, int] = {}
        self.defined: dict[str, StreamLimits | None] = {}
        """Streams this job defined (None) or re-limited (their old limits), for rollback."""

    def stream(self, name: str) -> StreamState:
        """The state of a configured stream, remembered for rollback on first touch."""
        state = self._streams.get(name)
        if state is None:
            raise UnknownStreamError(name)
        if name not in self.undo:
            self.undo[name] = (state.next_seq, state.bytes)
        return state

    def append(self, stream: str, events: Sequence[NewEvent]) -> list[int]:
        """Give each event the next sequence number and store it, or record a drop.

        With `overflow: drop_newest` an event that does not fit still consumes a
        sequence number, and the number becomes a gap: the hub learns exactly which
        events it will never receive.
        """
        state = self.stream(stream)
        rows: list[tuple[object, ...]] = []
        seqs: list[int] = []
        dropped: list[int] = []
        limit = state.limits.max_bytes
        for event in events:
            seq = state.next_seq
            state.next_seq += 1
            seqs.append(seq)
            size = event.size
            if state.limits.overflow == "drop_newest" and state.bytes + size > limit:
                dropped.append(seq)
                continue
            state.bytes += size
            rows.append(
                (
                    state.id,
                    seq,
                    event.event_time,
                    event.ingest_time,
                    event.key,
                    event.topic,
                    event.payload,
                    event.headers,
                )
            )
        self._conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if dropped:
            self._record_newest_drops(state, dropped)
        self.touched[stream] = state.next_seq - 1
        return seqs

    def _record_newest_drops(self, state: StreamState, seqs: list[int]) -> None:
        for first, last in _runs(seqs):
            self.add_gap(state.name, first, last, "drop_newest")
        self.incr(state.name, "dropped.drop_newest", len(seqs))

    def add_gap(self, stream: str, first_seq: int, last_seq: int, reason: str) -> None:
        """Record sequence numbers that will never be delivered, merging with the last gap."""
        state = self.stream(stream)
        row = self._conn.execute(
            "SELECT first_seq, last_seq FROM gaps WHERE stream_id = ? AND reason = ?"
            " ORDER BY first_seq DESC LIMIT 1",
            (state.id, reason),
        ).fetchone()
        if row is not None and row[1] == first_seq - 1:
            self._conn.execute(
                "UPDATE gaps SET last_seq = ? WHERE stream_id = ? AND first_seq = ?",
                (last_seq, state.id, row[0]),
            )
            return
        self._conn.execute(
            "INSERT OR REPLACE INTO gaps VALUES (?, ?, ?, ?, ?)",
            (state.id, first_seq, last_seq, reason, time.time()),
        )

    def set_cursor(self, consumer: str, stream: str, position: int) -> None:
        """Move a consumer's cursor forward (a stale, smaller position is ignored)."""
        state = self.stream(stream)
        self._conn.execute(
            "INSERT INTO cursors(consumer, stream_id, position, active, updated_at)"
            " VALUES (?, ?, ?, 1, ?)"
            " ON CONFLICT(consumer, stream_id) DO UPDATE SET"
            " position = max(position, excluded.position), updated_at = excluded.updated_at",
            (consumer, state.id, position, time.time()),
        )

    def define_stream(self, name: str, limits: StreamLimits) -> StreamState:
        """Create a stream (a config reload added it) or give an existing one new limits."""
        state = self._streams.get(name)
        if state is not None:
            if state.limits != limits:
                self.defined.setdefault(name, state.limits)
                state.limits = limits
            return state
        state = load_streams(self._conn, {name: limits})[name]
        self._streams[name] = state
        self.defined[name] = None
        return state

    def set_active_consumers(self, stream: str, consumers: Sequence[str]) -> None:
        """Mark exactly these consumers of a stream active, creating missing cursors."""
        state = self.stream(stream)
        self._conn.execute("UPDATE cursors SET active = 0 WHERE stream_id = ?", (state.id,))
        for consumer in consumers:
            self.set_cursor(consumer, stream, 0)
            self._conn.execute(
                "UPDATE cursors SET active = 1 WHERE stream_id = ? AND consumer = ?",
                (state.id, consumer),
            )

    def put_state(self, owner: str, name: str, value: bytes) -> None:
        """Store one named piece of a component's state (a window snapshot, say)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO state(owner, name, value) VALUES (?, ?, ?)",
            (owner, name, value),
        )

    def delete_state(self, owner: str, name: str | None = None) -> None:
        """Forget one piece of a component's state, or all of it."""
        if name is None:
            self._conn.execute("DELETE FROM state WHERE owner = ?", (owner,))
        else:
            self._conn.execute("DELETE FROM state WHERE owner = ? AND name = ?", (owner, name))

    def incr(self, stream: str, name: str, by: int = 1) -> None:
        """Add to a persistent counter (drops, dead letters) shown by `edgestream queue`."""
        self._conn.execute(
            "INSERT INTO counters(stream, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT(stream, name) DO UPDATE SET value = value + excluded.value",
            (stream, name, by),
        )

    def mark_inflight(self, marks: Iterable[InflightMark]) -> None:
        """Remember which MQTT message ids the events of this transaction arrived with."""
        now = time.time()
        self._conn.executemany(
            "INSERT OR REPLACE INTO mqtt_inflight(source, mid, digest, written_at)"
            " VALUES (?, ?, ?, ?)",
            [(m.source, m.mid, m.digest, now) for m in marks],
        )

    def forget_inflight(self, source: str, written_before: float) -> None:
        """Drop marks whose acknowledgements have certainly reached the broker."""
        self._conn.execute(
            "DELETE FROM mqtt_inflight WHERE source = ? AND written_at < ?",
            (source, written_before),
        )


def _runs(seqs: list[int]) -> Iterable[tuple[int, int]]:
    """Split sorted numbers into (first, last) runs of consecutive values."""
    first = prev = seqs[0]
    for seq in seqs[1:]:
        if seq != prev + 1:
            yield first, prev
            first = seq
        prev = seq
    yield first, prev

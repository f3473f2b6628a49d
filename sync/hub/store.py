"""The hub's central store in SQLite: what users query, deduplicated by construction.

Schema (documented in docs/sync-protocol.md, the contract for central consumers):

    events(device, epoch, stream, seq, event_time, ingest_time, key, topic, payload,
           headers, received_at)       PRIMARY KEY (device, epoch, stream, seq)
    gaps(device, epoch, stream, first_seq, last_seq, reason, recorded_at, received_at)
    positions(device, epoch, stream, upto_seq, events, duplicates, updated_at,
              last_event_time, backlog_age)
    devices(device, first_seen, last_seen, last_epoch, clock_skew, rejected,
            last_rejection, last_rejected_at)
    event_minutes(minute, device, events)   PRIMARY KEY (minute, device)

Columns added after the first release are added to an older file when it is opened
(`_COLUMNS_ADDED`), so a hub upgrade never needs a manual migration.

`backlog_age` is how old the device's oldest unsent event was when it sent its latest
batch of the stream (`sent_at` minus the first event's ingest time: a device drains
oldest first), both on the device's clock. `event_minutes` counts the events committed
per device per minute of the hub's clock (`minute` = epoch seconds // 60), for the fleet
page's chart; rows older than `MINUTES_KEPT` are deleted by the commits themselves.

Deduplication is the primary key: `INSERT OR IGNORE` in the same transaction as the
position update, so a retried batch or a batch redelivered after a hub crash between
commit and ack adds nothing (promise 2). One hub process owns the file: the store takes
an exclusive lock file beside it and refuses a second writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from sync import set_aside
from sync.hub import republish_outbox
from sync.hub.republish_outbox import Pending
from sync.outbox import Gap
from sync.wire import Batch

_DDL = (
    """CREATE TABLE IF NOT EXISTS events (
        device TEXT NOT NULL, epoch TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL,
        event_time REAL NOT NULL, ingest_time REAL NOT NULL, key TEXT, topic TEXT,
        payload BLOB NOT NULL, headers TEXT, received_at REAL NOT NULL,
        PRIMARY KEY (device, epoch, stream, seq)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS gaps (
        device TEXT NOT NULL, epoch TEXT NOT NULL, stream TEXT NOT NULL,
        first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, reason TEXT NOT NULL,
        recorded_at REAL NOT NULL, received_at REAL NOT NULL,
        PRIMARY KEY (device, epoch, stream, first_seq))""",
    """CREATE TABLE IF NOT EXISTS positions (
        device TEXT NOT NULL, epoch TEXT NOT NULL, stream TEXT NOT NULL,
        upto_seq INTEGER NOT NULL, events INTEGER NOT NULL, duplicates INTEGER NOT NULL,
        updated_at REAL NOT NULL, PRIMARY KEY (device, epoch, stream))""",
    """CREATE TABLE IF NOT EXISTS devices (
        device TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
        last_epoch TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_by_time ON events(device, stream, event_time)",
    """CREATE TABLE IF NOT EXISTS event_minutes (
        minute INTEGER NOT NULL, device TEXT NOT NULL, events INTEGER NOT NULL,
        PRIMARY KEY (minute, device)) WITHOUT ROWID""",
)
_COLUMNS_ADDED = (
    ("positions", "last_event_time", "REAL"),
    ("devices", "clock_skew", "REAL"),
    ("devices", "clock_skew_at", "REAL"),
    ("devices", "rejected", "INTEGER NOT NULL DEFAULT 0"),
    ("devices", "last_rejection", "TEXT"),
    ("devices", "last_rejected_at", "REAL"),
    ("positions", "backlog_age", "REAL"),
)
MINUTES_KEPT = 24 * 60
"""Minutes of per-device event counts kept; the minute as key first makes pruning one
short range delete."""


SKEW_MEMORY = 3600.0
"""Seconds a skew estimate is kept against later, larger-delay ones."""
_NEWER_SKEW = (
    "excluded.clock_skew IS NOT NULL AND (clock_skew IS NULL"
    " OR excluded.clock_skew >= clock_skew"
    f" OR excluded.clock_skew_at - clock_skew_at > {SKEW_MEMORY})"
)
_BEST_SKEW = (
    f"clock_skew = CASE WHEN {_NEWER_SKEW} THEN excluded.clock_skew ELSE clock_skew END,"
    f" clock_skew_at = CASE WHEN {_NEWER_SKEW} THEN excluded.clock_skew_at"
    " ELSE clock_skew_at END"
)
"""Device clock minus hub clock, estimated as `sent_at - received_at`: transit only ever
lowers that difference, so the largest estimate of the last hour is the closest (the
least delayed batch), and an estimate an hour old gives way (the clock may have moved)."""


class StoreLockedError(RuntimeError):
    """Another hub process already owns this store file."""


class StoreConfigError(RuntimeError):
    """The store exists but does not match the hub's config; the hub must not start."""


class StoreUnavailableError(RuntimeError):
    """The store cannot commit right now (disk full, server down): retry, ack nothing."""


class BatchRefusedError(ValueError):
    """The store can never hold this batch (a value out of its range): reject it alone."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one batch added to the store."""

    committed: int
    duplicates: int


class CentralStore(Protocol):
    """Where the hub commits batches; the hub acks a batch only after `commit` returned.

    `commit` is all-or-nothing for the batches it is given and idempotent per event
    (device, epoch, stream, seq): committing a batch again adds nothing and counts its
    events as duplicates. It raises StoreUnavailableError for a failure that may clear
    and BatchRefusedError for content the store can never hold.
    """

    async def commit(self, batches: Sequence[Batch]) -> list[CommitResult]:
        """Commit every batch, or none of them."""
        ...

    async def record_rejection(self, device: str, reason: str) -> None:
        """Count a batch refused for `device` (the device of the topic it came on)."""
        ...

    async def close(self) -> None:
        """Flush and release the store."""
        ...


_TRANSIENT = (sqlite3.OperationalError,)
_CONTENT = (sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError, ValueError)


class SqliteCentralStore:
    """Commits decoded batches; one transaction per group of batches."""

    def __init__(
        self,
        path: str | Path,
        synchronous: str = "full",
        *,
        republish: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        """The hub's time for `received_at`, `last_seen` and the per-minute counts."""
        self._pruned_minute = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_exclusive(self.path)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        for statement in (*_DDL, republish_outbox.DDL):
            self._conn.execute(statement)
        _add_missing_columns(self._conn)
        self.republish = republish
        """Queue every newly committed event for the republish sink."""
        self._using = threading.Lock()
        """One connection, used from worker threads: one statement group at a time."""

    async def commit(self, batches: Sequence[Batch]) -> list[CommitResult]:
        """`commit_now` on a worker thread, its errors sorted into retry or refuse."""
        try:
            return await asyncio.to_thread(self.commit_now, batches)
        except _TRANSIENT as exc:
            raise StoreUnavailableError(f"SQLite store: {exc}") from exc
        except _CONTENT as exc:
            raise BatchRefusedError(f"SQLite store refused the batch: {exc}") from exc

    def commit_now(self, batches: Sequence[Batch]) -> list[CommitResult]:
        """Insert every batch in one transaction; duplicates are ignored and counted."""
        now = self._clock()
        with self._using:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                results = [self._insert(batch, now) for batch in batches]
                self._prune_minutes(now)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return results

    def _insert(self, batch: Batch, now: float) -> CommitResult:
        already = republish_outbox.stored_seqs(self._conn, batch) if self.republish else set()
        before = self._conn.total_changes
        self._conn.executemany(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (batch.device, batch.epoch, batch.stream, e.seq, e.event_time, e.ingest_time,
                 e.key, e.topic, e.payload,
                 orjson.dumps(e.headers).decode() if e.headers else None, now)
                for e in batch.events
            ],
        )  # fmt: skip
        committed = self._conn.total_changes - before
        if self.republish and committed:
            republish_outbox.enqueue(self._conn, batch, already)
        # A device merges new drops into its last gap, so a resent gap may be longer.
        self._conn.executemany(
            "INSERT INTO gaps VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(device, epoch, stream, first_seq) DO UPDATE SET"
            " last_seq = max(last_seq, excluded.last_seq)",
            [
                (batch.device, batch.epoch, batch.stream, g.first_seq, g.last_seq, g.reason,
                 g.recorded_at, now)
                for g in (self._clip_set_aside(batch, gap) for gap in batch.gaps)
                if g.first_seq <= g.last_seq
            ],
        )  # fmt: skip
        duplicates = len(batch.events) - committed
        self._update_position(batch, committed, duplicates, now)
        if committed:
            self._conn.execute(
                "INSERT INTO event_minutes VALUES (?, ?, ?) ON CONFLICT(minute, device)"
                " DO UPDATE SET events = events + excluded.events",
                (int(now // 60), batch.device, committed),
            )
        return CommitResult(committed, duplicates)

    def _clip_set_aside(self, batch: Batch, gap: Gap) -> Gap:
        """A set-aside gap starts after the events of it that did arrive.

        The device reads the range from its old file's uplink cursor, which is saved a
        little behind the acks (sync/uplink_state.py): the first numbers of the range may
        be here already, and a gap must never cover an event the store holds.
        """
        if gap.reason != set_aside.REASON:
            return gap
        first = gap.first_seq
        rows = self._conn.execute(
            "SELECT seq FROM events WHERE device = ? AND epoch = ? AND stream = ?"
            " AND seq BETWEEN ? AND ? ORDER BY seq",
            (batch.device, batch.epoch, batch.stream, gap.first_seq, gap.last_seq),
        )
        for (seq,) in rows:
            if seq != first:
                break
            first += 1
        return dataclasses.replace(gap, first_seq=first)

    def _prune_minutes(self, now: float) -> None:
        """Delete per-minute counts past `MINUTES_KEPT`, at most once per minute."""
        minute = int(now // 60)
        if minute != self._pruned_minute:
            self._conn.execute("DELETE FROM event_minutes WHERE minute < ?",
                               (minute - MINUTES_KEPT,))  # fmt: skip
            self._pruned_minute = minute

    def _update_position(self, batch: Batch, committed: int, duplicates: int, now: float) -> None:
        newest = max((e.event_time for e in batch.events), default=None)
        self._conn.execute(
            "INSERT INTO positions (device, epoch, stream, upto_seq, events, duplicates,"
            " updated_at, last_event_time, backlog_age) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(device, epoch, stream) DO UPDATE SET"
            " upto_seq = max(upto_seq, excluded.upto_seq), events = events + excluded.events,"
            " duplicates = duplicates + excluded.duplicates, updated_at = excluded.updated_at,"
            " last_event_time = max(coalesce(last_event_time, excluded.last_event_time),"
            " coalesce(excluded.last_event_time, last_event_time)),"
            " backlog_age = coalesce(excluded.backlog_age, backlog_age)",
            (batch.device, batch.epoch, batch.stream, batch.upto_seq, committed, duplicates, now,
             newest, backlog_age(batch)),
        )  # fmt: skip
        skew = None if batch.sent_at is None else batch.sent_at - now
        self._conn.execute(
            "INSERT INTO devices (device, first_seen, last_seen, last_epoch, clock_skew,"
            " clock_skew_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(device) DO UPDATE SET"
            " last_seen = excluded.last_seen,"
            " last_epoch = CASE WHEN ? THEN last_epoch ELSE excluded.last_epoch END,"
            f" {_BEST_SKEW}",
            (batch.device, now, now, batch.epoch, skew, None if skew is None else now,
             _old_epoch_notice(batch)),
        )  # fmt: skip

    async def record_rejection(self, device: str, reason: str) -> None:
        """Count a refused batch on the device's row (created if the device is new)."""
        await asyncio.to_thread(self.record_rejection_now, device, reason, self._clock())

    def republish_pending(self, limit: int) -> list[Pending]:
        """The oldest events the republish sink has not yet published."""
        with self._using:
            return republish_outbox.pending(self._conn, limit)

    def republish_done(self, upto_id: int) -> None:
        """The sink published everything up to `upto_id`."""
        with self._using:
            republish_outbox.done(self._conn, upto_id)

    def record_rejection_now(self, device: str, reason: str, now: float) -> None:
        """`record_rejection` on the calling thread (autocommit: one statement)."""
        with self._using:
            self._record_rejection(device, reason, now)

    def _record_rejection(self, device: str, reason: str, now: float) -> None:
        self._conn.execute(
            "INSERT INTO devices (device, first_seen, last_seen, last_epoch, rejected,"
            " last_rejection, last_rejected_at) VALUES (?, ?, ?, '', 1, ?, ?)"
            " ON CONFLICT(device) DO UPDATE SET rejected = rejected + 1,"
            " last_rejection = excluded.last_rejection,"
            " last_rejected_at = excluded.last_rejected_at",
            (device, now, now, reason[:500], now),
        )

    async def close(self) -> None:
        """Close the database and release the owner lock."""
        self.close_now()

    def close_now(self) -> None:
        """`close` for callers outside an event loop."""
        self._conn.close()
        os.close(self._lock_fd)


def backlog_age(batch: Batch) -> float | None:
    """How old the device's oldest unsent event was when it sent `batch` (device clock).

    The uplink drains a stream oldest first, so a batch's first event is the oldest one
    the device had not yet had acknowledged; None without a send time (wire v1) or events.
    """
    if batch.sent_at is None or not batch.events:
        return None
    return batch.sent_at - batch.events[0].ingest_time


def _old_epoch_notice(batch: Batch) -> bool:
    """An event-less set-aside batch speaks for an epoch the device has already left."""
    return not batch.events and any(g.reason == set_aside.REASON for g in batch.gaps)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a store written by an older hub up to this schema (columns only ever added)."""
    for table, column, declaration in _COLUMNS_ADDED:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _lock_exclusive(path: Path) -> int:
    """Hold an exclusive lock on `<store>.lock` for the life of the process."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        msg = (
            f"central store {path} is owned by another hub process: with the SQLite "
            "store exactly one hub writes the file (use the JetStream store to scale out)"
        )
        raise StoreLockedError(msg) from None
    return fd

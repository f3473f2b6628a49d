"""The fleet as the hub's SQLite store sees it: per device and per stream, read-only.

This is the proof of delivery an operator asks for: for each device, the last
committed sequence per stream, when it was last heard from, how far its newest event
lags, the events it lost before upload (gaps, with reasons), the duplicates the hub
dropped and the batches it refused. It reads the store through a read-only
connection, so `edgestream hub status` and the fleet page work beside a running hub
(WAL) or without it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One (device, epoch, stream): how far the hub has committed it."""

    device: str
    epoch: str
    stream: str
    upto_seq: int
    events: int
    duplicates: int
    gaps: int
    lost: int
    """Events covered by the stream's gaps (dropped on the device before upload)."""
    updated_at: float
    last_event_time: float | None
    backlog_age: float | None = None
    """Age of the device's oldest unsent event when it sent its latest batch (device clock)."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device: totals over its streams and epochs, and what the hub saw of it."""

    device: str
    first_seen: float
    last_seen: float
    last_epoch: str
    streams: int
    events: int
    duplicates: int
    gaps: int
    lost: int
    last_event_time: float | None
    clock_skew: float | None
    rejected: int
    last_rejection: str | None
    backlog_age: float | None = None
    """The largest backlog age of the streams of its latest epoch (see StreamRow)."""

    def lag(self, now: float) -> float | None:
        """Seconds between now and the newest event time committed for the device."""
        return None if self.last_event_time is None else now - self.last_event_time


@dataclass(frozen=True, slots=True)
class GapRow:
    """Events a device dropped before they reached the hub, and why."""

    device: str
    epoch: str
    stream: str
    first_seq: int
    last_seq: int
    reason: str
    recorded_at: float


@contextmanager
def read_only(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the store; FileNotFoundError when there is none."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no central store at {path}")
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        yield conn


_STREAMS = """
    SELECT p.device, p.epoch, p.stream, p.upto_seq, p.events, p.duplicates,
           count(g.first_seq), coalesce(sum(g.last_seq - g.first_seq + 1), 0),
           p.updated_at, p.last_event_time, p.backlog_age
    FROM positions p LEFT JOIN gaps g
      ON g.device = p.device AND g.epoch = p.epoch AND g.stream = p.stream
    {where}
    GROUP BY p.device, p.epoch, p.stream
    ORDER BY p.device, p.stream, p.updated_at
"""

_DEVICES = """
    SELECT d.device, d.first_seen, d.last_seen, d.last_epoch,
           count(p.stream), coalesce(sum(p.events), 0), coalesce(sum(p.duplicates), 0),
           (SELECT count(*) FROM gaps g WHERE g.device = d.device),
           (SELECT coalesce(sum(g.last_seq - g.first_seq + 1), 0)
              FROM gaps g WHERE g.device = d.device),
           max(p.last_event_time), d.clock_skew, d.rejected, d.last_rejection,
           max(CASE WHEN p.epoch = d.last_epoch THEN p.backlog_age END)
    FROM devices d LEFT JOIN positions p ON p.device = d.device
    {where}
    GROUP BY d.device
    ORDER BY d.device
"""


def stream_rows(conn: sqlite3.Connection, device: str | None = None) -> list[StreamRow]:
    """Every committed (device, epoch, stream), optionally of one device."""
    if device is None:
        return [StreamRow(*row) for row in conn.execute(_STREAMS.format(where=""))]
    sql = _STREAMS.format(where="WHERE p.device = ?")
    return [StreamRow(*row) for row in conn.execute(sql, (device,))]


def device_rows(conn: sqlite3.Connection, limit: int | None = None) -> list[DeviceRow]:
    """Every device the hub has committed for or refused a batch from (the first `limit`)."""
    sql = _DEVICES.format(where="")
    if limit is None:
        return [DeviceRow(*row) for row in conn.execute(sql)]
    return [DeviceRow(*row) for row in conn.execute(sql + " LIMIT ?", (limit,))]


def device_row(conn: sqlite3.Connection, device: str) -> DeviceRow | None:
    """One device's row; None when the store does not know it."""
    row = conn.execute(_DEVICES.format(where="WHERE d.device = ?"), (device,)).fetchone()
    return None if row is None else DeviceRow(*row)


def minute_counts(conn: sqlite3.Connection, device: str, first: int, last: int) -> dict[int, int]:
    """Events committed for `device` per minute (epoch seconds // 60), `first`..`last`."""
    sql = "SELECT minute, events FROM event_minutes WHERE minute BETWEEN ? AND ? AND device = ?"
    return dict(conn.execute(sql, (first, last, device)).fetchall())


def device_count(conn: sqlite3.Connection) -> int:
    """How many devices the store knows."""
    count: int = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
    return count


def gap_rows(
    conn: sqlite3.Connection, device: str | None = None, limit: int | None = None
) -> list[GapRow]:
    """Every recorded gap (or the newest `limit`), optionally of one device, oldest first."""
    sql = "SELECT device, epoch, stream, first_seq, last_seq, reason, recorded_at FROM gaps"
    params: tuple[str | int, ...] = ()
    if device is not None:
        sql += " WHERE device = ?"
        params = (device,)
    if limit is None:
        return [GapRow(*row) for row in conn.execute(sql + " ORDER BY recorded_at", params)]
    newest = conn.execute(sql + " ORDER BY recorded_at DESC LIMIT ?", (*params, limit))
    return [GapRow(*row) for row in reversed(newest.fetchall())]

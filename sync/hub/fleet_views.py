"""What the fleet page shows, as plain JSON-ready dicts, read from whichever store runs.

The SQLite store is read through its own read-only connection on a worker thread
(sync/hub/fleet.py), so a page refresh never waits on the hub's writer and never
holds the event loop. The table is capped at `PAGE_LIMIT` devices by id: the page
says so, and any device is still reachable by its own detail page. The JetStream
store keeps only positions and refusals in its fleet bucket: the page shows the
columns it has and a note saying what is missing; those reads go over NATS, one per
key, so a result is reused for `JETSTREAM_REUSE` seconds whatever the refresh rate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from sync.hub.fleet import (
    DeviceRow,
    GapRow,
    StreamRow,
    device_count,
    device_row,
    device_rows,
    gap_rows,
    minute_counts,
    read_only,
    stream_rows,
)
from sync.hub.store import CentralStore, SqliteCentralStore

PAGE_LIMIT: Final = 1000
MINUTES: Final = 60
GAPS_SHOWN: Final = 100
JETSTREAM_REUSE: Final = 10.0

SQLITE_COLUMNS: Final = (
    "device", "last_seen", "lag", "backlog_age", "gaps", "clock_skew", "rejected",
    "last_rejection", "duplicates", "events",
)  # fmt: skip
JETSTREAM_COLUMNS: Final = (
    "device", "last_seen", "lag", "rejected", "last_rejection", "duplicates", "events",
)  # fmt: skip
JETSTREAM_NOTE: Final = (
    "JetStream store: this view comes from the fleet bucket, which keeps positions and "
    "refusals only. Gaps stay in the stream's _gap subjects; clock skew, backlog age and "
    "events per minute are not kept."
)

View = dict[str, Any]
T = TypeVar("T")
_Query = Callable[[sqlite3.Connection], T]
_Detail = tuple[DeviceRow, list[StreamRow], list[GapRow], dict[int, int]]


class StoreUnreadableError(RuntimeError):
    """The store could not be read just now (locked, missing, NATS down)."""


class FleetReader(Protocol):
    """Reads the fleet table and one device's detail for the page."""

    async def fleet(self, now: float) -> View:
        """The fleet table: the first `PAGE_LIMIT` devices by id."""
        ...

    async def device(self, device: str, now: float) -> View | None:
        """One device's detail; None when the store does not know it."""
        ...


@runtime_checkable
class _HasFleet(Protocol):
    async def fleet(self) -> tuple[list[DeviceRow], list[StreamRow]]: ...


def reader_for(store: CentralStore) -> FleetReader | None:
    """The reader of this store; None for a store that keeps no fleet view."""
    if isinstance(store, SqliteCentralStore):
        return SqliteFleetReader(store.path)
    if isinstance(store, _HasFleet):
        return JetStreamFleetReader(store)
    return None


def device_view(row: DeviceRow, now: float) -> View:
    """A device row with its lag at `now`."""
    return {**dataclasses.asdict(row), "lag": row.lag(now)}


class SqliteFleetReader:
    """Reads the SQLite store file read-only, on a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def fleet(self, now: float) -> View:
        """See FleetReader."""
        total, rows = await self._read(self._fleet_now)
        return {
            "store": "sqlite", "now": now, "note": None, "columns": list(SQLITE_COLUMNS),
            "total": total, "limit": PAGE_LIMIT, "devices": [device_view(r, now) for r in rows],
        }  # fmt: skip

    async def device(self, device: str, now: float) -> View | None:
        """See FleetReader."""
        last = int(now // 60)
        found = await self._read(lambda conn: self._device_now(conn, device, last))
        if found is None:
            return None
        row, streams, gaps, counts = found
        return {
            "store": "sqlite", "now": now, "note": None,
            "device": device_view(row, now),
            "streams": [dataclasses.asdict(s) for s in streams],
            "gaps": [dataclasses.asdict(g) for g in gaps], "gaps_limit": GAPS_SHOWN,
            "minutes": {"first": (last - MINUTES + 1) * 60,
                        "counts": [counts.get(m, 0) for m in range(last - MINUTES + 1, last + 1)]},
        }  # fmt: skip

    async def _read(self, query: _Query[T]) -> T:
        try:
            return await asyncio.to_thread(self._with_connection, query)
        except (FileNotFoundError, sqlite3.Error) as exc:
            raise StoreUnreadableError(f"cannot read the store {self.path}: {exc}") from exc

    def _with_connection(self, query: _Query[T]) -> T:
        with read_only(self.path) as conn:
            return query(conn)

    @staticmethod
    def _fleet_now(conn: sqlite3.Connection) -> tuple[int, list[DeviceRow]]:
        return device_count(conn), device_rows(conn, PAGE_LIMIT)

    @staticmethod
    def _device_now(conn: sqlite3.Connection, device: str, last: int) -> _Detail | None:
        row = device_row(conn, device)
        if row is None:
            return None
        counts = minute_counts(conn, device, last - MINUTES + 1, last)
        return row, stream_rows(conn, device), gap_rows(conn, device, GAPS_SHOWN), counts


class JetStreamFleetReader:
    """Reads the JetStream store's fleet bucket, reusing a result for a few seconds."""

    def __init__(self, store: _HasFleet) -> None:
        self.store = store
        self._last: tuple[float, list[DeviceRow], list[StreamRow]] | None = None
        self._lock = asyncio.Lock()

    async def fleet(self, now: float) -> View:
        """See FleetReader."""
        devices, _ = await self._snapshot()
        return {
            "store": "jetstream", "now": now, "note": JETSTREAM_NOTE,
            "columns": list(JETSTREAM_COLUMNS), "total": len(devices), "limit": PAGE_LIMIT,
            "devices": [device_view(r, now) for r in devices[:PAGE_LIMIT]],
        }  # fmt: skip

    async def device(self, device: str, now: float) -> View | None:
        """See FleetReader: no gaps and no events per minute in this store."""
        devices, streams = await self._snapshot()
        row = next((d for d in devices if d.device == device), None)
        if row is None:
            return None
        return {
            "store": "jetstream", "now": now, "note": JETSTREAM_NOTE,
            "device": device_view(row, now),
            "streams": [dataclasses.asdict(s) for s in streams if s.device == device],
            "gaps": [], "gaps_limit": GAPS_SHOWN, "minutes": None,
        }  # fmt: skip

    async def _snapshot(self) -> tuple[list[DeviceRow], list[StreamRow]]:
        """The bucket's content, read again only when older than `JETSTREAM_REUSE`."""
        async with self._lock:  # concurrent refreshes share one read
            if self._last is None or time.monotonic() - self._last[0] > JETSTREAM_REUSE:
                try:
                    devices, streams = await self.store.fleet()
                except Exception as exc:  # nats-py raises many types; the page shows it
                    raise StoreUnreadableError(f"cannot read the fleet bucket: {exc!r}") from exc
                self._last = (time.monotonic(), devices, streams)
            return self._last[1], self._last[2]

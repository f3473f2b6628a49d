"""The hub's metrics and readiness: its counters, and per-device rows of the store.

Per-device gauges come from the SQLite store's fleet view (sync/hub/fleet.py), read
at scrape time through a read-only connection in a worker thread, so the hub's
writer is never waited on. They are bounded to the first `MAX_DEVICES` devices by
id: a scrape of a fleet of 100,000 devices would cost more than it tells, and
fleet-wide questions are better asked of `edgestream hub status`. The JetStream
store keeps its fleet view in NATS; there only the process-level families are served.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Final

from sync.health import DownTimer, connection_reason, disk_reason, writable_reason
from sync.hub.fleet import DeviceRow, device_count, device_rows, read_only
from sync.hub.rejections import CLASSES
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.metrics import Family, Registry, counter, gauge, process_families
from sync.metrics_server import Readiness

MAX_DEVICES: Final = 1000


def hub_registry(hub: Hub) -> Registry:
    """The registry of one running hub."""
    registry = Registry()

    async def counters() -> list[Family]:
        return hub_families(hub)

    async def devices() -> list[Family]:
        if not isinstance(hub.store, SqliteCentralStore):
            return []
        count, rows = await asyncio.to_thread(_read_devices, hub.store)
        return device_families(count, rows, time.time())

    for collector in (counters, devices, process_families):
        registry.register(collector)
    return registry


def hub_families(hub: Hub) -> list[Family]:
    """What the hub did since start, and whether it is connected."""
    s = hub.stats
    return [
        gauge("edgestream_hub_connected", "1 while connected to the broker.",
              int(hub.connection.is_connected)),
        counter("edgestream_hub_batches_total", "Batches committed to the store.", s.batches),
        counter("edgestream_hub_events_total", "Events committed to the store.", s.events),
        counter("edgestream_hub_duplicates_total",
                "Events dropped as already committed.", s.duplicates),
        rejected_families(s.rejected_by),
    ]  # fmt: skip


def rejected_families(rejected_by: dict[str, int]) -> Family:
    """Refused batches by reason class; every class is shown, at 0 until it happens, so
    that `rate()` sees the first refusal."""
    family = counter(
        "edgestream_hub_rejected_batches_total",
        "Batches refused, by reason class (format, too_large, signature, identity, ...).",
    )
    for reason in CLASSES:
        family.add(rejected_by.get(reason, 0), reason=reason)
    return family


def _read_devices(store: SqliteCentralStore) -> tuple[int, list[DeviceRow]]:
    try:
        with read_only(store.path) as conn:
            return device_count(conn), device_rows(conn, MAX_DEVICES)
    except (FileNotFoundError, sqlite3.Error):
        return 0, []


def device_families(count: int, rows: list[DeviceRow], now: float) -> list[Family]:
    """Per device: lag, silence, events, duplicates, gaps and rejected batches."""
    lag = gauge(
        "edgestream_hub_device_lag_seconds",
        "Now minus the newest event time committed for the device.",
    )
    silent = gauge(
        "edgestream_hub_device_last_seen_age_seconds",
        "Seconds since the hub last received a batch from the device.",
    )
    events = counter("edgestream_hub_device_events_total", "Events committed for the device.")
    dups = counter("edgestream_hub_device_duplicates_total", "Duplicates dropped for the device.")
    lost = counter(
        "edgestream_hub_device_lost_events_total",
        "Events the device reported dropped before upload (gaps).",
    )
    rejected = counter(
        "edgestream_hub_device_rejected_batches_total", "Batches of the device the hub refused."
    )
    for row in rows:
        device = row.device
        lag.add(row.lag(now), device=device)
        silent.add(max(0.0, now - row.last_seen), device=device)
        events.add(row.events, device=device)
        dups.add(row.duplicates, device=device)
        lost.add(row.lost, device=device)
        rejected.add(row.rejected, device=device)
    total = gauge(
        "edgestream_hub_devices", "Devices the store knows (all, not only those shown).", count
    )
    return [total, lag, silent, events, dups, lost, rejected]  # fmt: skip


def hub_readiness(hub: Hub, grace: float, min_free: int) -> Readiness:
    """The broker connection, and for the SQLite store its disk and writability."""
    timer = DownTimer()

    async def reasons() -> list[str]:
        url = hub.config.broker.url
        found = [connection_reason(f"broker {url}", timer, hub.connection.is_connected, grace)]
        if isinstance(hub.store, SqliteCentralStore):
            found.append(disk_reason(hub.store.path.parent, min_free))
            found.append(writable_reason(hub.store.path, "central database"))
        return [reason for reason in found if reason is not None]

    return reasons

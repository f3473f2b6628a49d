"""The fleet view on JetStream: each device stream's position in a Key-Value bucket.

Key `<device>.<stream>` (subject tokens, see jetstream_messages), value a JSON object
`{device, stream, epoch, upto_seq, events, duplicates, newest_event_time, last_seen}`.
The counters are per epoch: a device that comes back with a new epoch (a wiped database)
starts them again. Key `<device>` counts the device's refused batches:
`{device, rejected, last_rejection, last_rejected_at}`.

The positions are a convenience for dashboards, not part of delivery: they are written
after JetStream acknowledged the events, and a failure here is logged (once per kind of
failure, and once when it clears) but never fails a commit. Several hubs update one key
with compare-and-set on the entry's revision, so their counts add up.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.js.api import KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from sync.hub.fleet import DeviceRow, StreamRow
from sync.hub.jetstream_messages import token
from sync.hub.store import CommitResult
from sync.wire import Batch

log = logging.getLogger(__name__)

_CAS_ATTEMPTS = 5
_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, ValueError)


@dataclass(slots=True)
class _Delta:
    device: str
    stream: str
    epoch: str
    upto_seq: int
    events: int = 0
    duplicates: int = 0
    newest: float | None = None


class FleetPositions:
    """Best-effort writer of per (device, stream) positions."""

    def __init__(self, js: JetStreamContext, bucket: str, storage: str, replicas: int) -> None:
        self._js = js
        self._config = KeyValueConfig(
            bucket=bucket, history=1, storage=StorageType(storage), replicas=replicas
        )
        self._kv: KeyValue | None = None
        self._failing: str | None = None

    async def record(self, batches: Sequence[Batch], results: Sequence[CommitResult]) -> None:
        """Add these committed batches to the positions; never raises."""
        try:
            kv = await self._bucket()
            for key, delta in _merge(batches, results).items():
                await _apply(kv, key, functools.partial(_combined, delta=delta))
        except _ERRORS as exc:
            self._report(exc)
            return
        self._recovered()

    async def record_rejection(self, device: str, reason: str) -> None:
        """Count a refused batch under the device's own key; never raises."""
        try:
            kv = await self._bucket()
            await _apply(kv, token(device), lambda current: _rejected(current, device, reason))
        except _ERRORS as exc:
            self._report(exc)
            return
        self._recovered()

    def _recovered(self) -> None:
        if self._failing is not None:
            log.info("Fleet positions in bucket %s are updated again", self._config.bucket)
            self._failing = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(self._config.bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self._js.create_key_value(self._config)
        return self._kv

    def _report(self, exc: Exception) -> None:
        condition = type(exc).__name__
        if condition != self._failing:
            log.warning("Fleet positions not updated in bucket %s (%s); events are "
                        "committed all the same", self._config.bucket, exc)  # fmt: skip
            self._failing = condition


def _merge(batches: Sequence[Batch], results: Sequence[CommitResult]) -> dict[str, _Delta]:
    merged: dict[str, _Delta] = {}
    for batch, result in zip(batches, results, strict=True):
        key = f"{token(batch.device)}.{token(batch.stream)}"
        delta = merged.get(key)
        if delta is None or delta.epoch != batch.epoch:
            delta = merged[key] = _Delta(batch.device, batch.stream, batch.epoch, batch.upto_seq)
        delta.upto_seq = max(delta.upto_seq, batch.upto_seq)
        delta.events += result.committed
        delta.duplicates += result.duplicates
        times = [e.event_time for e in batch.events]
        if times:
            delta.newest = max(times + ([delta.newest] if delta.newest is not None else []))
    return merged


_Update = Callable[[dict[str, Any] | None], dict[str, Any]]


async def _apply(kv: KeyValue, key: str, update: _Update) -> None:
    """Read, add, write back only if nobody wrote since; a few tries, then give up."""
    for _ in range(_CAS_ATTEMPTS):
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        current = orjson.loads(entry.value) if entry is not None and entry.value else None
        value = orjson.dumps(update(current))
        try:
            if entry is None:
                await kv.create(key, value)
            else:
                await kv.update(key, value, last=entry.revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            continue
        return
    raise ValueError(f"position {key} kept changing under {_CAS_ATTEMPTS} attempts")


def _combined(current: dict[str, Any] | None, delta: _Delta) -> dict[str, Any]:
    same_epoch = current is not None and current.get("epoch") == delta.epoch
    base = current if same_epoch and current is not None else {}
    return {
        "device": delta.device,
        "stream": delta.stream,
        "epoch": delta.epoch,
        "upto_seq": max(int(base.get("upto_seq", 0)), delta.upto_seq),
        "events": int(base.get("events", 0)) + delta.events,
        "duplicates": int(base.get("duplicates", 0)) + delta.duplicates,
        "newest_event_time": _newest(base.get("newest_event_time"), delta.newest),
        "last_seen": time.time(),
    }


def _newest(stored: Any, new: float | None) -> float | None:
    values = [float(v) for v in (stored, new) if v is not None]
    return max(values) if values else None


def _rejected(current: dict[str, Any] | None, device: str, reason: str) -> dict[str, Any]:
    count = int((current or {}).get("rejected", 0)) + 1
    return {"device": device, "rejected": count, "last_rejection": reason[:500],
            "last_rejected_at": time.time()}  # fmt: skip


async def read_fleet(js: JetStreamContext, bucket: str) -> tuple[list[DeviceRow], list[StreamRow]]:
    """Devices and streams as the positions bucket holds them (for `hub status`).

    Gap records live in the stream itself, not here, so gaps and lost events read as 0
    in this view; the stream's `_gap` subjects hold them.
    """
    try:
        kv = await js.key_value(bucket)
        keys = await kv.keys()
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError):
        return [], []
    values = [orjson.loads((await kv.get(key)).value or b"{}") for key in keys]
    streams = [_stream_row(v) for v in values if "stream" in v]
    refusals = {v["device"]: v for v in values if "rejected" in v}
    devices = sorted({s.device for s in streams} | set(refusals))
    return [_device_row(d, streams, refusals.get(d, {})) for d in devices], streams


def _stream_row(value: dict[str, Any]) -> StreamRow:
    return StreamRow(
        value["device"], value["epoch"], value["stream"], int(value["upto_seq"]),
        int(value["events"]), int(value["duplicates"]), 0, 0, float(value["last_seen"]),
        value.get("newest_event_time"),
    )  # fmt: skip


def _device_row(device: str, streams: list[StreamRow], refused: dict[str, Any]) -> DeviceRow:
    mine = [s for s in streams if s.device == device]
    seen = [s.updated_at for s in mine] + [float(refused.get("last_rejected_at", 0.0))]
    newest = [s.last_event_time for s in mine if s.last_event_time is not None]
    return DeviceRow(
        device, min(seen), max(seen), mine[-1].epoch if mine else "", len(mine),
        sum(s.events for s in mine), sum(s.duplicates for s in mine), 0, 0,
        max(newest, default=None), None, int(refused.get("rejected", 0)),
        refused.get("last_rejection"),
    )  # fmt: skip

"""The hub's central store on NATS JetStream: any number of hubs, one deduplicated stream.

Commit protocol (`commit`), what makes the hub's ack safe:
  1. Refuse the group at once if NATS is disconnected (StoreUnavailableError: the hub
     retries and acks nothing), or if a message would exceed the server's max_payload
     (BatchRefusedError), before anything is published.
  2. Publish every message in order on one connection: gap records of a batch first,
     then its events in seq order. NATS keeps the order of one connection's writes, so
     the stream holds each device stream's events in seq order.
  3. Wait for every PubAck (in order; no progress for `publish_timeout` fails the commit
     with StoreUnavailableError). A PubAck marked duplicate means JetStream already
     had that `Nats-Msg-Id`: the event counts as a duplicate.
  4. Update the fleet positions (best effort, see jetstream_fleet) and return.
A commit that fails half-way has published a prefix of its messages; the retry publishes
all of them again and JetStream drops the prefix by message id, so the stream still holds
each event once and in order. That is why the stream's duplicate window must outlast
every retry (checked at start, jetstream_stream).

With granularity `batch`, step 2 publishes each batch as `_batch` slices of JSON lines,
one batch at a time: the hub reads the last slice on the device stream's subject, skips
the events it already holds (so a batch resent with other boundaries adds nothing), and
publishes with `Nats-Expected-Last-Subject-Sequence`, so two hubs racing on one device
stream cannot both write; the loser re-reads and retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import PubAck
from nats.js.client import JetStreamContext

from sync.hub.fleet import DeviceRow, StreamRow
from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.jetstream_fleet import FleetPositions, read_fleet
from sync.hub.jetstream_messages import (
    EXPECTED_LAST_SUBJECT_SEQ,
    H_EPOCH,
    H_LAST_SEQ,
    OutMessage,
    base_subject,
    batch_messages,
    event_message,
    gap_message,
)
from sync.hub.jetstream_stream import JetStreamConfigError, connect, ensure_stream
from sync.hub.store import BatchRefusedError, CommitResult, StoreUnavailableError
from sync.wire import Batch

log = logging.getLogger(__name__)

_TOO_LARGE: Final = frozenset({10054})  # "message size exceeds maximum allowed"
_WRONG_LAST_SEQ: Final = 10071
_RACE_ATTEMPTS: Final = 5
_WINDOW: Final = 1000  # messages; publish_async allows 4,000 in flight


class JetStreamCentralStore:
    """Commits batches as JetStream messages; see the module docstring for the protocol."""

    def __init__(self, config: JetStreamStoreConfig, nc: Client, js: JetStreamContext) -> None:
        self.config = config
        self._nc = nc
        self._js = js
        self._prefix = config.subject_prefix
        self._timeout = config.publish_timeout
        self._fleet = FleetPositions(js, config.fleet_bucket, config.storage, config.replicas)

    @classmethod
    async def open(
        cls, config: JetStreamStoreConfig, name: str = "edgestream-hub"
    ) -> JetStreamCentralStore:
        """Connect and ensure the stream; JetStreamConfigError if it does not match."""
        nc = await connect(config, name)
        js = nc.jetstream(timeout=config.publish_timeout)
        try:
            await ensure_stream(js, config)
        except JetStreamConfigError:
            await nc.close()
            raise
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            await nc.close()
            raise StoreUnavailableError(f"JetStream is not available: {exc!r}") from exc
        return cls(config, nc, js)

    @property
    def description(self) -> str:
        """Where this store writes, for log lines."""
        return f"JetStream stream {self.config.stream} at {', '.join(self.config.servers)}"

    async def commit(self, batches: Sequence[Batch]) -> list[CommitResult]:
        """Publish every batch and wait for all acknowledgements (steps 1 to 4)."""
        if not self._nc.is_connected:
            raise StoreUnavailableError("JetStream store: not connected to NATS")
        try:
            if self.config.granularity == "event":
                results = await self._commit_events(batches)
            else:
                results = [await self._commit_sliced(batch) for batch in batches]
        except nats.errors.MaxPayloadError as exc:
            raise BatchRefusedError(f"JetStream refused a message: {exc!r}") from exc
        except nats.js.errors.APIError as exc:
            raise _classified(exc) from exc
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"JetStream store: {exc!r}") from exc
        await self._fleet.record(batches, results)
        return results

    async def _commit_events(self, batches: Sequence[Batch]) -> list[CommitResult]:
        plans = [self._event_plan(batch) for batch in batches]
        acks = await self._publish_in_order([m for plan in plans for m in plan])
        results, start = [], 0
        for plan in plans:
            mine = acks[start : start + len(plan)]
            start += len(plan)
            counted = [(m, a) for m, a in zip(plan, mine, strict=True) if m.events]
            duplicates = sum(1 for _, ack in counted if ack.duplicate)
            results.append(CommitResult(len(counted) - duplicates, duplicates))
        return results

    def _event_plan(self, batch: Batch) -> list[OutMessage]:
        gaps = [gap_message(self._prefix, batch, gap) for gap in batch.gaps]
        events = [event_message(self._prefix, batch, event) for event in batch.events]
        plan = gaps + events
        self._check_sizes(batch, plan)
        return plan

    def _check_sizes(self, batch: Batch, plan: list[OutMessage]) -> None:
        limit = self._nc.max_payload
        for message in plan:
            if message.size > limit:
                seq = message.headers.get("Edgestream-Seq", "?")
                raise BatchRefusedError(
                    f"event {seq} of {batch.device}/{batch.stream} is {message.size} bytes, "
                    f"over the NATS server's max_payload of {limit} bytes"
                )

    async def _publish_in_order(self, messages: Sequence[OutMessage]) -> list[PubAck]:
        """Write every message in order, then collect the acks; cancel leftovers on failure.

        `publish_async` queues a message's bytes without yielding to the event loop, so
        the order on the wire is the order here, and NATS keeps one connection's order.
        Every `_WINDOW` messages the oldest window's acks are awaited: that bounds what is
        in flight (below publish_async's limit, so it never stalls) and lets the client's
        flusher write the queued window in one go instead of one write per message.
        """
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for i, m in enumerate(messages):
                if i >= 2 * _WINDOW and i % _WINDOW == 0:
                    await self._acked(futures[i - _WINDOW - 1])
                futures.append(await self._js.publish_async(
                    m.subject, m.payload, wait_stall=None, headers=m.headers
                ))  # fmt: skip
            return [await self._acked(future) for future in futures]
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()  # frees its slot of publish_async's in-flight limit

    async def _acked(self, future: asyncio.Future[PubAck]) -> PubAck:
        if future.done():
            return future.result()
        async with asyncio.timeout(self._timeout):  # not wait_for: it can lose a cancel
            return await future

    async def _commit_sliced(self, batch: Batch) -> CommitResult:
        """Granularity batch: gaps, then the events JetStream lacks, as `_batch` slices."""
        await self._publish_in_order([gap_message(self._prefix, batch, g) for g in batch.gaps])
        subject = f"{base_subject(self._prefix, batch)}._batch"
        committed = 0
        for _ in range(_RACE_ATTEMPTS):
            held, expected = await self._last_slice(subject, batch.epoch)
            fresh = [e for e in batch.events if e.seq > held]
            try:
                for message in batch_messages(self._prefix, batch, fresh, self._nc.max_payload):
                    ack = await self._publish_after(message, expected)
                    committed += 0 if ack.duplicate else message.events
                    expected = ack.seq
            except nats.js.errors.APIError as exc:
                if exc.err_code != _WRONG_LAST_SEQ:
                    raise
                continue  # another hub wrote to this device stream meanwhile: re-read
            return CommitResult(committed, len(batch.events) - committed)
        raise StoreUnavailableError(f"{subject} kept changing under {_RACE_ATTEMPTS} attempts")

    async def _last_slice(self, subject: str, epoch: str) -> tuple[int, int]:
        """(highest seq held for this epoch, stream sequence of the subject's last message)."""
        try:
            last = await self._js.get_last_msg(self.config.stream, subject)
        except nats.js.errors.NotFoundError:
            return -1, 0
        headers: dict[str, Any] = last.headers or {}
        held = int(headers.get(H_LAST_SEQ, -1)) if headers.get(H_EPOCH) == epoch else -1
        return held, int(last.seq or 0)

    async def _publish_after(self, message: OutMessage, expected: int) -> PubAck:
        headers = {**message.headers, EXPECTED_LAST_SUBJECT_SEQ: str(expected)}
        return await self._js.publish(
            message.subject, message.payload, timeout=self._timeout, headers=headers
        )

    async def record_rejection(self, device: str, reason: str) -> None:
        """Count a refused batch in the fleet bucket (best effort, like the positions)."""
        await self._fleet.record_rejection(device, reason)

    async def fleet(self) -> tuple[list[DeviceRow], list[StreamRow]]:
        """Devices and streams as the fleet bucket holds them (for the fleet page)."""
        return await read_fleet(self._js, self.config.fleet_bucket)

    async def close(self) -> None:
        """Close the NATS connection (every commit has already been acknowledged)."""
        await self._nc.close()


def _classified(exc: nats.js.errors.APIError) -> Exception:
    """A refusal for the message's content, or a server state that may clear."""
    if exc.err_code in _TOO_LARGE:
        return BatchRefusedError(f"JetStream refused the batch: {exc.description}")
    return StoreUnavailableError(f"JetStream store: {exc.description} (code {exc.err_code})")

"""The hub: receive device batches over MQTT, verify, deduplicate, commit, then ack.

Protocol for each batch (the order is what makes delivery exactly-once):
  1. Receive the batch on `<prefix>/<device>/up` (QoS 1, persistent session, manual ack:
     the broker keeps redelivering it until step 4).
  2. Decode and verify: wire version, checksum, and that the device in the header is the
     device whose topic it arrived on (a device may only write its own data).
  3. Commit it to the central store in one transaction with the dedup key
     (device, epoch, stream, seq); batches waiting together share the transaction.
  4. Acknowledge the MQTT message to the broker, and publish the hub's ack to
     `<prefix>/<device>/ack`, which is what lets the device advance its cursor.
A crash between 3 and 4 makes the broker redeliver and the device retry: step 3 then
adds nothing (duplicates are ignored and counted) and step 4 completes the handshake.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sync.backoff import retry_until_done
from sync.condition_log import ConditionLog, Wording
from sync.device_keys import KeyFileError, load_device_keys, load_dictionary
from sync.failpoints import failpoint
from sync.hub.config import HubConfig
from sync.hub.rejections import rejection_class
from sync.hub.republish import Republisher
from sync.hub.store import BatchRefusedError, CentralStore, CommitResult, StoreUnavailableError
from sync.mqtt.connection import MqttConnection
from sync.mqtt.message import MqttMessage
from sync.wire import Ack, Batch, WireFormatError, ack_topic, decode, dictionary_id

log = logging.getLogger(__name__)

_MAX_GROUP = 64

_REJECT_WORDING = Wording(
    started="Rejected a batch on %(topic)s: %(detail)s",
    still="Still rejecting batches of %(device)s: %(count)s more in the last %(interval)s; "
    "latest: %(detail)s",
    cleared="Accepted a batch of %(device)s again after rejecting %(total)s in %(duration)s",
)
_COUNT_WORDING = Wording(
    started="Could not count a rejection in the store: %(detail)s",
    still="Still cannot count rejections in the store: %(count)s more in the last "
    "%(interval)s; latest: %(detail)s",
    cleared="Counting rejections in the store works again after %(total)s failure(s) in "
    "%(duration)s",
)


@dataclass(slots=True)
class HubStats:
    """Counters the hub prints and exposes; cumulative since start."""

    batches: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_by: dict[str, int] = field(default_factory=dict)
    """Refusals by class (sync/hub/rejections.py), for a bounded metric label."""


@dataclass(frozen=True, slots=True)
class _Received:
    device: str
    message: MqttMessage


class Hub:
    """One hub process: an MQTT subscription feeding a group-committing store."""

    def __init__(
        self, config: HubConfig, store: CentralStore, republisher: Republisher | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.republisher = republisher
        self.stats = HubStats()
        self._keys = load_device_keys(config.device_keys_file) if config.device_keys_file else None
        self._dictionaries = _load_dictionaries(config.dictionaries)
        self._inbox: asyncio.Queue[_Received] = asyncio.Queue()
        self._rejections = ConditionLog("hub", logger=log, wording=_REJECT_WORDING)
        """Per (device, reason class): a device that keeps sending bad batches is one line."""
        self._count_failures = ConditionLog("hub", logger=log, wording=_COUNT_WORDING)
        self._prefix = config.topic_prefix
        client_id = config.broker.client_id or f"edgestream-hub-{config.hub_id}"
        self.connection = MqttConnection(
            config.broker,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
            subscriptions=[(self._subscription(), 1)],
            on_message=self._on_message,
            name=f"hub.{config.hub_id}",
        )
        self.replies = MqttConnection(
            config.broker,
            client_id=f"{client_id}-acks",
            clean_session=True,
            name=f"hub.{config.hub_id}.acks",
        )
        """Acks go out on a connection of their own: the receiving one pauses its reading
        when batches pile up, and a publish on it would then wait for a PUBACK it cannot
        read while the commit loop that would resume reading waits for that publish."""

    def _subscription(self) -> str:
        topic = f"{self._prefix}/+/up"
        group = self.config.shared_group
        return f"$share/{group}/{topic}" if group else topic

    async def run(self) -> None:
        """Serve until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.connection.run(), name="edgestream[hub].mqtt")
            tasks.create_task(self.replies.run(), name="edgestream[hub].acks")
            tasks.create_task(self._commit_loop(), name="edgestream[hub].commit")
            if self.republisher is not None:
                tasks.create_task(self.republisher.run(), name="edgestream[hub].republish")

    def _on_message(self, message: MqttMessage) -> None:
        parts = message.topic.split("/")
        device = parts[-2] if len(parts) >= 2 else ""
        self._inbox.put_nowait(_Received(device, message))
        if self._inbox.qsize() > 4 * _MAX_GROUP:
            self.connection.pause_reading()

    async def _commit_loop(self) -> None:
        while True:
            group = [await self._inbox.get()]
            while len(group) < _MAX_GROUP and not self._inbox.empty():
                group.append(self._inbox.get_nowait())
            await self._handle_group(group)
            if self._inbox.qsize() < _MAX_GROUP:
                self.connection.resume_reading()

    async def _handle_group(self, group: list[_Received]) -> None:
        verdicts = await asyncio.to_thread(self._verify_all, group)  # Step 2, off the loop
        accepted = [
            (item, v) for item, v in zip(group, verdicts, strict=True) if isinstance(v, Batch)
        ]
        rejected = [
            (item, v) for item, v in zip(group, verdicts, strict=True) if isinstance(v, str)
        ]
        results, refused = await self._commit(accepted)  # Step 3
        failpoint("hub.after_commit")
        if self.republisher is not None and results:
            self.republisher.wake()
        acks = [self._ack(item, batch, res) for (item, batch), res in results]
        rejects = [self._reject(item, reason) for item, reason in rejected + refused]
        await asyncio.gather(*acks, *rejects)  # Step 4

    def _verify_all(self, group: list[_Received]) -> list[Batch | str]:
        return [self._verify(item) for item in group]

    def _verify(self, item: _Received) -> Batch | str:
        """The decoded batch, or the reason it is refused (never an exception)."""
        if self._keys is not None and item.device not in self._keys:
            return f"device {item.device!r} has no key in device_keys_file"
        lookup = None if self._keys is None else self._keys.get
        try:
            batch = decode(
                item.message.payload, self.config.max_batch_bytes,
                dictionaries=self._dictionaries, hmac_key_for=lookup,
            )  # fmt: skip
        except WireFormatError as exc:
            return str(exc)
        except Exception as exc:  # a decoder bug must not stop the hub for every device
            log.exception("Unexpected error decoding a batch on %s", item.message.topic)
            return f"undecodable batch: {exc!r}"
        if batch.device != item.device:
            return f"batch of device {batch.device!r} arrived on the topic of {item.device!r}"
        allowed = self.config.allowed_devices
        if allowed and batch.device not in allowed:
            return f"device {batch.device!r} is not in allowed_devices"
        return batch

    async def _commit(
        self, accepted: list[tuple[_Received, Batch]]
    ) -> tuple[list[tuple[tuple[_Received, Batch], CommitResult]], list[tuple[_Received, str]]]:
        """Commit the group in one transaction; if that fails, batch by batch.

        A batch the store refuses for its content (a value SQLite cannot hold) is
        rejected alone, so it can never block the other devices' batches. A failure of
        the store itself (disk full) is retried until it clears: nothing is acked.
        """
        if not accepted:
            return [], []
        try:
            results = await self._commit_retrying([b for _, b in accepted])
            return list(zip(accepted, results, strict=True)), []
        except BatchRefusedError:
            pass
        done: list[tuple[tuple[_Received, Batch], CommitResult]] = []
        refused: list[tuple[_Received, str]] = []
        for pair in accepted:
            try:
                (result,) = await self._commit_retrying([pair[1]])
                done.append((pair, result))
            except BatchRefusedError as exc:
                refused.append((pair[0], f"central store refused the batch: {exc}"))
        return done, refused

    async def _commit_retrying(self, batches: list[Batch]) -> list[CommitResult]:
        """A failing store (disk full, locked, I/O) is retried: nothing is acked meanwhile."""
        return await retry_until_done(
            lambda: self.store.commit(batches),
            what="Central store commit",
            errors=(StoreUnavailableError,),
            logger=log,
        )

    async def _ack(self, item: _Received, batch: Batch, result: CommitResult) -> None:
        self.stats.batches += 1
        self.stats.events += result.committed
        self.stats.duplicates += result.duplicates
        self._rejections.cleared_where(lambda k: isinstance(k, tuple) and k[0] == batch.device)
        ack = Ack(
            batch.batch_id, batch.stream, batch.epoch, batch.upto_seq, "ok",
            committed=result.committed, duplicates=result.duplicates,
        )  # fmt: skip
        self.connection.ack(item.message.mid, item.message.qos)
        payload = ack.to_bytes(self._ack_key(batch.device))
        await self.replies.publish(ack_topic(self._prefix, batch.device), payload, qos=1)

    def reload_keys(self) -> bool:
        """Read the device key file and the dictionaries again (SIGHUP); keep them on error.

        This is how a stolen device is revoked, or a key rotated, without a restart:
        edit `device_keys_file`, then `systemctl reload edgestream-hub`. A file that
        cannot be read leaves the keys in use unchanged.
        """
        config = self.config
        try:
            keys = load_device_keys(config.device_keys_file) if config.device_keys_file else None
            dictionaries = _load_dictionaries(config.dictionaries)
        except KeyFileError as error:
            log.error("Key reload refused; still using the previous keys: %s", error)
            return False
        self._keys, self._dictionaries = keys, dictionaries
        log.info("Reloaded %s device key(s) and %d dictionary(ies)",
                 "no" if keys is None else len(keys), len(dictionaries))  # fmt: skip
        return True

    def _ack_key(self, device: str) -> bytes | None:
        """The device's key signs its acks (a device with a key accepts no other)."""
        return None if self._keys is None else self._keys.get(device)

    async def _count_rejection(self, device: str, reason: str) -> None:
        """Best effort: a store that cannot count right now must not hold the hub up."""
        try:
            await self.store.record_rejection(device, reason)
        except Exception as exc:
            self._count_failures.failed(f"{device}: {exc}", kind=type(exc).__name__)
            return
        self._count_failures.cleared()

    async def _reject(self, item: _Received, reason: str) -> None:
        """Refuse a batch for good: ack it to the broker and tell the device why.

        The device keeps its events (its cursor does not move) and retries with
        backoff, so a hub misconfiguration loses nothing once it is fixed.
        """
        self.stats.rejected += 1
        kind = rejection_class(reason)
        self.stats.rejected_by[kind] = self.stats.rejected_by.get(kind, 0) + 1
        self._log_rejection(item, reason, kind)
        if item.device:
            await self._count_rejection(item.device, reason)
        self.connection.ack(item.message.mid, item.message.qos)
        if item.device:
            ack = Ack("", "", "", 0, "rejected", reason=reason)
            payload = ack.to_bytes(self._ack_key(item.device))
            await self.replies.publish(ack_topic(self._prefix, item.device), payload, qos=0)

    def _log_rejection(self, item: _Received, reason: str, kind: str) -> None:
        """Once per device and class of reason, then summaries: a broken device is one line."""
        fields = {"topic": item.message.topic, "device": item.device or "?"}
        self._rejections.failed(reason, key=(item.device, kind), kind=kind, fields=fields)


def _load_dictionaries(paths: tuple[str, ...]) -> dict[bytes, bytes]:
    """The trained wire dictionaries by id; an unreadable file stops the start."""
    return {dictionary_id(d): d for d in map(load_dictionary, paths)}

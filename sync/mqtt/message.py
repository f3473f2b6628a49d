"""What flows through a connection.

In: ``MqttMessage`` (plain data, detached from paho) and the ``Inbox`` that
holds messages while reading is paused and tracks which await a manual ack.
Out: the ``Outbox`` of publishes waiting for the broker's acknowledgement.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable

from paho.mqtt.client import MQTTMessage, MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from sync.mqtt.errors import MqttConnectionLost

_LOG = logging.getLogger("sync.mqtt.connection")


@dataclasses.dataclass(frozen=True, slots=True)
class MqttMessage:
    """One received PUBLISH.

    ``mid`` and ``qos`` are what ``MqttConnection.ack`` needs when the
    connection was opened with ``manual_ack=True``. ``dup`` is set when the
    broker redelivers a message it already sent on an earlier connection.
    ``received_at`` is wall-clock seconds (``time.time()``).
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool
    user_properties: tuple[tuple[str, str], ...]
    received_at: float

    @classmethod
    def from_paho(cls, message: MQTTMessage, received_at: float | None = None) -> MqttMessage:
        """Copy a paho message; paho reuses no buffers, but its object is mutable and untyped."""
        return cls(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=int(message.qos),
            retain=bool(message.retain),
            mid=int(message.mid),
            dup=bool(message.dup),
            user_properties=_user_properties(message),
            received_at=time.time() if received_at is None else received_at,
        )


def _user_properties(message: MQTTMessage) -> tuple[tuple[str, str], ...]:
    """MQTT 5 user properties; paho only sets the attribute when the packet carries some."""
    properties = message.properties
    pairs = getattr(properties, "UserProperty", None) if properties is not None else None
    if not pairs:
        return ()
    return tuple((str(key), str(value)) for key, value in pairs)


class Inbox:
    """Received messages on their way to ``on_message``.

    Two jobs: hold messages while reading is paused (paho's loop_read keeps
    handling packets after pause_reading() is called from inside a callback),
    and remember which QoS 1/2 messages still await a manual ack, so an ack
    for a message whose session the broker forgot is not sent for a stranger
    that reuses its packet id.
    """

    def __init__(
        self, on_message: Callable[[MqttMessage], None] | None, *, manual_ack: bool, name: str
    ) -> None:
        self.paused = False
        self._on_message = on_message
        self._manual_ack = manual_ack
        self._name = name
        self._held: collections.deque[MqttMessage] = collections.deque()
        self._awaiting_ack: dict[int, int] = {}
        self._owed_pubcomps: set[int] = set()

    def receive(self, message: MqttMessage) -> None:
        """Deliver now, or hold while paused (and behind anything already held, to keep order)."""
        if self._manual_ack and message.qos > 0:
            self._awaiting_ack[message.mid] = message.qos
        if self.paused or self._held:
            self._held.append(message)
            return
        self._deliver(message)

    def release_held(self) -> None:
        """Deliver held messages in order until done or paused again by the handler."""
        while self._held and not self.paused:
            self._deliver(self._held.popleft())

    def take_ack(self, mid: int, qos: int, *, connected: bool) -> bool:
        """Whether an ack for ``mid`` should go on the wire now.

        While disconnected a QoS 1 ack is dropped (the broker redelivers the
        message), but a QoS 2 PUBCOMP is owed: the broker only repeats PUBREL.
        """
        if not self._manual_ack or qos == 0:
            return False
        if self._awaiting_ack.pop(mid, None) is None:
            _LOG.debug("MQTT %s ignores ack of message %d: not awaiting it", self._name, mid)
            return False
        if not connected:
            if qos == 2:
                self._owed_pubcomps.add(mid)
            _LOG.debug("MQTT %s cannot ack message %d while disconnected", self._name, mid)
            return False
        return True

    def session_started(self, session_present: bool) -> list[int]:
        """Return the QoS 2 mids whose PUBCOMP is owed; forget everything if the session is new."""
        owed = sorted(self._owed_pubcomps) if session_present else []
        if not session_present:
            self._awaiting_ack.clear()
        self._owed_pubcomps.clear()
        return owed

    def _deliver(self, message: MqttMessage) -> None:
        """An exception must not reach paho: it would leave paho's packet reader half-way."""
        if self._on_message is None:
            return
        try:
            self._on_message(message)
        except Exception:
            _LOG.exception("MQTT %s message handler failed for %s", self._name, message.topic)


class Outbox:
    """Publishes waiting for the broker: the in-flight window and a ``mid -> future`` map.

    The window caps unacknowledged QoS 1/2 publishes at ``max_inflight`` (so
    the 65,535 packet ids never run out) and at the broker's MQTT 5 Receive
    Maximum, which paho ignores (mosquitto answers the excess with "Quota
    exceeded"). Each future is completed by paho's on_publish: PUBACK or
    PUBCOMP for QoS 1/2, the socket write for QoS 0.
    """

    def __init__(self, max_inflight: int) -> None:
        if not 1 <= max_inflight <= 65535:
            msg = f"max_inflight must be between 1 and 65535, got {max_inflight}"
            raise ValueError(msg)
        self._max_inflight = max_inflight
        self.window = Window(max_inflight)
        self._futures: dict[int, asyncio.Future[ReasonCode | None]] = {}
        self._qos0_mids: set[int] = set()

    def limit_to(self, receive_maximum: int | None) -> None:
        """Apply the Receive Maximum of a new connection (None: the broker sets none)."""
        self.window.resize(min(self._max_inflight, receive_maximum or self._max_inflight))

    async def wait(self, info: MQTTMessageInfo, qos: int) -> ReasonCode | None:
        """Wait for on_publish for this mid; the entry is removed whatever happens."""
        mid = info.mid
        future: asyncio.Future[ReasonCode | None] = asyncio.get_running_loop().create_future()
        self._futures[mid] = future
        if qos == 0:
            self._qos0_mids.add(mid)
        try:
            # paho may have called on_publish before publish() returned.
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and info.is_published():
                return None
            return await future
        finally:
            if self._futures.get(mid) is future:
                del self._futures[mid]
            self._qos0_mids.discard(mid)

    def published(self, mid: int, reason: ReasonCode) -> None:
        """on_publish: complete the waiting publish, if it still waits."""
        future = self._futures.get(mid)
        if future is not None and not future.done():
            future.set_result(reason)

    def connection_lost(self) -> None:
        """paho silently drops queued QoS 0 packets at reconnect: make their publishers retry.

        QoS 1/2 futures keep waiting, because paho re-sends those messages itself.
        """
        for mid in self._qos0_mids:
            self._fail(mid, MqttConnectionLost())

    def close(self, error: Exception) -> None:
        """Fail every waiting publish: nobody will complete them any more."""
        for mid in list(self._futures):
            self._fail(mid, error)

    def _fail(self, mid: int, error: Exception) -> None:
        future = self._futures.get(mid)
        if future is not None and not future.done():
            future.set_exception(error)


class Window:
    """A FIFO counting semaphore whose size can change while publishes wait.

    asyncio.Semaphore is not used because in Python 3.11 it scans all waiters
    on every release, quadratic with 20,000 publishes queued behind 1,000 slots.
    """

    def __init__(self, size: int) -> None:
        self._limit = size
        self._used = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def resize(self, size: int) -> None:
        self._limit = size
        self._wake()

    async def __aenter__(self) -> None:
        if self._used < self._limit and not self._waiters:
            self._used += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._used -= 1  # granted a slot, then cancelled: pass it on
                self._wake()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._used -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._used < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._used += 1
                waiter.set_result(None)

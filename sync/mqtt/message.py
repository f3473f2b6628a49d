"""The message handed to ``on_message`` (plain data, detached from paho) and its inbox."""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable

from paho.mqtt.client import MQTTMessage

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

"""Turn a received MQTT message into a queue event, or into a dead letter with a reason.

Decoding happens before the event is stored so that bad input is caught at the door:
a malformed, non-UTF-8 or oversized payload is never acknowledged as data, it is
stored in the dead-letter stream with its reason (and counted), and the daemon goes on.
The formats themselves are parsed in `agent.sources.payloads`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Final

import orjson

from agent.config.mqtt_source import KeyConfig, MqttSourceConfig, PayloadConfig
from agent.pipeline.expr import EventMeta, compile_expression
from agent.queue import NewEvent, encode_payload
from agent.sources.payloads import DecodeFailure, parser_for
from sync.mqtt.message import MqttMessage

DEADLETTER_SAMPLE = 1024
TIME_DIVISOR: Final = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
"""Epoch numbers in these units, divided by this, are seconds (division rounds exactly)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be decoded: the reason, and the event that records it."""

    reason: str
    event: NewEvent


def digest(message: MqttMessage) -> bytes:
    """A short fingerprint of topic and payload, to recognise a redelivered message."""
    h = hashlib.blake2b(message.topic.encode(), digest_size=8)
    h.update(message.payload)
    return h.digest()


class MessageDecoder:
    """Decodes the messages of one MQTT source: format, time, extracted fields, tags, key.

    Built once per source, so expressions are compiled once. A payload stored as
    received (JSON without extraction or tags) keeps its exact bytes; any other is
    stored as the JSON object the decoding produced.
    """

    def __init__(self, config: MqttSourceConfig) -> None:
        self._source = config.name
        self._payload = config.payload
        self._key = config.key
        self._parse = None if config.payload.format == "raw" else parser_for(config.payload)
        self._extract = [(n, compile_expression(t).fn) for n, t in config.payload.extract.items()]
        self._key_fn = (
            None if config.key.expression is None else compile_expression(config.key.expression).fn
        )
        self._tags = dict(config.tags)
        self._topic_tags = tuple(config.topic_tags.items())
        self._user_properties = config.user_properties
        self._rewrites = bool(config.payload.transforms or self._tags or self._topic_tags)

    def decode(self, message: MqttMessage) -> NewEvent | DeadLetter:
        """The event a message becomes, or a dead letter saying why it cannot be one.

        Never raises: whatever a payload holds (an integer too large to encode, an
        extraction giving something JSON cannot carry), one message must not stop the
        source, and a message that raised would be redelivered and raise again.
        """
        try:
            return self._decode(message)
        except Exception as exc:
            detail = f"cannot be stored: {type(exc).__name__}: {exc}"
            return dead_letter(message, self._source, "undecodable", detail[:500])

    def _decode(self, message: MqttMessage) -> NewEvent | DeadLetter:
        raw = message.payload
        if len(raw) > self._payload.max_size:
            reason = f"oversized: {len(raw)} bytes, max_size is {self._payload.max_size}"
            return dead_letter(message, self._source, "oversized", reason)
        value: Any = None
        if self._parse is not None:
            value = self._parse(raw)
            if isinstance(value, DecodeFailure):
                return dead_letter(message, self._source, value.kind, value.detail)
        event_time, future = trusted_time(
            _event_time(value, self._payload, message.received_at),
            message.received_at, self._payload.max_future,
        )  # fmt: skip
        headers: dict[str, Any] = {} if future is None else {"time_in_future": future}
        if self._rewrites:
            value = self._enriched(value, message, event_time)
            raw = encode_payload(value)
        if self._user_properties and message.user_properties:
            headers["user_properties"] = user_properties(message.user_properties)
        key = self._key_of(message, value, event_time)
        encoded = orjson.dumps(headers).decode() if headers else None
        return NewEvent(event_time, message.received_at, key, message.topic, raw, encoded)

    def _enriched(self, value: Any, message: MqttMessage, event_time: float) -> dict[str, Any]:
        """The payload with extracted fields, topic tags and tags (in that order of precedence)."""
        fields = value if isinstance(value, dict) else {"value": value}
        if self._extract:
            meta = EventMeta(message.topic, None, event_time, message.received_at)
            found = {name: fn(fields, meta) for name, fn in self._extract}
            extracted = {name: v for name, v in found.items() if v is not None}
            fields = extracted if self._payload.extract_only else {**fields, **extracted}
        if self._topic_tags:
            levels = message.topic.split("/")
            fields = {**fields, **_topic_fields(levels, self._topic_tags)}
        return {**fields, **self._tags} if self._tags else fields

    def _key_of(self, message: MqttMessage, value: Any, event_time: float) -> str | None:
        if self._key_fn is not None:
            meta = EventMeta(message.topic, None, event_time, message.received_at)
            found = self._key_fn(value, meta)
            return None if found is None else str(found)
        return _key(message.topic, value, self._key)


DEFAULT_MAX_FUTURE: Final = 86400.0
"""How far ahead of its arrival an event time may lie before it is distrusted."""


def trusted_time(when: float, arrival: float, max_future: float) -> tuple[float, str | None]:
    """`when`, or the arrival time and the distrusted time's text when `when` lies more
    than `max_future` ahead (a wrong unit or clock) or is not finite: one bad reading must
    not close every window early. The text goes in the event's `time_in_future` header."""
    if not math.isfinite(when) or when - arrival > max_future:
        return arrival, repr(when)
    return when, None


def user_properties(pairs: tuple[tuple[str, str], ...]) -> dict[str, str | list[str]]:
    """MQTT 5 user properties as an object; a name sent several times keeps every value."""
    found: dict[str, str | list[str]] = {}
    for name, value in pairs:
        before = found.get(name)
        if before is None:
            found[name] = value
        elif isinstance(before, list):
            before.append(value)
        else:
            found[name] = [before, value]
    return found


def _topic_fields(levels: list[str], wanted: tuple[tuple[str, int], ...]) -> dict[str, str]:
    return {name: levels[index] for name, index in wanted if -len(levels) <= index < len(levels)}


def _event_time(value: Any, cfg: PayloadConfig, received_at: float) -> float:
    """The payload's time field scaled to seconds, else the time of receipt."""
    if cfg.time_field is None or not isinstance(value, dict):
        return received_at
    found = field_path(value, cfg.time_field)
    if isinstance(found, bool) or not isinstance(found, int | float) or abs(found) > 1e300:
        return received_at
    return float(found) / TIME_DIVISOR[cfg.time_unit]  # division rounds exactly; * 1e-3 does not


def _key(topic: str, value: Any, cfg: KeyConfig) -> str | None:
    if cfg.topic_segment is not None:
        segments = topic.split("/")
        index = cfg.topic_segment
        return segments[index] if -len(segments) <= index < len(segments) else None
    if cfg.field is not None and isinstance(value, dict):
        found = field_path(value, cfg.field)
        return None if found is None else str(found)
    return None


def field_path(value: dict[str, Any], path: str) -> Any:
    """Follow a dotted path into nested objects; None when any step is missing."""
    current: Any = value
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def dead_letter(message: MqttMessage, source: str, kind: str, detail: str) -> DeadLetter:
    """Record undecodable input with its reason; only a sample of a huge payload is kept."""
    headers = orjson.dumps(
        {"reason": kind, "detail": detail, "source": source, "size": len(message.payload)}
    ).decode()
    event = NewEvent(
        message.received_at, message.received_at, source, message.topic,
        message.payload[:DEADLETTER_SAMPLE], headers,
    )  # fmt: skip
    return DeadLetter(kind, event)

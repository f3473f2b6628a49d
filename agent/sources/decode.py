"""Turn a received MQTT message into a queue event, or into a dead letter with a reason.

Decoding happens before the event is stored so that bad input is caught at the door:
a malformed, non-UTF-8 or oversized payload is never acknowledged as data, it is
stored in the dead-letter stream with its reason (and counted), and the daemon goes on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from agent.config.model import KeyConfig, PayloadConfig
from agent.queue import NewEvent
from sync.mqtt.message import MqttMessage

DEADLETTER_SAMPLE = 1024
_TIME_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


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


def decode_message(
    message: MqttMessage, payload_cfg: PayloadConfig, key_cfg: KeyConfig, source: str
) -> NewEvent | DeadLetter:
    """Decode one message according to the source's payload and key settings."""
    raw = message.payload
    if len(raw) > payload_cfg.max_size:
        reason = f"oversized: {len(raw)} bytes, max_size is {payload_cfg.max_size}"
        return dead_letter(message, source, "oversized", reason)
    value: Any = None
    if payload_cfg.format == "json":
        parsed = _parse_json(raw)
        if isinstance(parsed, DecodeFailure):
            return dead_letter(message, source, parsed.kind, parsed.detail)
        value = parsed
    event_time = _event_time(value, payload_cfg, message.received_at)
    key = _key(message.topic, value, key_cfg)
    headers = None
    if event_time - message.received_at > payload_cfg.max_future:
        headers = orjson.dumps({"time_in_future": repr(event_time)}).decode()
        event_time = message.received_at
    return NewEvent(event_time, message.received_at, key, message.topic, raw, headers)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a payload is not acceptable JSON."""

    kind: str
    detail: str


def _parse_json(raw: bytes) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return DecodeFailure("invalid_utf8", "payload is not valid UTF-8")
        return DecodeFailure("invalid_json", f"payload is not valid JSON: {exc}")
    if isinstance(value, bool) or not isinstance(value, dict | int | float):
        kind = type(value).__name__
        return DecodeFailure("unsupported_json", f"expected a JSON object or number, got {kind}")
    return value


def _event_time(value: Any, cfg: PayloadConfig, received_at: float) -> float:
    """The payload's time field scaled to seconds, else the time of receipt."""
    if cfg.time_field is None or not isinstance(value, dict):
        return received_at
    found = field_path(value, cfg.time_field)
    if isinstance(found, bool) or not isinstance(found, int | float):
        return received_at
    return float(found) / _TIME_DIVISOR[cfg.time_unit]  # division rounds exactly; * 1e-3 does not


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

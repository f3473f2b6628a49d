"""Config of the hub's MQTT republish sink: decoded events on a topic tree of a broker."""

from __future__ import annotations

import string
from typing import Final

from sync.config.errors import IssueKind, Problem
from sync.config.fields import config_class, setting
from sync.mqtt.config import MqttConnectionConfig

PLACEHOLDERS: Final = frozenset({"device", "epoch", "stream", "key", "seq", "topic"})


@config_class
class RepublishConfig:
    """Republishes every newly committed event over MQTT, for consumers that speak only MQTT."""

    broker: MqttConnectionConfig | None = setting(
        default=None,
        doc="Broker to republish to; unset uses the hub's own broker (with its own client id).",
    )
    topic: str = setting(
        default="edgestream/fleet/{device}/{stream}/{key}",
        doc="Topic of each event; {device}, {epoch}, {stream}, {key}, {seq} and {topic} "
        "(the event's original topic) are filled in, a missing key as `_`.",
    )
    qos: int = setting(
        default=1,
        doc="QoS of republished messages; the sink moves on only after the broker's PUBACK.",
        minimum=0,
        maximum=1,
    )
    retain: bool = setting(
        default=False,
        doc="Retain each message, so a dashboard shows every topic's last value at once.",
    )
    read_batch: int = setting(
        default=1000,
        doc="Events read from the store and published before their progress is saved.",
        minimum=1,
        maximum=100_000,
    )

    def check(self) -> list[Problem]:
        try:
            names = {n for _, n, _, _ in string.Formatter().parse(self.topic) if n is not None}
        except ValueError as exc:
            return [Problem("topic", f"bad topic template: {exc}", IssueKind.WRONG_TYPE)]
        unknown = sorted(names - PLACEHOLDERS)
        if unknown:
            allowed = ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
            message = f"unknown placeholder {{{unknown[0]}}} (use {allowed})"
            return [Problem("topic", message, IssueKind.WRONG_TYPE)]
        return []

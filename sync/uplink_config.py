"""Settings of the edge-to-hub uplink: where batches go, how large they grow, what they may cost."""

from __future__ import annotations

from typing import Final, Literal

from sync.config.errors import Problem
from sync.config.fields import config_class, setting
from sync.config.units import Duration, Size
from sync.mqtt.config import MqttConnectionConfig

DEVICE_ID_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
"""Device and hub ids: they appear in MQTT topics and client ids, so no `/`, `+`, `#` or spaces."""

DrainOrder = Literal["oldest_first", "newest_first"]


@config_class
class UplinkStreamConfig:
    """How one uplink stream competes for a metered link: its priority and its drain order."""

    priority: int = setting(
        default=0,
        doc="Streams with a higher priority get the bandwidth cap's tokens first (alerts 10, "
        "bulk telemetry 0).",
        minimum=-1000,
        maximum=1000,
    )
    drain_order: DrainOrder = setting(
        default="oldest_first",
        doc="Whether a backlog is sent oldest first (strict order) or newest first, the "
        "older events following as backfill.",
    )
    budget_exempt: bool = setting(
        default=False,
        doc="Keep sending this stream after the daily budget is spent (its bytes still count).",
    )


DEFAULT_STREAM: Final = UplinkStreamConfig()


@config_class
class UplinkConfig:
    """Store-and-forward to the hub: streams marked `uplink: true` go in acknowledged batches."""

    broker: MqttConnectionConfig = setting(
        doc="Broker shared with the hub; batches are published there and acknowledged by the hub."
    )
    topic_prefix: str = setting(
        default="edgestream",
        doc="First topic level of uplink traffic; must match the hub's topic_prefix.",
        pattern=r"[^/+#\s]+(/[^/+#\s]+)*",
    )
    batch_max_events: int = setting(
        default=1000,
        doc="A batch is sent once it holds this many events.",
        minimum=1,
        maximum=100000,
    )
    batch_min_events: int = setting(
        default=10,
        doc="Smallest batch size the adaptive sizing shrinks to after timeouts on a poor link "
        "(capped at batch_max_events).",
        minimum=1,
        maximum=100000,
    )
    adaptive_batch: bool = setting(
        default=True,
        doc="Halve the batch size after an ack timeout and grow it back while acks come fast.",
    )
    batch_max_bytes: Size = setting(
        default=1024**2,
        doc="A batch is sent before its uncompressed size would pass this; "
        "keep it below the hub's max_batch_bytes.",
        minimum=1024,
    )
    batch_max_delay: Duration = setting(
        default=1.0,
        doc="Longest time an event waits for its batch to fill before the batch is sent anyway.",
    )
    ack_timeout: Duration = setting(
        default=15.0,
        doc="How long to wait for the hub's acknowledgement before sending the batch again.",
        minimum=0.1,
    )
    compression_level: int = setting(
        default=3,
        doc="Zstandard level for batches: higher saves bandwidth and costs CPU on the device.",
        minimum=1,
        maximum=22,
    )
    qos: int = setting(
        default=1,
        doc="MQTT QoS of batch and acknowledgement messages (the hub's ack is what counts).",
        minimum=1,
        maximum=2,
    )
    max_bytes_per_second: Size | None = setting(
        default=None,
        doc="Bandwidth cap on the compressed batch bytes published, retries included; "
        "unset means unlimited.",
        example="20KiB",
        minimum=64,
    )
    daily_budget: Size | None = setting(
        default=None,
        doc="Compressed bytes the uplink may publish per UTC day; once spent, sending stops "
        "until midnight UTC while events keep being stored.",
        example="50MiB",
        minimum=1024,
    )
    wire_version: int = setting(
        default=2,
        doc="Wire format version the batches are written in: 2 (compact, columnar) or 1 "
        "for a hub older than version 2 (upgrade hubs first, then set 2).",
        minimum=1,
        maximum=2,
    )
    hmac_key_file: str | None = setting(
        default=None,
        doc="File holding this device's key (64 hex digits, `openssl rand -hex 32`); "
        "every batch is then signed with HMAC-SHA256, for a hub that checks signatures.",
        example="/etc/edgestream/device.key",
    )
    dictionary_file: str | None = setting(
        default=None,
        doc="Trained zstd dictionary (`edgestream wire train`) that small batches are "
        "compressed with; the hub must list the same file in its dictionaries.",
        example="/etc/edgestream/wire.dict",
    )
    streams: dict[str, UplinkStreamConfig] = setting(
        default={},
        doc="Per-stream uplink settings (priority, drain order, budget exemption), by stream name.",
        example={"alerts": {"priority": 10, "budget_exempt": True}},
    )
    connect_timeout: Duration | None = setting(
        default=None,
        doc="Overrides broker.connect_timeout for the uplink; 30s suits a cellular modem.",
        minimum=0.1,
    )
    keepalive: Duration | None = setting(
        default=None,
        doc="Overrides broker.keepalive for the uplink; 60s keeps carrier NAT entries alive.",
        maximum=65535.0,
    )
    reconnect_backoff_max: Duration | None = setting(
        default=None,
        doc="Overrides broker.backoff_max for the uplink; 300s bounds what failed "
        "handshakes cost on a metered link.",
        minimum=0.01,
    )

    def check(self) -> list[Problem]:
        if self.wire_version != 1:
            return []
        used = [k for k in ("hmac_key_file", "dictionary_file") if getattr(self, k)]
        return [Problem(k, "needs wire_version 2 (version 1 has no place for it)") for k in used]

    def stream(self, name: str) -> UplinkStreamConfig:
        """The settings of one stream, or the defaults when `streams` does not name it."""
        return self.streams.get(name, DEFAULT_STREAM)

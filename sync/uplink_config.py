"""Settings of the edge-to-hub uplink: where batches go and how large they grow."""

from __future__ import annotations

from typing import Final

from sync.config.fields import config_class, setting
from sync.config.units import Duration, Size
from sync.mqtt.config import MqttConnectionConfig

DEVICE_ID_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
"""Device and hub ids: they appear in MQTT topics and client ids, so no `/`, `+`, `#` or spaces."""


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

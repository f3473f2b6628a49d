"""Settings of the central hub, and `load_hub_config` to read them from YAML."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from sync.config.errors import IssueKind, Problem, describe
from sync.config.fields import TAGGED_BY_TYPE, config_class, setting
from sync.config.spec import load_config_file
from sync.config.units import Size
from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.republish_config import RepublishConfig
from sync.metrics_config import HubMetricsConfig
from sync.mqtt.config import MqttConnectionConfig
from sync.uplink_config import DEVICE_ID_PATTERN


@config_class
class SqliteStoreConfig:
    """The embedded central store: one SQLite file holding every device's events."""

    kind: ClassVar[str] = "sqlite"

    path: str = setting(
        default="./hub-data/central.db",
        doc="SQLite database file; its folder is created if missing.",
        example="/var/lib/edgestream-hub/central.db",
    )
    synchronous: Literal["full", "normal"] = setting(
        default="full",
        doc="SQLite synchronous mode: full survives power loss; "
        "normal is faster but may lose the last commits on power loss.",
    )


@config_class
class HubConfig:
    """The hub receives device batches over MQTT, stores them, then acknowledges them."""

    hub_id: str = setting(
        default="hub",
        doc="Name of this hub, used in its MQTT client id and logs.",
        pattern=DEVICE_ID_PATTERN,
    )
    broker: MqttConnectionConfig = setting(doc="Broker the devices' uplinks publish to.")
    topic_prefix: str = setting(
        default="edgestream",
        doc="First topic level of uplink traffic; must match the devices' uplink.topic_prefix.",
        pattern=r"[^/+#\s]+(/[^/+#\s]+)*",
    )
    store: Annotated[SqliteStoreConfig | JetStreamStoreConfig, TAGGED_BY_TYPE] = setting(
        default=SqliteStoreConfig(), doc="Where received events are stored, chosen by `type`."
    )
    max_batch_bytes: Size = setting(
        default=16 * 1024**2,
        doc="Largest batch accepted, compressed or not; bigger ones are refused "
        "(keep devices' batch_max_bytes below it).",
        minimum=1024,
    )
    allowed_devices: tuple[str, ...] = setting(
        default=(),
        doc="Device ids whose batches are accepted; empty accepts any device.",
        example=["greenhouse-1", "greenhouse-2"],
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        default="info", doc="Least severe log level written."
    )
    log_format: Literal["text", "json"] = setting(
        default="text", doc="Log line format: text for people, json for a log collector."
    )
    shared_group: str | None = setting(
        default=None,
        doc="Shared-subscription group (`$share/<group>/...`) so several hubs split the "
        "devices' traffic; unset subscribes normally.",
        example="hubs",
        pattern=r"[^/+#\s]+",
    )

    device_keys_file: str | None = setting(
        default=None,
        doc="File of `<device id> <hex key>` lines: when set, a batch is accepted only "
        "with a valid HMAC-SHA256 signature by its device's key, and devices not listed "
        "are refused.",
        example="/etc/edgestream-hub/device-keys",
    )
    dictionaries: tuple[str, ...] = setting(
        default=(),
        doc="Trained zstd dictionary files devices may compress with (every one a device "
        "uses must be listed; each batch names its dictionary by id).",
        example=["/etc/edgestream-hub/wire.dict"],
    )
    republish: RepublishConfig | None = setting(
        default=None,
        doc="Republish every newly committed event over MQTT (SQLite store only); "
        "unset republishes nothing.",
    )
    metrics: HubMetricsConfig = setting(
        default=HubMetricsConfig(),
        doc="Prometheus metrics and health endpoints, on loopback port 9109 by default.",
    )

    def check(self) -> list[Problem]:
        problems = [
            Problem(f"allowed_devices[{i}]", _bad_id(device), IssueKind.WRONG_TYPE)
            for i, device in enumerate(self.allowed_devices)
            if re.fullmatch(DEVICE_ID_PATTERN, device) is None
        ]
        if self.republish is not None and not isinstance(self.store, SqliteStoreConfig):
            message = (
                "needs the sqlite store; with another store, consumers read the "
                "central stream itself"
            )
            problems.append(Problem("republish", message))
        return problems


def _bad_id(device: str) -> str:
    return f"must match {DEVICE_ID_PATTERN}, got {describe(device)}"


def load_hub_config(path: str | Path, env: Mapping[str, str] = os.environ) -> HubConfig:
    """Read and validate a hub config file; raises ConfigError listing every problem."""
    return load_config_file(HubConfig, path, env)

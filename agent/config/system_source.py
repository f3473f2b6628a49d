"""Config of the `system` source: the device's own CPU, memory, disks, network, uptime."""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from sync.config.fields import config_class, setting
from sync.config.units import Duration

NAME_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"

SystemGroup = Literal[
    "cpu", "load", "memory", "disk", "diskio", "network", "uptime", "processes", "agent"
]
ALL_GROUPS: Final[tuple[SystemGroup, ...]] = (
    "cpu", "load", "memory", "disk", "diskio", "network", "uptime", "processes", "agent"
)  # fmt: skip


@config_class
class SystemSourceConfig:
    """Reads the device's CPU, load, memory, disks, network and uptime from procfs."""

    kind: ClassVar[str] = "system"

    name: str = setting(
        doc="Unique name of the source, used in logs and metrics.", pattern=NAME_PATTERN
    )
    stream: str = setting(doc="Stream the readings are appended to.", example="system")
    interval: Duration = setting(
        default=10.0, doc="Time between two readings of every group.", minimum=0.01
    )
    tags: dict[str, str] = setting(default={}, doc="Fields added to every event.")
    root: str = setting(
        default="/",
        doc="Filesystem root that holds proc/ (a fake tree in tests, / on a device).",
    )
    groups: tuple[SystemGroup, ...] = setting(
        default=ALL_GROUPS,
        doc="What to read: cpu, load, memory, disk, diskio, network, uptime, processes, "
        "agent (the agent's own RSS and CPU).",
    )
    mounts: tuple[str, ...] = setting(
        default=("/",), doc="Mount points whose disk usage is reported.", example=["/", "/boot"]
    )
    interfaces: tuple[str, ...] = setting(
        default=(),
        doc="Network interfaces reported; empty means every interface except lo.",
        example=["eth0", "wlan0"],
    )

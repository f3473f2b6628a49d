"""Config of the `system` source: the device's own CPU, memory, disks, network, uptime."""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from agent.config.sensors import PolledSourceKeys
from sync.config.fields import config_class, setting
from sync.config.units import Duration

SystemGroup = Literal[
    "cpu", "load", "memory", "disk", "diskio", "network", "uptime", "processes", "agent"
]
ALL_GROUPS: Final[tuple[SystemGroup, ...]] = (
    "cpu", "load", "memory", "disk", "diskio", "network", "uptime", "processes", "agent"
)  # fmt: skip


@config_class
class SystemSourceConfig(PolledSourceKeys):
    """Reads the device's CPU, load, memory, disks, network and uptime from procfs."""

    kind: ClassVar[str] = "system"

    interval: Duration = setting(
        default=10.0, doc="Time between two readings of every group.", minimum=0.01
    )
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

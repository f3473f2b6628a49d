"""Config of the polling sources that read Linux sysfs: thermal, 1-Wire and IIO sensors.

Each kind shares the polling keys (name, stream, interval, tags) and adds `root`, the
directory sysfs is mounted on; it is `/sys` on a device and a fake tree in tests.
"""

from __future__ import annotations

from typing import ClassVar

from agent.config.sensors import PolledSourceKeys
from sync.config.fields import config_class, setting
from sync.config.units import Duration

ROOT_DOC = "Directory where sysfs is mounted, normally /sys."


@config_class
class ThermalSourceConfig(PolledSourceKeys):
    """Board temperatures, fans, voltages and Raspberry Pi throttling from sysfs."""

    kind: ClassVar[str] = "thermal"

    interval: Duration = setting(
        default=10.0, doc="Time between two reads of the sensors.", minimum=0.001
    )
    root: str = setting(default="/sys", doc=ROOT_DOC)
    vcgencmd: str = setting(
        default="vcgencmd", doc="Path or command name of the Raspberry Pi vcgencmd tool."
    )
    throttling: bool = setting(
        default=True,
        doc="Report the firmware's under-voltage and throttling flags when vcgencmd exists.",
    )


@config_class
class W1SourceConfig(PolledSourceKeys):
    """Temperatures of 1-Wire sensors such as the DS18B20, read through w1_therm."""

    kind: ClassVar[str] = "w1"

    interval: Duration = setting(
        default=10.0, doc="Time between two reads of the sensors.", minimum=0.001
    )
    root: str = setting(default="/sys", doc=ROOT_DOC)


@config_class
class IioSourceConfig(PolledSourceKeys):
    """Channels of Industrial I/O devices such as ADCs, scaled to their units."""

    kind: ClassVar[str] = "iio"

    interval: Duration = setting(
        default=10.0, doc="Time between two reads of the devices.", minimum=0.001
    )
    root: str = setting(default="/sys", doc=ROOT_DOC)

"""Industrial I/O devices (ADCs, light, pressure, IMUs) read from sysfs.

Each device is `bus/iio/devices/iio:deviceN/` with a `name`. A channel is either
processed, `in_<channel>_input`, emitted as is, or raw, `in_<channel>_raw`, emitted as
(raw + offset) * scale. Scale and offset come from `in_<channel>_scale`/`_offset`, else
from the ones the driver shares by channel type (`in_voltage_scale` for
`in_voltage0_raw`); missing ones are 1 and 0. Values are in the IIO ABI's units
(millivolts, milli-degrees Celsius, ...). An unreadable channel is skipped and counted.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Final

from agent.config.sysfs_sources import IioSourceConfig
from agent.sources.polling import Reading

CHANNEL_FILE: Final = re.compile(r"in_(.+)_(raw|input)")
CHANNEL_TYPE: Final = re.compile(r"[a-z]+")


def read_number(path: Path) -> float:
    """A numeric attribute; OSError or ValueError when it cannot be read."""
    return float(path.read_text(encoding="ascii", errors="replace").strip())


def optional_number(device: Path, channel: str, attribute: str, default: float) -> float:
    """The channel's own attribute, else the one shared by its type, else `default`."""
    channel_type = channel_type_of(channel)
    for name in (f"in_{channel}_{attribute}", f"in_{channel_type}_{attribute}"):
        path = device / name
        if path.exists():
            return read_number(path)
    return default


def channel_type_of(channel: str) -> str:
    """`voltage` of `voltage0`, `accel` of `accel_x`: the leading lowercase letters."""
    match = CHANNEL_TYPE.match(channel)
    return match.group(0) if match else channel


def channels_of(device: Path) -> dict[str, Path]:
    """Channel name -> the file to read it from; a processed `_input` beats a `_raw`."""
    found: dict[str, Path] = {}
    for path in sorted(device.glob("in_*")):
        match = CHANNEL_FILE.fullmatch(path.name)
        if match is None:
            continue
        channel, kind = match.groups()
        if kind == "input" or channel not in found:
            found[channel] = path
    return found


def channel_value(device: Path, channel: str, path: Path) -> float:
    """The channel's value in ABI units; OSError or ValueError when unreadable."""
    value = read_number(path)
    if path.name.endswith("_input"):
        return value
    offset = optional_number(device, channel, "offset", 0.0)
    scale = optional_number(device, channel, "scale", 1.0)
    return (value + offset) * scale


class IioReader:
    """The `read` of an `iio` source; one reading per device, one field per channel."""

    def __init__(self, config: IioSourceConfig) -> None:
        self.config = config
        self.devices = Path(config.root) / "bus" / "iio" / "devices"
        self.skipped = 0
        """Channels that could not be read (each poll adds its own)."""

    async def read(self) -> list[Reading]:
        """Every device's channels; in a thread, as an ADC read may wait for a conversion."""
        return await asyncio.to_thread(self.scan)

    def scan(self) -> list[Reading]:
        """Read every device; raises only when there is no IIO device at all."""
        devices = sorted(self.devices.glob("iio:device*"))
        if not devices:
            raise RuntimeError(f"no IIO devices under {self.devices}")
        readings = []
        for device in devices:
            reading = self.device(device)
            if reading is not None:
                readings.append(reading)
        return readings

    def device(self, device: Path) -> Reading | None:
        """One device's readable channels; None when none could be read."""
        name = device_name(device)
        fields: dict[str, Any] = {}
        for channel, path in channels_of(device).items():
            try:
                fields[channel] = channel_value(device, channel, path)
            except (OSError, ValueError):
                self.skipped += 1
        if not fields:
            return None
        return Reading(name, {"device": name, **fields})


def device_name(device: Path) -> str:
    """The driver's `name` for the device, else its directory name."""
    try:
        return device.joinpath("name").read_text(encoding="ascii").strip() or device.name
    except OSError:
        return device.name

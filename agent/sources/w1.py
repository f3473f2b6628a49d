"""1-Wire thermometers (DS18B20 and kin) read through the kernel's w1_therm driver.

Each device is `bus/w1/devices/<family>-<id>/`. Newer kernels offer `temperature`
(millidegrees Celsius; empty when the read failed its CRC); older ones only `w1_slave`:

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

A failed CRC or an unparsable answer is skipped and counted in `crc_errors`, never
emitted as 0 °C. Exactly 85000 is the DS18B20's power-on reset value: the sensor
answered before its first conversion (typically after a brown-out), so it is skipped
and counted in `power_on_resets` rather than reported as 85 °C.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Final

from agent.config.sysfs_sources import W1SourceConfig
from agent.sources.polling import Reading

POWER_ON_RESET: Final = 85000
CRC_LINE: Final = re.compile(r"crc=[0-9a-fA-F]{2} (YES|NO)\s*$")
TEMP_LINE: Final = re.compile(r"t=(-?\d+)\s*$")


class CrcError(ValueError):
    """The sensor's answer failed its CRC or could not be parsed."""


def parse_w1_slave(text: str) -> int:
    """Millidegrees from a `w1_slave` answer; CrcError when it is not a good reading."""
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise CrcError(f"expected 2 lines, got {len(lines)}")
    crc, temp = CRC_LINE.search(lines[0]), TEMP_LINE.search(lines[1])
    if crc is None or crc.group(1) != "YES":
        raise CrcError("CRC check failed")
    if temp is None:
        raise CrcError("no t= value")
    return int(temp.group(1))


def parse_temperature(text: str) -> int:
    """Millidegrees from a `temperature` file; empty means the driver's CRC check failed."""
    try:
        return int(text.strip())
    except ValueError:
        raise CrcError(f"unparsable temperature {text.strip()!r}") from None


def read_millidegrees(device: Path) -> int | None:
    """The device's raw value, preferring `temperature`; None when not a thermometer."""
    for name, parse in (("temperature", parse_temperature), ("w1_slave", parse_w1_slave)):
        path = device / name
        if path.exists():
            return parse(path.read_text(encoding="ascii", errors="replace"))
    return None


class W1Reader:
    """The `read` of a `w1` source; counts bad answers instead of emitting them."""

    def __init__(self, config: W1SourceConfig) -> None:
        self.config = config
        self.devices = Path(config.root) / "bus" / "w1" / "devices"
        self.crc_errors = 0
        """Answers that failed their CRC or could not be parsed."""
        self.power_on_resets = 0
        """Answers of exactly 85 °C, the sensor's reset value, not a measurement."""
        self.read_errors = 0
        """Device files the kernel refused to read (sensor unplugged mid-read)."""

    async def read(self) -> list[Reading]:
        """One reading per thermometer that answered well.

        Runs in a thread: w1_therm blocks for the conversion (up to 750 ms a sensor).
        """
        return await asyncio.to_thread(self.scan)

    def scan(self) -> list[Reading]:
        """Read every device; raises only when the bus has no device at all."""
        devices = self.device_dirs()
        if not devices:
            raise RuntimeError(f"no 1-Wire devices under {self.devices}")
        readings = []
        for device in devices:
            reading = self.sensor(device)
            if reading is not None:
                readings.append(reading)
        return readings

    def device_dirs(self) -> list[Path]:
        """Slave devices on the bus; the bus masters are listed there too and skipped."""
        if not self.devices.is_dir():
            return []
        return sorted(
            path for path in self.devices.iterdir() if not path.name.startswith("w1_bus_master")
        )

    def sensor(self, device: Path) -> Reading | None:
        """The reading of one device; None when it is skipped (and counted)."""
        try:
            value = read_millidegrees(device)
        except CrcError:
            self.crc_errors += 1
            return None
        except OSError:
            self.read_errors += 1
            return None
        if value is None:
            return None  # another family (a switch, an EEPROM): not a thermometer
        if value == POWER_ON_RESET:
            self.power_on_resets += 1
            return None
        return Reading(device.name, {"sensor": device.name, "temp_c": value / 1000})

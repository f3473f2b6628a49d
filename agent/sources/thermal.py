"""Board health from sysfs: thermal zones, hwmon chips and Raspberry Pi throttling.

Thermal zones (`class/thermal/thermal_zone*/temp`, millidegrees Celsius) give one
reading per zone, keyed by the zone's `type`. hwmon chips (`class/hwmon/hwmon*/`) give
one reading per `temp*_input` (millidegrees), `fan*_input` (rpm) and `in*_input`
(millivolts), keyed `<chip>/<label or sensor>`. A file that cannot be read (the kernel
answers EIO or ENODATA for a sensor that is asleep or gone) is skipped and counted, so
one bad sensor never hides the others; only a read that finds nothing raises.

On a Raspberry Pi, `vcgencmd get_throttled` adds one reading keyed `throttling` with
the firmware's flags; bits 0-3 are the state now, bits 16-19 whether it happened since
boot (see THROTTLE_BITS).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any, Final

from agent.config.sysfs_sources import ThermalSourceConfig
from agent.sources.command import run_command
from agent.sources.polling import Reading

VCGENCMD_TIMEOUT: Final = 2.0

THROTTLE_BITS: Final = {
    "under_voltage_now": 0,  # supply below ~4.63 V right now
    "freq_capped_now": 1,  # ARM frequency capped right now
    "throttled_now": 2,  # throttled right now
    "soft_temp_limit_now": 3,  # soft temperature limit (60 °C by default) active now
    "under_voltage_occurred": 16,  # under-voltage has happened since boot
    "freq_capped_occurred": 17,  # frequency capping has happened since boot
    "throttled_occurred": 18,  # throttling has happened since boot
    "soft_temp_limit_occurred": 19,  # the soft temperature limit was hit since boot
}
"""Bits of `vcgencmd get_throttled`, as the Raspberry Pi documentation defines them."""

HWMON_UNITS: Final = {"temp": ("C", 1000.0), "fan": ("rpm", 1.0), "in": ("V", 1000.0)}
"""hwmon sensor type -> (unit emitted, divisor from the sysfs value to that unit)."""

HWMON_INPUT: Final = re.compile(r"(temp|fan|in)(\d+)_input")
THROTTLED: Final = re.compile(r"throttled=(0x[0-9a-fA-F]+)")


def read_text(path: Path) -> str:
    """A sysfs attribute without its trailing newline (raises OSError if unreadable)."""
    return path.read_text(encoding="ascii", errors="replace").strip()


def read_int(path: Path) -> int:
    """A sysfs integer attribute; OSError or ValueError when it cannot be read."""
    return int(read_text(path))


def text_or(path: Path, fallback: str) -> str:
    """A descriptive attribute (name, type, label), or `fallback` when absent or empty."""
    try:
        return read_text(path) or fallback
    except OSError:
        return fallback


def parse_throttled(output: str) -> dict[str, Any]:
    """Fields of `throttled=0x50005`; ValueError when the output has no such value."""
    match = THROTTLED.search(output)
    if match is None:
        raise ValueError(f"unexpected vcgencmd output: {output.strip()!r}")
    value = int(match.group(1), 16)
    flags = {name: bool(value >> bit & 1) for name, bit in THROTTLE_BITS.items()}
    return {"throttled": value, **flags}


class ThermalReader:
    """The `read` of a `thermal` source; counts what it had to skip."""

    def __init__(self, config: ThermalSourceConfig) -> None:
        self.config = config
        self.root = Path(config.root)
        self.skipped = 0
        """Zone or hwmon files that could not be read (each poll adds its own)."""
        self.throttling_errors = 0
        """vcgencmd runs that failed, timed out or printed something unexpected."""

    async def read(self) -> list[Reading]:
        """One reading per zone and hwmon sensor, plus throttling when available.

        The sysfs scan runs in a thread: a hwmon driver on a slow bus (I2C) may take
        tens of milliseconds per file, which must not stall the event loop.
        """
        readings = await asyncio.to_thread(self.scan)
        throttling = await self.throttling()
        if not readings and throttling is None:
            raise RuntimeError(f"no thermal zones or hwmon sensors under {self.root}")
        return readings if throttling is None else [*readings, throttling]

    def scan(self) -> list[Reading]:
        """Every readable thermal zone and hwmon sensor under the root."""
        return [*self.zones(), *self.hwmon()]

    def zones(self) -> list[Reading]:
        """One reading per thermal zone whose `temp` can be read."""
        readings = []
        for zone in sorted(self.root.glob("class/thermal/thermal_zone*")):
            name = text_or(zone / "type", zone.name)
            try:
                temp = read_int(zone / "temp")
            except (OSError, ValueError):
                self.skipped += 1
                continue
            readings.append(Reading(name, {"zone": name, "temp_c": temp / 1000}))
        return readings

    def hwmon(self) -> list[Reading]:
        """One reading per readable temp/fan/in input of every hwmon chip."""
        readings = []
        for chip_dir in sorted(self.root.glob("class/hwmon/hwmon*")):
            chip = text_or(chip_dir / "name", chip_dir.name)
            for path in sorted(chip_dir.glob("*_input")):
                reading = self.hwmon_sensor(chip, path)
                if reading is not None:
                    readings.append(reading)
        return readings

    def hwmon_sensor(self, chip: str, path: Path) -> Reading | None:
        """The reading of one `<type><n>_input` file; None when skipped."""
        match = HWMON_INPUT.fullmatch(path.name)
        if match is None:
            return None  # curr, power, humidity...: not reported by this source
        sensor = match.group(1) + match.group(2)
        unit, divisor = HWMON_UNITS[match.group(1)]
        try:
            raw = read_int(path)
        except (OSError, ValueError):
            self.skipped += 1
            return None
        label = text_or(path.with_name(f"{sensor}_label"), sensor)
        fields = {"chip": chip, "sensor": sensor, "value": raw / divisor, "unit": unit}
        return Reading(f"{chip}/{label}", fields)

    async def throttling(self) -> Reading | None:
        """The firmware's throttling flags; None when disabled, absent or failing."""
        if not self.config.throttling:
            return None
        command = shutil.which(self.config.vcgencmd)
        if command is None:
            return None  # not a Raspberry Pi (or no firmware tools): nothing to report
        try:
            output = await run_command([command, "get_throttled"], VCGENCMD_TIMEOUT)
            fields = parse_throttled(output)
        except (OSError, RuntimeError, ValueError):  # TimeoutError is an OSError
            self.throttling_errors += 1
            return None
        return Reading("throttling", fields)

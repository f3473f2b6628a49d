"""The thermal source on a fake sysfs tree: zones, hwmon chips and vcgencmd throttling."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.sysfs_sources import ThermalSourceConfig
from agent.sources import thermal
from agent.sources.polling import PollingSource, Reading
from agent.sources.thermal import ThermalReader, parse_throttled


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def board(root: Path) -> None:
    """A Pi-like tree: two zones, a temperature/voltage chip and a fan controller."""
    write(root / "class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(root / "class/thermal/thermal_zone0/temp", "48312\n")
    write(root / "class/thermal/thermal_zone1/type", "gpu-thermal\n")
    write(root / "class/thermal/thermal_zone1/temp", "-1500\n")
    write(root / "class/hwmon/hwmon0/name", "rpi_volt\n")
    write(root / "class/hwmon/hwmon0/in0_input", "5080\n")
    write(root / "class/hwmon/hwmon0/in0_label", "VIN\n")
    write(root / "class/hwmon/hwmon1/name", "pwmfan\n")
    write(root / "class/hwmon/hwmon1/fan1_input", "3200\n")
    write(root / "class/hwmon/hwmon1/temp1_input", "51000\n")
    write(root / "class/hwmon/hwmon1/temp1_label", "Board\n")
    write(root / "class/hwmon/hwmon1/curr1_input", "120\n")  # not reported


def fake_vcgencmd(tmp_path: Path, body: str) -> str:
    script = tmp_path / "bin" / "vcgencmd"
    write(script, f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def config(root: Path, **overrides: object) -> ThermalSourceConfig:
    settings: dict[str, object] = {"name": "t", "stream": "s", "root": str(root)}
    settings.update({"vcgencmd": str(root / "no-such-vcgencmd"), **overrides})
    return ThermalSourceConfig(**settings)  # type: ignore[arg-type]


def by_key(readings: list[Reading]) -> dict[str | None, dict[str, object]]:
    return {r.key: r.fields for r in readings}


def test_defaults() -> None:
    cfg = ThermalSourceConfig(name="t", stream="s")
    assert (cfg.root, cfg.interval, cfg.vcgencmd, cfg.throttling) == (
        "/sys",
        10.0,
        "vcgencmd",
        True,
    )


async def test_zones_and_hwmon_sensors(tmp_path: Path) -> None:
    board(tmp_path)
    reader = ThermalReader(config(tmp_path))
    assert by_key(await reader.read()) == {
        "cpu-thermal": {"zone": "cpu-thermal", "temp_c": 48.312},
        "gpu-thermal": {"zone": "gpu-thermal", "temp_c": -1.5},
        "rpi_volt/VIN": {"chip": "rpi_volt", "sensor": "in0", "value": 5.08, "unit": "V"},
        "pwmfan/fan1": {"chip": "pwmfan", "sensor": "fan1", "value": 3200.0, "unit": "rpm"},
        "pwmfan/Board": {"chip": "pwmfan", "sensor": "temp1", "value": 51.0, "unit": "C"},
    }
    assert reader.skipped == 0


async def test_unreadable_sensors_are_skipped_and_counted(tmp_path: Path) -> None:
    board(tmp_path)
    write(tmp_path / "class/thermal/thermal_zone1/temp", "")  # ENODATA-like empty answer
    (tmp_path / "class/hwmon/hwmon1/fan1_input").unlink()
    (tmp_path / "class/hwmon/hwmon1/fan1_input").mkdir()  # reading it raises OSError
    (tmp_path / "class/thermal/thermal_zone0/type").unlink()  # falls back to the dir name
    reader = ThermalReader(config(tmp_path))
    keys = [r.key for r in await reader.read()]
    assert keys == ["thermal_zone0", "rpi_volt/VIN", "pwmfan/Board"]
    assert reader.skipped == 2
    await reader.read()
    assert reader.skipped == 4


async def test_nothing_readable_raises_and_the_framework_counts_it(tmp_path: Path) -> None:
    write(tmp_path / "class/thermal/thermal_zone0/temp", "oops\n")
    reader = ThermalReader(config(tmp_path))
    with pytest.raises(RuntimeError, match=f"no thermal zones or hwmon sensors under {tmp_path}"):
        await reader.read()
    source = PollingSource("t", "s", 10.0, {}, None, reader.read)  # type: ignore[arg-type]
    await source.poll_once()
    assert source.stats.errors == 1


async def test_throttling_from_vcgencmd(tmp_path: Path) -> None:
    board(tmp_path)
    script = fake_vcgencmd(tmp_path, 'test "$1" = get_throttled && echo throttled=0x50005')
    readings = await ThermalReader(config(tmp_path, vcgencmd=script)).read()
    assert readings[-1] == Reading(
        "throttling",
        {
            "throttled": 0x50005,
            "under_voltage_now": True,
            "freq_capped_now": False,
            "throttled_now": True,
            "soft_temp_limit_now": False,
            "under_voltage_occurred": True,
            "freq_capped_occurred": False,
            "throttled_occurred": True,
            "soft_temp_limit_occurred": False,
        },
    )


async def test_throttling_alone_is_enough_without_sensors(tmp_path: Path) -> None:
    script = fake_vcgencmd(tmp_path, "echo throttled=0x0")
    readings = await ThermalReader(config(tmp_path, vcgencmd=script)).read()
    assert [r.key for r in readings] == ["throttling"]
    assert not any(v for k, v in readings[0].fields.items() if k != "throttled")


async def test_absent_or_disabled_vcgencmd_is_not_an_error(tmp_path: Path) -> None:
    board(tmp_path)
    marker = tmp_path / "ran"
    script = fake_vcgencmd(tmp_path, f"touch {marker}; echo throttled=0x1")
    absent = ThermalReader(config(tmp_path))
    disabled = ThermalReader(config(tmp_path, vcgencmd=script, throttling=False))
    for reader in (absent, disabled):
        assert "throttling" not in by_key(await reader.read())
        assert reader.throttling_errors == 0
    assert not marker.exists()


@pytest.mark.parametrize("body", ["echo 'VCHI initialization failed'", "exit 1", "sleep 5"])
async def test_failing_vcgencmd_is_counted_not_fatal(
    tmp_path: Path, body: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thermal, "VCGENCMD_TIMEOUT", 0.3)
    board(tmp_path)
    reader = ThermalReader(config(tmp_path, vcgencmd=fake_vcgencmd(tmp_path, body)))
    readings = await reader.read()
    assert len(readings) == 5 and "throttling" not in by_key(readings)
    assert reader.throttling_errors == 1


def test_parse_throttled_rejects_other_output() -> None:
    assert parse_throttled("throttled=0xf000f\n")["soft_temp_limit_occurred"] is True
    with pytest.raises(ValueError, match="unexpected vcgencmd output"):
        parse_throttled('error=1 error_msg="Command not registered"')

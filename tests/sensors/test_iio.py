"""The iio source on a fake IIO tree: raw, scale, offset, shared scales and processed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.sysfs_sources import IioSourceConfig
from agent.sources.iio import IioReader, channel_type_of


def device(root: Path, directory: str, /, **files: str) -> Path:
    folder = root / "bus/iio/devices" / directory
    folder.mkdir(parents=True)
    for file, text in files.items():
        (folder / file.replace("__", "-")).write_text(text)
    return folder


def reader(root: Path) -> IioReader:
    return IioReader(IioSourceConfig(name="i", stream="s", root=str(root)))


async def test_channels_are_scaled_to_abi_units(tmp_path: Path) -> None:
    device(
        tmp_path,
        "iio:device0",
        name="ads1015\n",
        in_voltage0_raw="1000\n",
        in_voltage1_raw="-20\n",
        in_voltage_scale="3.000000000\n",  # shared by every voltage channel
        in_voltage1_scale="0.5\n",  # a channel's own scale wins
        in_voltage0__voltage1_raw="10\n",  # differential channel, shared scale
        in_voltage_scale_available="3 2 1\n",
        sampling_frequency="1600\n",
    )
    device(
        tmp_path,
        "iio:device1",
        name="bmp280\n",
        in_temp_raw="2500\n",
        in_temp_offset="-500\n",
        in_temp_scale="10\n",
        in_pressure_input="101.325\n",  # already processed by the driver
        in_humidityrelative_raw="40000\n",
        in_humidityrelative_input="41.5\n",  # the processed value beats the raw one
    )
    iio = reader(tmp_path)
    readings = await iio.read()
    assert [(r.key, r.fields) for r in readings] == [
        (
            "ads1015",
            {
                "device": "ads1015",
                "voltage0": 3000.0,
                "voltage0-voltage1": 30.0,
                "voltage1": -10.0,
            },
        ),
        (
            "bmp280",
            {"device": "bmp280", "humidityrelative": 41.5, "pressure": 101.325, "temp": 20000.0},
        ),
    ]
    assert iio.skipped == 0


async def test_unreadable_channels_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = device(tmp_path, "iio:device0", in_voltage0_raw="12\n", in_voltage1_raw="x\n")
    (folder / "in_voltage2_raw").mkdir()  # reading it raises OSError
    device(tmp_path, "iio:device1", name="dead\n", in_temp_raw="\n")
    iio = reader(tmp_path)
    readings = await iio.read()
    assert [(r.key, r.fields) for r in readings] == [
        ("iio:device0", {"device": "iio:device0", "voltage0": 12.0})  # no name: the folder
    ]
    assert iio.skipped == 3


async def test_no_device_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no IIO devices under"):
        await reader(tmp_path).read()


def test_channel_type() -> None:
    assert [channel_type_of(c) for c in ("voltage0", "accel_x", "temp", "voltage0-voltage1")] == [
        "voltage",
        "accel",
        "temp",
        "voltage",
    ]

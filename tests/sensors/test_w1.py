"""The w1 source on a fake w1_therm tree: good answers, CRC failures and power-on resets."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.sysfs_sources import W1SourceConfig
from agent.sources.w1 import CrcError, W1Reader, parse_w1_slave

GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=ff NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
RESET = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
NEGATIVE = "5e ff 4b 46 7f ff 02 10 ee : crc=ee YES\n5e ff 4b 46 7f ff 02 10 ee t=-10125\n"


def device(root: Path, name: str, **files: str) -> None:
    folder = root / "bus/w1/devices" / name
    folder.mkdir(parents=True)
    for file, text in files.items():
        (folder / file).write_text(text)


def reader(root: Path) -> W1Reader:
    return W1Reader(W1SourceConfig(name="w", stream="s", root=str(root)))


async def test_w1_slave_and_temperature_files(tmp_path: Path) -> None:
    device(tmp_path, "w1_bus_master1", w1_master_slave_count="3\n")
    device(tmp_path, "28-0316a2791eff", w1_slave=GOOD)
    device(tmp_path, "28-000005e2fdc3", w1_slave=NEGATIVE)
    device(tmp_path, "28-01144f7a43aa", temperature="21562\n", w1_slave=BAD_CRC)  # preferred
    device(tmp_path, "3a-00000012ab34", state="\x00")  # a switch: not a thermometer
    w1 = reader(tmp_path)
    readings = await w1.read()
    assert {r.key: r.fields for r in readings} == {
        "28-000005e2fdc3": {"sensor": "28-000005e2fdc3", "temp_c": -10.125},
        "28-01144f7a43aa": {"sensor": "28-01144f7a43aa", "temp_c": 21.562},
        "28-0316a2791eff": {"sensor": "28-0316a2791eff", "temp_c": 23.125},
    }
    assert (w1.crc_errors, w1.power_on_resets, w1.read_errors) == (0, 0, 0)


async def test_bad_answers_are_counted_never_emitted(tmp_path: Path) -> None:
    device(tmp_path, "28-00000000000a", w1_slave=BAD_CRC)
    device(tmp_path, "28-00000000000b", w1_slave=GOOD.splitlines()[0] + "\n")  # cut short
    device(tmp_path, "28-00000000000c", w1_slave=GOOD.replace("t=23125", "t="))
    device(tmp_path, "28-00000000000d", temperature="")  # the driver's CRC failure
    device(tmp_path, "28-00000000000e", w1_slave=RESET)
    device(tmp_path, "28-00000000000f", temperature="85000\n")
    device(tmp_path, "28-000000000010", w1_slave=GOOD)
    w1 = reader(tmp_path)
    readings = await w1.read()
    assert [r.key for r in readings] == ["28-000000000010"]
    assert (w1.crc_errors, w1.power_on_resets) == (4, 2)


async def test_an_unreadable_device_file_is_a_read_error(tmp_path: Path) -> None:
    device(tmp_path, "28-00000000000a")
    (tmp_path / "bus/w1/devices/28-00000000000a/temperature").mkdir()
    device(tmp_path, "28-00000000000b", temperature="20000\n")
    w1 = reader(tmp_path)
    assert [r.key for r in await w1.read()] == ["28-00000000000b"]
    assert (w1.read_errors, w1.crc_errors) == (1, 0)


async def test_no_bus_or_only_a_master_raises(tmp_path: Path) -> None:
    w1 = reader(tmp_path)
    with pytest.raises(RuntimeError, match="no 1-Wire devices under"):
        await w1.read()
    device(tmp_path, "w1_bus_master1")
    with pytest.raises(RuntimeError, match="no 1-Wire devices under"):
        await w1.read()


def test_parse_w1_slave() -> None:
    assert parse_w1_slave(GOOD) == 23125
    assert parse_w1_slave(RESET) == 85000  # the reader, not the parser, judges it
    with pytest.raises(CrcError, match="CRC"):
        parse_w1_slave(BAD_CRC)

"""The gpio source: values, edge counts between polls, per-edge events, failures.

No GPIO chip exists on a CI machine, so the reader runs over FakeChip, an in-memory
model of the kernel's line request (inversion and edge filtering included) whose
file descriptor is a pipe that becomes readable when an edge is queued, as the real
request's does. The real gpiod adapter is tested as far as it goes without a device.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
import time
import types
from pathlib import Path

import orjson
import pytest

from agent.config.gpio_source import GpioLineConfig, GpioSourceConfig
from agent.queue import DurableQueue, StreamLimits
from agent.sources import gpio
from agent.sources.gpio import Edge, GpioError, GpioReader, open_failure
from agent.sources.polling import PollingSource
from sync.config.errors import ConfigError
from sync.config.spec import load_config


class FakeChip:
    """Requested lines as the kernel keeps them: levels, inversion and an edge queue."""

    def __init__(self, config: GpioSourceConfig) -> None:
        self.lines = {line.offset: line for line in config.lines}
        self.levels = dict.fromkeys(self.lines, 0)
        self.queue: list[Edge] = []
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.closed = False
        self.fail_reads: OSError | None = None

    @property
    def fd(self) -> int:
        return self.read_fd

    def set_level(self, offset: int, level: int, timestamp_ns: int | None = None) -> None:
        """Drive the physical level; queue an edge of the logical value if it is watched."""
        line = self.lines[offset]
        before = self.levels[offset] ^ line.active_low
        self.levels[offset] = level
        after = level ^ line.active_low
        kind = "rising" if after > before else "falling"
        if before != after and line.edges in (kind, "both"):
            self.queue.append(Edge(offset, after == 1, timestamp_ns or time.monotonic_ns()))
            os.write(self.write_fd, b"!")

    def get_values(self) -> list[int]:
        if self.fail_reads is not None:
            raise self.fail_reads
        return [self.levels[offset] ^ line.active_low for offset, line in self.lines.items()]

    def read_edges(self) -> list[Edge]:
        if self.fail_reads is not None:
            raise self.fail_reads
        try:
            os.read(self.read_fd, 4096)
        except BlockingIOError:
            return []
        edges, self.queue = self.queue, []
        return edges

    def close(self) -> None:
        self.closed = True
        os.close(self.read_fd)
        os.close(self.write_fd)


class Opener:
    """The factory GpioReader is given: fails while `missing` is set, else opens a FakeChip."""

    def __init__(self) -> None:
        self.missing = False
        self.chips: list[FakeChip] = []

    def __call__(self, config: GpioSourceConfig) -> FakeChip:
        if self.missing:
            error = FileNotFoundError(errno.ENOENT, "No such file or directory")
            raise GpioError(open_failure(gpio.chip_path(config), error))
        self.chips.append(FakeChip(config))
        return self.chips[-1]


def config(*lines: GpioLineConfig, **settings: object) -> GpioSourceConfig:
    return GpioSourceConfig(name="pins", stream="s", lines=lines, **settings)  # type: ignore[arg-type]


DOOR = GpioLineConfig(offset=17, name="door", bias="pull_up", active_low=True)
PIR = GpioLineConfig(offset=27, name="pir", edges="rising")
RELAY = GpioLineConfig(offset=22, edges="none")


async def settle() -> None:
    """Let the loop run the edge reader, as it would between two polls."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_values_with_active_low_and_counts_between_polls() -> None:
    opener = Opener()
    reader = GpioReader(config(DOOR, PIR, RELAY), opener)
    first = await reader.read()
    assert [r.fields for r in first] == [
        {"door": 1, "pir": 0, "line22": 0, "door_rising": 0, "door_falling": 0, "pir_rising": 0}
    ]  # door reads 1 at a low level: a closed contact to ground with pull_up
    chip = opener.chips[0]
    for level in (1, 0, 1):  # the door opens, closes, opens
        chip.set_level(17, level)
    chip.set_level(27, 1)
    chip.set_level(27, 0)  # a falling pir edge is not asked for: not queued, not counted
    chip.set_level(22, 1)
    await settle()
    assert chip.queue == []  # the loop read the edges as they came, not at the poll
    (second,) = await reader.read()
    assert second.fields == {
        "door": 0, "pir": 0, "line22": 1,
        "door_rising": 1, "door_falling": 2, "pir_rising": 1,
    }  # fmt: skip
    (third,) = await reader.read()
    assert third.fields["door_falling"] == 0 and third.fields["pir_rising"] == 0
    assert second.time is None  # stamped when stored, like every poll event
    reader.close()
    assert chip.closed


async def test_edges_queued_at_the_poll_are_counted_in_it() -> None:
    opener = Opener()
    reader = GpioReader(config(PIR), opener)
    await reader.read()
    opener.chips[0].set_level(27, 1)  # no loop turn before the poll
    (reading,) = await reader.read()
    assert reading.fields == {"pir": 1, "pir_rising": 1}
    reader.close()


async def test_emit_on_change_events_carry_the_kernel_edge_time() -> None:
    opener = Opener()
    reader = GpioReader(config(DOOR, PIR, emit_on_change=True), opener)
    await reader.read()
    chip = opener.chips[0]
    edge_ns = time.monotonic_ns() - 2_500_000_000  # 2.5 s before now
    chip.set_level(17, 1, timestamp_ns=edge_ns)
    chip.set_level(27, 1, timestamp_ns=edge_ns + 500_000_000)
    await settle()
    *edges, poll = await reader.read()
    assert [e.fields for e in edges] == [
        {"door": 0, "door_edge": "falling"},
        {"pir": 1, "pir_edge": "rising"},
    ]
    assert edges[0].time is not None
    assert edges[0].time == pytest.approx(time.time() - 2.5, abs=0.2)
    assert edges[1].time == pytest.approx(edges[0].time + 0.5, abs=1e-3)
    assert poll.time is None and poll.fields["door_falling"] == 1
    assert len(await reader.read()) == 1  # the edge events went out once
    reader.close()


async def test_an_edge_storm_keeps_the_counts_but_caps_the_edge_events(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gpio, "MAX_PENDING_EDGES", 3)
    opener = Opener()
    reader = GpioReader(config(PIR, emit_on_change=True), opener)
    await reader.read()
    for _ in range(5):
        opener.chips[0].set_level(27, 1)
        opener.chips[0].set_level(27, 0)
        await settle()
    readings = await reader.read()
    assert len(readings) == 4 and readings[-1].fields["pir_rising"] == 5
    assert reader.dropped_edge_events == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    reader.close()


async def test_a_missing_chip_is_an_error_until_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the real polling machinery: counted every poll, logged once, recovered."""
    queue = await DurableQueue.open(tmp_path, {"s": StreamLimits(1 << 20, 1e9)})
    opener = Opener()
    opener.missing = True
    reader = GpioReader(config(DOOR, emit_on_change=True), opener)
    source = PollingSource("pins", "s", 10.0, {"site": "lab"}, queue, reader.read)
    for _ in range(3):
        await source.poll_once()
    assert source.stats.errors == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Source pins: read failed: no GPIO chip at /dev/gpiochip0 "
        "(check `chip` and `root`; `gpiodetect` lists them)"
    ]
    opener.missing = False
    await source.poll_once()
    opener.chips[0].set_level(17, 1, timestamp_ns=time.monotonic_ns() - 1_000_000_000)
    await settle()
    await source.poll_once()
    stored = (await queue.read_after("s", 0, 10, 1 << 20)).events
    assert [orjson.loads(e.payload) for e in stored] == [
        {"door": 1, "door_rising": 0, "door_falling": 0, "site": "lab"},
        {"door": 0, "door_edge": "falling", "site": "lab"},
        {"door": 0, "door_rising": 0, "door_falling": 1, "site": "lab"},
    ]
    assert stored[1].event_time == pytest.approx(stored[1].ingest_time - 1.0, abs=0.2)
    reader.close()
    await queue.close()


async def test_a_failing_read_releases_the_lines_and_the_next_poll_reopens() -> None:
    opener = Opener()
    reader = GpioReader(config(DOOR), opener)
    await reader.read()
    opener.chips[0].fail_reads = OSError(errno.ENODEV, "No such device")
    with pytest.raises(GpioError, match=r"reading lines of /dev/gpiochip0 failed: .*No such"):
        await reader.read()
    assert opener.chips[0].closed
    assert [r.fields["door"] for r in await reader.read()] == [1]
    assert len(opener.chips) == 2
    reader.close()


async def test_an_edge_read_error_in_the_loop_is_raised_by_the_next_poll() -> None:
    opener = Opener()
    reader = GpioReader(config(PIR), opener)
    await reader.read()
    chip = opener.chips[0]
    chip.set_level(27, 1)
    chip.fail_reads = OSError(errno.EIO, "Input/output error")
    await settle()
    assert chip.closed  # released at once, not left readable in the loop
    with pytest.raises(GpioError, match="edge events of /dev/gpiochip0 failed, reopening"):
        await reader.read()
    assert (await reader.read())[0].fields == {"pir": 0, "pir_rising": 0}
    reader.close()


def test_open_failures_say_what_to_do() -> None:
    def message(code: int) -> str:
        return open_failure("/dev/gpiochip0", OSError(code, os.strerror(code)))

    assert "add the agent's user to the gpio group" in message(errno.EACCES)
    assert "in use by another program" in message(errno.EBUSY)
    assert message(errno.ENOTTY) == "/dev/gpiochip0 is not a GPIO chip"


async def test_without_gpiod_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod raises ImportError
    reader = GpioReader(config(DOOR))
    with pytest.raises(GpioError, match=r"needs gpiod: install edgestream\[gpio\]"):
        await reader.read()
    old = types.ModuleType("gpiod")
    old.__version__ = "1.6.3"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiod", old)
    with pytest.raises(GpioError, match=r"gpiod 1\.6\.3 has the old v1 API"):
        await reader.read()


def load(text: str) -> GpioSourceConfig:
    return load_config(GpioSourceConfig, text, "gpio.yaml", {})


def test_config_defaults_and_durations() -> None:
    source = load("name: pins\nstream: s\nlines:\n  - offset: 4\n    debounce: 20ms\n")
    assert (source.chip, source.root, source.interval) == ("gpiochip0", "/dev", 10.0)
    assert not source.emit_on_change
    (line,) = source.lines
    assert (line.field, line.bias, line.edges, line.active_low) == ("line4", "as_is", "both", False)
    assert line.debounce == 0.02
    assert gpio.chip_path(source) == "/dev/gpiochip0"
    full = load("name: p\nstream: s\nchip: /sys/gpiochip4\nlines: [{offset: 1}]")
    assert gpio.chip_path(full) == "/sys/gpiochip4"


def test_config_problems_point_at_the_line() -> None:
    text = """name: pins
stream: s
lines:
  - {offset: 17, name: door}
  - {offset: 17, name: gate}
  - {offset: 5, name: door}
  - {offset: 6, name: gate_rising}
  - {offset: 7, name: 2fast, bias: pull_sideways}
"""
    with pytest.raises(ConfigError) as caught:
        load(text)
    lines = str(caught.value).splitlines()
    assert "gpio.yaml:5: lines[1].offset: offset 17 is repeated" in lines
    assert "gpio.yaml:6: lines[2].name: name 'door' is repeated" in lines
    assert "gpio.yaml:7: lines[3].name: field 'gate_rising' clashes with a counter of lines[1]" in (
        lines
    )
    assert any(line.startswith("gpio.yaml:8: lines[4].name: must match") for line in lines)
    assert any(line.startswith("gpio.yaml:8: lines[4].bias:") for line in lines)
    with pytest.raises(ConfigError, match="lines: must not be empty"):
        load("name: pins\nstream: s\nlines: []\n")


# --- the real adapter, as far as it goes without a chip ---------------------------------


def test_gpiod_settings_follow_the_config() -> None:
    gpiod = pytest.importorskip("gpiod")
    from datetime import timedelta

    from gpiod.line import Bias, Direction
    from gpiod.line import Edge as Detect

    line = GpioLineConfig(
        offset=17, bias="pull_up", active_low=True, edges="falling", debounce=0.02
    )
    settings = gpio.line_settings(line)
    assert isinstance(settings, gpiod.LineSettings)
    assert settings.direction is Direction.INPUT and settings.bias is Bias.PULL_UP
    assert settings.edge_detection is Detect.FALLING and settings.active_low
    assert settings.debounce_period == timedelta(milliseconds=20)
    assert gpio.line_settings(GpioLineConfig(offset=1, edges="none")).edge_detection is Detect.NONE


def test_gpiod_open_failures_are_explained(tmp_path: Path) -> None:
    pytest.importorskip("gpiod")
    with pytest.raises(GpioError, match=f"no GPIO chip at {tmp_path}/gpiochip0"):
        gpio.open_gpiod(config(DOOR, root=str(tmp_path)))
    with pytest.raises(GpioError, match="/dev/null is not a GPIO chip"):
        gpio.open_gpiod(config(DOOR, chip="/dev/null"))

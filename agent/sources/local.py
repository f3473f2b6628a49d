"""Which reader runs a polled source of each kind: the one place that maps them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agent.config.command_source import CommandSourceConfig
from agent.config.gpio_source import GpioSourceConfig
from agent.config.sensors import SimulatedSourceConfig
from agent.config.sysfs_sources import IioSourceConfig, ThermalSourceConfig, W1SourceConfig
from agent.config.system_source import SystemSourceConfig
from agent.queue import DurableQueue
from agent.sources.command import CommandReader
from agent.sources.gpio import GpioReader
from agent.sources.iio import IioReader
from agent.sources.polling import PollingSource, Reading
from agent.sources.simulated import SimulatedSignals
from agent.sources.system import SystemReader
from agent.sources.thermal import ThermalReader
from agent.sources.w1 import W1Reader

PolledConfig = (
    SimulatedSourceConfig
    | SystemSourceConfig
    | ThermalSourceConfig
    | W1SourceConfig
    | IioSourceConfig
    | GpioSourceConfig
    | CommandSourceConfig
)


class Reader(Protocol):
    """What a polled source kind provides: one read per interval."""

    async def read(self) -> list[Reading]:
        """The readings of one poll; raises when the whole read failed."""
        ...


READERS: dict[type, Callable[[Any], Reader]] = {
    SimulatedSourceConfig: SimulatedSignals,
    SystemSourceConfig: SystemReader,
    ThermalSourceConfig: ThermalReader,
    W1SourceConfig: W1Reader,
    IioSourceConfig: IioReader,
    GpioSourceConfig: GpioReader,
    CommandSourceConfig: CommandReader,
}


def polling_source(config: PolledConfig, queue: DurableQueue) -> PollingSource:
    """The running source of a polled kind."""
    reader = READERS[type(config)](config)
    return PollingSource(
        config.name, config.stream, config.interval, config.tags, queue, reader.read,
        getattr(reader, "close", None),
    )  # fmt: skip

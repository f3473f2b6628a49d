"""Deterministic simulated sensors: sine + noise + spikes, with dropouts, skew and reordering.

Sample k of device d is due at `start + k * interval`; its values depend only on the
seed, k and d (every random draw happens whether or not it is used), so two runs with
the same seed and `start` produce the same events — what tests and benchmarks need.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from agent.config.sensors import SignalConfig, SimulatedSourceConfig
from agent.sources.polling import Reading


class SimulatedSignals:
    """The generator behind a `simulated` source; `next_readings` is one poll."""

    def __init__(self, config: SimulatedSourceConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.start = time.time() if config.start is None else config.start
        self.sample = 0
        self.held: dict[int, Reading] = {}
        """Per device, a sample held back to be delivered after the next one."""

    def next_readings(self) -> list[Reading]:
        """The samples of every device for the next slot, in delivery order."""
        cfg, k = self.config, self.sample
        self.sample += 1
        offset = k * cfg.interval
        readings: list[Reading] = []
        for device in range(cfg.devices):
            dropped = self.random.random() < cfg.dropout_probability
            delayed = self.random.random() < cfg.out_of_order_probability
            fields = {s.name: self._value(s, offset) for s in cfg.signals}
            if dropped:
                continue
            reading = Reading(f"{cfg.name}-{device}", fields, self.start + offset + cfg.clock_skew)
            earlier = self.held.pop(device, None)
            if delayed and earlier is None:
                self.held[device] = reading
                continue
            readings.append(reading)
            if earlier is not None:
                readings.append(earlier)
        return readings

    def _value(self, signal: SignalConfig, offset: float) -> Any:
        wave = signal.amplitude * math.sin(2 * math.pi * offset / signal.period)
        noise = self.random.gauss(0.0, signal.noise) if signal.noise else 0.0
        spike = signal.spike_size if self.random.random() < signal.spike_probability else 0.0
        return round(signal.base + wave + noise + spike, signal.decimals)

    async def read(self) -> list[Reading]:
        """The polling source's `read`."""
        return self.next_readings()

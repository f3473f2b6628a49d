"""The simulated source: deterministic signals, dropouts, skew and reordering."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest

from agent.config import parse_agent_config
from agent.config.sensors import SignalConfig, SimulatedSourceConfig
from agent.sources.simulated import SimulatedSignals
from sync.config import ConfigError


def config(**overrides: object) -> SimulatedSourceConfig:
    settings: dict[str, object] = {
        "name": "sim",
        "stream": "s",
        "interval": 1.0,
        "seed": 7,
        "devices": 3,
        "start": 1_000.0,
        "signals": (
            SignalConfig(name="temp", base=20, amplitude=2, period=60, noise=0.5),
            SignalConfig(name="hum", base=50, spike_probability=0.1, spike_size=30, decimals=1),
        ),
    }
    settings.update(overrides)
    return SimulatedSourceConfig(**settings)  # type: ignore[arg-type]


Sample = tuple[str | None, float | None, dict[str, Any]]


def samples(cfg: SimulatedSourceConfig, polls: int) -> list[Sample]:
    signals = SimulatedSignals(cfg)
    out: list[Sample] = []
    for _ in range(polls):
        out += [(r.key, r.time, r.fields) for r in signals.next_readings()]
    return out


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert samples(config(), 50) == samples(config(), 50)
    assert samples(config(), 50) != samples(config(seed=8), 50)


def test_signals_follow_base_wave_noise_and_spikes() -> None:
    events = samples(config(), 600)
    assert len(events) == 1800
    assert {key for key, _, _ in events} == {"sim-0", "sim-1", "sim-2"}
    temps = [f["temp"] for _, _, f in events]
    assert min(temps) > 16 and max(temps) < 24
    assert abs(sum(temps) / len(temps) - 20) < 0.2
    spikes = [f["hum"] for _, _, f in events if f["hum"] == 80.0]
    assert 0.05 < len(spikes) / len(events) < 0.15
    assert events[3][1] == 1_001.0  # the second poll is one interval later


def test_dropouts_skew_and_out_of_order_delivery() -> None:
    plain = samples(config(), 200)
    skewed = samples(config(clock_skew=-30.0), 200)
    assert [t - 30.0 for _, t, _ in plain if t is not None] == [t for _, t, _ in skewed]
    dropped = samples(config(dropout_probability=0.3), 200)
    assert 0.6 * 600 < len(dropped) < 0.8 * 600
    shuffled = samples(config(out_of_order_probability=0.2), 200)
    per_device = [t for key, t, _ in shuffled if key == "sim-0" and t is not None]
    assert per_device != sorted(per_device)  # some samples arrive after a later one
    assert len(set(per_device)) == len(per_device)  # but none twice


def test_bad_simulated_config_is_refused_with_its_path() -> None:
    text = dedent("""\
        device_id: pi
        streams: {s: {}}
        sources:
          - type: simulated
            name: sim
            stream: s
            signals: [{name: t, noise: -1}, {name: t}]
            dropout_probability: 2
    """)
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text)
    message = str(caught.value)
    assert "sources[0].signals[0].noise" in message
    assert "sources[0].dropout_probability" in message

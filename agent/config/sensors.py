"""Config of the local sources that poll on an interval (issue 4): shared keys and kinds.

Every polling source has a `name`, a target `stream`, an `interval` and `tags` added to
each event; each kind adds its own keys. The classes are part of the agent's `Source`
union (by `type`), validated by the same walker and documented in
docs/configuration.md.
"""

from __future__ import annotations

from typing import ClassVar, Final

from sync.config.errors import Problem
from sync.config.fields import config_class, setting
from sync.config.units import Duration

NAME_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
"""Source, pipeline and output names: they appear in MQTT client ids, task names and logs."""


@config_class
class PolledSourceKeys:
    """The keys every source that reads on an interval shares (each kind adds its own)."""

    name: str = setting(
        doc="Unique name of the source, used in logs and metrics.", pattern=NAME_PATTERN
    )
    stream: str = setting(doc="Stream the events are appended to.", example="sensors")
    tags: dict[str, str] = setting(
        default={}, doc="Fields added to every event.", example={"site": "lab"}
    )


@config_class
class SignalConfig:
    """One simulated sensor signal: base + sine + noise, with spikes and dropouts."""

    name: str = setting(doc="Field name of the signal in each event.", example="temp")
    base: float = setting(default=20.0, doc="Mean value of the signal.")
    amplitude: float = setting(default=0.0, doc="Amplitude of the sine wave around the base.")
    period: Duration = setting(
        default=3600.0, doc="Period of the sine wave (in sample time).", minimum=0.001
    )
    noise: float = setting(
        default=0.0, doc="Standard deviation of the Gaussian noise.", minimum=0.0
    )
    spike_probability: float = setting(
        default=0.0, doc="Chance per sample of a spike of `spike_size`.", minimum=0.0, maximum=1.0
    )
    spike_size: float = setting(default=0.0, doc="Added to the value in a spike.")
    decimals: int = setting(default=3, doc="Digits the value is rounded to.", minimum=0, maximum=12)


@config_class
class SimulatedSourceConfig(PolledSourceKeys):
    """Deterministic, seeded sensor signals for demos, tests and benchmarks."""

    kind: ClassVar[str] = "simulated"

    interval: Duration = setting(
        default=1.0, doc="Time between two samples of each device.", minimum=0.001
    )
    seed: int = setting(default=1, doc="Seed of the random generator: same seed, same events.")
    devices: int = setting(
        default=1,
        doc="Simulated devices; each event's key is `<name>-<n>`.",
        minimum=1,
        maximum=10000,
    )
    signals: tuple[SignalConfig, ...] = setting(
        doc="The signals each event carries, each a field of the event.",
        example=[{"name": "temp", "base": 21, "amplitude": 2, "period": "1h", "noise": 0.1}],
        minimum=1,
    )
    dropout_probability: float = setting(
        default=0.0,
        doc="Chance per sample that the device sends nothing (a gap in its series).",
        minimum=0.0,
        maximum=1.0,
    )
    clock_skew: Duration = setting(
        default=0.0, doc="Added to every event time, as a device with a wrong clock would."
    )
    out_of_order_probability: float = setting(
        default=0.0,
        doc="Chance per sample that it is delivered after the device's next sample.",
        minimum=0.0,
        maximum=1.0,
    )
    start: float | None = setting(
        default=None,
        doc="Event time of the first sample (epoch seconds); unset: when the source starts. "
        "With it set, the events are the same in every run.",
    )

    def check(self) -> list[Problem]:
        names = [s.name for s in self.signals]
        if len(set(names)) != len(names):
            return [Problem("signals", "signal names must be unique")]
        return []

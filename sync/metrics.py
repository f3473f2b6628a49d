"""A tiny metrics registry and the Prometheus text exposition format, version 0.0.4.

Why not `prometheus_client`: importing it costs about 10 MiB RSS in a bare interpreter
and 3.5 MiB in the running agent (measured with `resource.getrusage`), on a device that
may have 512 MiB for everything; and its model is instruments updated on every event.
Here nothing is counted on the hot path: the components already keep their stats
objects, and a collector reads them when Prometheus scrapes. So the whole library is
a family type, a registry of async collectors and the renderer below.

The format, exactly as specified (github.com/prometheus/docs, exposition_formats.md):
one `# HELP` and one `# TYPE` line per family, then its samples; HELP text escapes
backslash and newline, label values escape backslash, double quote and newline;
values are Go floats (`+Inf`, `-Inf`, `NaN`); a counter's name ends in `_total`.
"""

from __future__ import annotations

import math
import os
import re
import resource
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Family:
    """One metric family: its name, type, help text and samples (labels, value)."""

    name: str
    type: Literal["counter", "gauge"]
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")

    def add(self, value: float | None, **labels: str) -> None:
        """Add one sample; None (a value not known yet) adds nothing."""
        if value is not None:
            self.samples.append((tuple(labels.items()), float(value)))


Collector = Callable[[], Awaitable[Iterable[Family]]]
"""Called at each scrape; reads the stats it describes and returns their families."""


class Registry:
    """The collectors of one process, rendered together at each scrape."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        """Add a collector; families are rendered in registration order."""
        self._collectors.append(collector)

    async def collect(self) -> list[Family]:
        """Every family of every collector, same-named families merged."""
        merged: dict[str, Family] = {}
        for collector in self._collectors:
            for family in await collector():
                known = merged.setdefault(
                    family.name, Family(family.name, family.type, family.help)
                )
                known.samples.extend(family.samples)
        return list(merged.values())

    async def render(self) -> bytes:
        """The exposition of every family, as served at /metrics."""
        return render(await self.collect()).encode()


def render(families: Iterable[Family]) -> str:
    """The text exposition format 0.0.4 of `families`."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        lines += [_sample(family.name, labels, value) for labels, value in family.samples]
    return "\n".join(lines) + "\n" if lines else ""


def _sample(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {format_value(value)}"
    for label, _ in labels:
        if not _LABEL.fullmatch(label) or label.startswith("__"):
            raise ValueError(f"invalid label name {label!r}")
    pairs = ",".join(f'{label}="{escape_label(text)}"' for label, text in labels)
    return f"{name}{{{pairs}}} {format_value(value)}"


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label(text: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Go's ParseFloat reads it; integers without a fraction."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def counter(name: str, help: str, value: float | None = None) -> Family:
    """A counter family, with one unlabelled sample when `value` is given."""
    family = Family(name, "counter", help)
    family.add(value)
    return family


def gauge(name: str, help: str, value: float | None = None) -> Family:
    """A gauge family, with one unlabelled sample when `value` is given."""
    family = Family(name, "gauge", help)
    family.add(value)
    return family


async def process_families() -> list[Family]:
    """Resident memory and CPU time of this process, the two numbers a Pi runs out of."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [
        gauge("process_resident_memory_bytes", "Resident memory size in bytes.", _rss_bytes()),
        counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            usage.ru_utime + usage.ru_stime,
        ),
        gauge("process_start_time_seconds", "Start time of the process since the epoch.", _START),
    ]


_START: Final = time.time()


def _rss_bytes() -> float:
    """Current RSS from /proc (Linux); elsewhere the peak, which is all `resource` knows."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return float(pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

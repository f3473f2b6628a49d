"""Config of the `gpio` source: input lines of a GPIO chip, their state and edge counts.

Lines are read through the kernel's GPIO character device (`/dev/gpiochip*`, uAPI v2)
with the optional `gpiod` package (`edgestream[gpio]`). Every field a line produces is
named after the line (`door`, `door_rising`, ...), so the names are checked for clashes
here, where the error can point at the key, rather than discovered in the data.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar, Final, Literal

from agent.config.sensors import PolledSourceKeys
from sync.config.errors import Problem
from sync.config.fields import config_class, setting
from sync.config.units import Duration

FIELD_PATTERN: Final = r"[A-Za-z_][A-Za-z0-9_]{0,47}"
"""Line names become field names and prefixes of `<name>_rising` and the like."""
MAX_LINES: Final = 64
"""The kernel's limit of lines in one request (GPIO_V2_LINES_MAX)."""

Bias = Literal["as_is", "pull_up", "pull_down", "disabled"]
Edges = Literal["none", "rising", "falling", "both"]


@config_class
class GpioLineConfig:
    """One input line of the chip: how it is biased, inverted, debounced and counted."""

    offset: int = setting(
        doc="Offset of the line on the chip (the BCM number on a Raspberry Pi's gpiochip0).",
        example=17,
        minimum=0,
    )
    name: str | None = setting(
        default=None,
        doc="Field name of the line in each event; unset: `line<offset>`.",
        example="door",
        pattern=FIELD_PATTERN,
    )
    bias: Bias = setting(
        default="as_is",
        doc="Internal pull resistor: pull_up, pull_down, disabled, or as_is to leave it.",
    )
    active_low: bool = setting(
        default=False,
        doc="Invert the line so that a low level reads as 1 (a switch to ground with pull_up).",
    )
    edges: Edges = setting(
        default="both",
        doc="Which changes of the (inverted, if active_low) value are counted: rising, "
        "falling, both, or none for state only.",
    )
    debounce: Duration = setting(
        default=0.0,
        doc="Changes shorter than this are ignored by the kernel; 0 turns debouncing off.",
        example="20ms",
        minimum=0.0,
        maximum=1.0,
    )

    @property
    def field(self) -> str:
        """The field name of the line's value, and the prefix of its counters."""
        return self.name if self.name is not None else f"line{self.offset}"

    def counters(self) -> tuple[str, ...]:
        """The names of the fields derived from the line: its edge counters and edge kind."""
        kinds = {"none": (), "rising": ("rising",), "falling": ("falling",)}.get(
            self.edges, ("rising", "falling")
        )
        suffixes = (*kinds, "edge") if self.edges != "none" else ()
        return tuple(f"{self.field}_{suffix}" for suffix in suffixes)


@config_class
class GpioSourceConfig(PolledSourceKeys):
    """State and edge counts of GPIO input lines, read through /dev/gpiochip*."""

    kind: ClassVar[str] = "gpio"

    chip: str = setting(
        default="gpiochip0",
        doc="The GPIO chip: a device name under `root` or a full path.",
        example="gpiochip0",
        pattern=r"\S+",
    )
    lines: tuple[GpioLineConfig, ...] = setting(
        doc="The input lines read from the chip, each a field of the events.",
        example=[{"offset": 17, "name": "door", "bias": "pull_up", "active_low": True}],
        minimum=1,
        maximum=MAX_LINES,
    )
    interval: Duration = setting(
        default=10.0,
        doc="Time between two events carrying every line's value and its edges since the last.",
        minimum=0.001,
    )
    emit_on_change: bool = setting(
        default=False,
        doc="Also emit one event per (debounced) edge, stamped with the kernel's edge time.",
    )
    root: str = setting(default="/dev", doc="Directory holding the chip devices, normally /dev.")

    def check(self) -> list[Problem]:
        return [*_duplicates(self.lines), *_clashing_fields(self.lines)]


def _duplicates(lines: tuple[GpioLineConfig, ...]) -> list[Problem]:
    """A line requested twice is refused by the kernel; two equal names hide a line."""
    problems: list[Problem] = []
    offsets = Counter(line.offset for line in lines)
    names = Counter(line.field for line in lines)
    for index, line in enumerate(lines):
        if offsets[line.offset] > 1:
            problems.append(Problem(f"lines[{index}].offset", f"offset {line.offset} is repeated"))
        elif names[line.field] > 1:
            problems.append(Problem(f"lines[{index}].name", f"name {line.field!r} is repeated"))
    return problems


def _clashing_fields(lines: tuple[GpioLineConfig, ...]) -> list[Problem]:
    """A name like `door_rising` beside `door` would overwrite a counter of another line."""
    derived = {field: index for index, line in enumerate(lines) for field in line.counters()}
    problems = []
    for index, line in enumerate(lines):
        owner = derived.get(line.field)
        if owner is not None and owner != index:
            message = f"field {line.field!r} clashes with a counter of lines[{owner}]"
            problems.append(Problem(f"lines[{index}].name", message))
    return problems

"""Config of the `file` source: follow a log file across rotation and truncation."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import ClassVar, Literal

from agent.config.sensors import PolledSourceKeys
from sync.config.errors import Problem
from sync.config.fields import config_class, setting
from sync.config.units import Duration, Size


@config_class
class FileSourceConfig(PolledSourceKeys):
    """Follows a growing file, like `tail -F`, and turns each new line into an event."""

    kind: ClassVar[str] = "file"

    path: str = setting(
        doc="Absolute path of the file to follow; it may be rotated, truncated or missing.",
        example="/var/log/app.log",
    )
    format: Literal["lines", "json", "csv", "regex"] = setting(
        default="lines",
        doc="How each line is read: lines (the text as field `line`), json (one JSON "
        "object per line), csv (the file's first line is the header; numbers are "
        "converted) or regex (the named groups of `pattern`; numbers are converted).",
    )
    pattern: str | None = setting(
        default=None,
        doc="Regular expression with named groups, searched in each line; required "
        "with format regex, and only allowed with it.",
        example=r"(?P<level>[A-Z]+) (?P<message>.*)",
    )
    start_at: Literal["beginning", "end"] = setting(
        default="end",
        doc="Where reading starts when the file exists at start with no stored position; "
        "a file created later is always read from its beginning.",
    )
    poll_interval: Duration = setting(
        default=0.25,
        doc="How often the file is checked for new data, rotation and truncation.",
        minimum=0.001,
    )
    max_line: Size = setting(
        default=64 * 1024,
        doc="Longer lines are dead-lettered with a sample, and reading goes on after them.",
        minimum=16,
        maximum=16 * 1024 * 1024,
    )
    key_field: str | None = setting(
        default=None, doc="Field of each line's fields used as the event key; unset: none."
    )
    time_field: str | None = setting(
        default=None,
        doc="Dotted path of a field holding the event time as an epoch number (see "
        "time_unit); unset, not a number, or more than a day ahead of the read time "
        "(then counted under time_in_future): the time the line was read.",
        example="ts",
    )
    time_unit: Literal["s", "ms", "us", "ns"] = setting(
        default="s", doc="Unit of the epoch number in time_field."
    )
    rotate_wait: Duration = setting(
        default=5.0,
        doc="After a rotation the old file is read on until it has not grown for this "
        "long, so lines its writer adds before reopening the log are kept; lines of the "
        "new file wait meanwhile, in order.",
        minimum=0.0,
    )

    def check(self) -> list[Problem]:
        problems = []
        if not PurePosixPath(self.path).is_absolute():
            problems.append(Problem("path", f"must be an absolute path, got {self.path!r}"))
        problems.extend(self._check_pattern())
        return problems

    def _check_pattern(self) -> list[Problem]:
        """The pattern goes with format regex, compiles and names at least one group."""
        if self.format != "regex":
            if self.pattern is None:
                return []
            return [Problem("pattern", "is only used with format: regex")]
        if self.pattern is None:
            return [Problem("pattern", "is required with format: regex")]
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            return [Problem("pattern", f"is not a valid regular expression: {exc}")]
        if not compiled.groupindex:
            return [Problem("pattern", "needs at least one named group, such as (?P<level>\\w+)")]
        return []

"""Config of the `command` source: run a program on an interval and parse what it prints."""

from __future__ import annotations

import shlex
from typing import ClassVar, Literal

from agent.config.sensors import PolledSourceKeys
from sync.config.errors import Problem
from sync.config.fields import config_class, setting
from sync.config.units import Duration


@config_class
class CommandSourceConfig(PolledSourceKeys):
    """Runs a command on an interval and turns its output into events."""

    kind: ClassVar[str] = "command"

    command: str = setting(
        doc="The program and its arguments, split like a shell would but run without a "
        "shell (no pipes, globs or variables) unless `shell` is true.",
        example="/usr/local/bin/read-sensor --bus 1",
    )
    shell: bool = setting(
        default=False, doc="Run the command through /bin/sh (pipes, redirections, globs)."
    )
    interval: Duration = setting(
        default=60.0, doc="Time between two runs of the command.", minimum=0.01
    )
    timeout: Duration = setting(
        default=10.0,
        doc="A run taking longer is killed (with its children) and counted as an error.",
        minimum=0.01,
    )
    format: Literal["auto", "json", "number", "keyvalue"] = setting(
        default="auto",
        doc="How stdout is read: json (an object, or an array of objects for several "
        "events), number (one value), keyvalue (key=value lines), or auto (the first of "
        "these that fits).",
    )
    field: str = setting(default="value", doc="Field name of a bare number in the output.")
    key: str | None = setting(default=None, doc="Event key of the readings; unset: none.")

    def check(self) -> list[Problem]:
        try:
            words = shlex.split(self.command)
        except ValueError as exc:
            return [Problem("command", f"cannot be split into arguments: {exc}")]
        if not words:
            return [Problem("command", "must not be empty")]
        return []

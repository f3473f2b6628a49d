"""What a config reload changes: the components to stop, start or keep, by name.

A reload (SIGHUP, `edgestream reload`) must not cost a queued event or the window
state of a pipeline whose definition did not change. So the new config is compared
with the running one component by component: an unchanged source, pipeline or output
keeps running untouched (its connection, its in-memory windows); only added, removed
and changed ones stop or start. A changed pipeline restarts from its committed cursor
and snapshots, exactly as after a crash, and a step whose definition changed starts
afresh (agent/pipeline/runner.py).

Some keys shape the process itself -- the device id is in every topic and client id,
the data folder and queue tuning are the open database, the metrics address is a
bound socket -- so a change to them is refused with the key path: the agent keeps
the running config, and the operator restarts the service to apply it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config.model import AgentConfig

RESTART_KEYS = ("device_id", "data_dir", "queue", "metrics")
"""Top-level keys a running agent cannot change without restarting."""

LIVE_KEYS = ("log_level", "log_format")
"""Top-level keys applied in place, without restarting any component."""


@dataclass(slots=True)
class ReloadStats:
    """Reloads since start, for the metrics and `edgestream reload`."""

    applied: int = 0
    refused: int = 0
    last_at: float | None = None
    last_ok: bool = True


class ReloadRefusedError(Exception):
    """The new config is valid but cannot be applied to the running process."""


class _Named(Protocol):
    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Changes:
    """Names of one kind of component, sorted by what a reload does with them."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def to_stop(self) -> tuple[str, ...]:
        """Running components that stop: removed, and the old version of changed ones."""
        return self.removed + self.changed

    @property
    def to_start(self) -> tuple[str, ...]:
        """Components built from the new config: added, and the new version of changed ones."""
        return self.added + self.changed

    def describe(self, kind: str) -> list[str]:
        """Phrases like 'source x added' for the log line of the reload."""
        return [
            f"{kind} {name} {what}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            for name in names
        ]


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Everything a reload from one config to another does."""

    sources: Changes
    pipelines: Changes
    outputs: Changes
    uplink: bool
    """Restart the uplink (its config, its streams or a file it reads may have changed)."""
    streams: tuple[str, ...]
    """Streams added or whose limits changed."""
    live: tuple[str, ...]
    """Live keys whose value changed (log level, log format)."""

    def describe(self) -> str:
        """One line for the log: what the reload changed, or that nothing did."""
        parts = (
            self.sources.describe("source")
            + self.pipelines.describe("pipeline")
            + self.outputs.describe("output")
            + [f"stream {name} defined" for name in self.streams]
            + (["uplink restarted"] if self.uplink else [])
            + [f"{key} applied" for key in self.live]
        )
        return ", ".join(parts) if parts else "no changes"


def plan_reload(running: AgentConfig, new: AgentConfig) -> ReloadPlan:
    """Compare two valid configs; raises ReloadRefusedError when a restart is needed."""
    blocked = restart_required(running, new)
    if blocked:
        raise ReloadRefusedError(
            f"{', '.join(blocked)} changed, which needs a restart of the agent "
            "(systemctl restart edgestream); the running config is kept"
        )
    return ReloadPlan(
        sources=compare(running.sources, new.sources),
        pipelines=compare(running.pipelines, new.pipelines),
        outputs=compare(running.outputs, new.outputs),
        uplink=_uplink_restarts(running, new),
        streams=tuple(
            name for name, stream in new.streams.items() if running.streams.get(name) != stream
        ),
        live=tuple(key for key in LIVE_KEYS if getattr(running, key) != getattr(new, key)),
    )


def restart_required(running: AgentConfig, new: AgentConfig) -> list[str]:
    """Key paths of restart-only settings that differ, e.g. `queue.commit_interval`."""
    paths: list[str] = []
    for key in RESTART_KEYS:
        paths += differing_paths(getattr(running, key), getattr(new, key), key)
    return paths


def differing_paths(old: Any, new: Any, path: str) -> list[str]:
    """The deepest key paths at which two config values differ."""
    if old == new:
        return []
    if type(old) is type(new) and dataclasses.is_dataclass(old):
        found: list[str] = []
        for field in dataclasses.fields(old):
            found += differing_paths(
                getattr(old, field.name), getattr(new, field.name), f"{path}.{field.name}"
            )
        return found
    return [path]


def compare(running: Sequence[_Named], new: Sequence[_Named]) -> Changes:
    """Added, removed and changed components, matched by name."""
    old_by_name = {item.name: item for item in running}
    new_by_name = {item.name: item for item in new}
    return Changes(
        added=tuple(n for n in new_by_name if n not in old_by_name),
        removed=tuple(n for n in old_by_name if n not in new_by_name),
        changed=tuple(
            n for n, item in new_by_name.items() if n in old_by_name and old_by_name[n] != item
        ),
    )


def _uplink_streams(config: AgentConfig) -> list[str]:
    return [name for name, stream in config.streams.items() if stream.uplink]


def _uplink_restarts(running: AgentConfig, new: AgentConfig) -> bool:
    """The uplink restarts when its config or streams change, or when it reads files.

    Key and dictionary files are read when the uplink starts; a reload is how an
    operator hands it a rotated key, so an uplink that reads any restarts. What was
    in flight is sent again and the hub drops it as a duplicate.
    """
    if running.uplink != new.uplink or _uplink_streams(running) != _uplink_streams(new):
        return True
    uplink = new.uplink
    return uplink is not None and bool(uplink.hmac_key_file or uplink.dictionary_file)

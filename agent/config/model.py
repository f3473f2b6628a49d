"""The agent's configuration: one frozen dataclass per YAML section.

These classes are the single source of truth for the agent's YAML: the
walker in `sync.config.spec` validates against them and
`scripts/gen_config_docs.py` renders `docs/configuration.md` from them.
Field names are a contract other modules read.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Final, Literal

from agent.config.command_source import CommandSourceConfig
from agent.config.file_source import FileSourceConfig
from agent.config.gpio_source import GpioSourceConfig
from agent.config.http_source import HttpSourceConfig
from agent.config.mqtt_source import (
    MqttSourceConfig,
)
from agent.config.sensors import NAME_PATTERN, SimulatedSourceConfig
from agent.config.steps import Step, streams_read, streams_written
from agent.config.sysfs_sources import IioSourceConfig, ThermalSourceConfig, W1SourceConfig
from agent.config.system_source import SystemSourceConfig
from sync.config.errors import IssueKind, Problem, describe, hint
from sync.config.fields import TAGGED_BY_TYPE, config_class, setting
from sync.config.units import Duration, Size
from sync.metrics_config import MetricsConfig
from sync.mqtt.config import MqttConnectionConfig
from sync.uplink_config import DEVICE_ID_PATTERN, UplinkConfig

STREAM_PATTERN: Final = r"[A-Za-z0-9.-][A-Za-z0-9_.-]*"
"""Stream names; a leading `_` is kept for streams the agent makes itself."""
READABLE_RESERVED: Final = frozenset({"_deadletter"})
"""Built-in streams (the queue's dead-letter stream) that pipelines and outputs may read."""

LogLevel = Literal["debug", "info", "warning", "error"]


@config_class
class QueueConfig:
    """The durable SQLite queue every received event is committed to before it is acknowledged."""

    commit_interval: Duration = setting(
        default=0.1,
        doc="At most one commit (one fsync) per interval: writes arriving meanwhile share "
        "it (group commit). Longer means fewer SD-card writes but later acknowledgements; "
        "a lone write on a quiet queue commits at once.",
        minimum=0.001,
    )
    commit_max_events: int = setting(
        default=50000,
        doc="Commit before the interval ends once this many events are waiting; with the "
        "default interval this keeps commits at 10/s up to 500,000 events/s.",
        minimum=1,
    )
    synchronous: Literal["full", "normal"] = setting(
        default="full",
        doc="SQLite synchronous mode: full survives power loss; "
        "normal is faster but may lose the last commits on power loss.",
    )
    max_pending: int = setting(
        default=10000,
        doc="Messages a source holds while they wait for their commit before it stops "
        "reading (the broker keeps the rest); bounds memory. The broker must allow this "
        "many unacknowledged messages per client (Mosquitto: max_inflight_messages).",
        minimum=1,
    )
    read_batch: int = setting(
        default=1000,
        doc="Events read from the queue at a time by pipelines, outputs and the uplink.",
        minimum=1,
    )


@config_class
class StreamConfig:
    """A named, durable, ordered sequence of events with its own retention limits."""

    max_bytes: Size = setting(
        default=256 * 1024**2,
        doc="Disk budget of the stream; beyond it the overflow policy applies.",
        minimum=1,
    )
    max_age: Duration = setting(
        default=7 * 86400.0,
        doc="Events older than this are deleted, sent or not; unsent ones are counted as dropped.",
        minimum=1.0,
    )
    overflow: Literal["drop_oldest", "drop_newest", "block"] = setting(
        default="drop_oldest",
        doc="When max_bytes is reached: drop_oldest deletes the oldest events, drop_newest "
        "refuses new ones, block pauses the sources; drops are counted and reported to the hub.",
    )
    uplink: bool = setting(
        default=False, doc="Send this stream's events to the hub (needs the uplink section)."
    )


@config_class
class PipelineConfig:
    """Reads one stream from its own durable cursor, runs steps, appends results to another."""

    name: str = setting(
        doc="Unique name of the pipeline, used in logs, metrics and its cursor.",
        pattern=NAME_PATTERN,
    )
    input: str = setting(doc="Stream the pipeline reads.", example="sensors")
    output: str = setting(doc="Stream the results are appended to.", example="sensors_1m")
    steps: tuple[Step, ...] = setting(
        default=(),
        doc="Steps applied in order, each a one-key mapping such as `filter: <expression>` "
        "or `window: {...}` (see docs/pipelines.md); empty copies events unchanged.",
    )

    def check(self) -> list[Problem]:
        if self.input in self.written():
            return [Problem("output", "must differ from input, or the pipeline feeds itself")]
        return []

    def written(self) -> set[str]:
        """Every stream the pipeline appends to: its output, routes, late streams."""
        return {self.output} | {name for s in self.steps for _, name in streams_written(s)}

    def read(self) -> set[str]:
        """Every stream the pipeline reads: its input and joined streams."""
        return {self.input} | {name for s in self.steps for _, name in streams_read(s)}


@config_class
class MqttOutputConfig:
    """Publishes each event of a stream to an MQTT broker."""

    kind: ClassVar[str] = "mqtt"

    name: str = setting(
        doc="Unique name of the output, used in logs, metrics and its cursor.",
        pattern=NAME_PATTERN,
    )
    stream: str = setting(doc="Stream whose events are published.", example="sensors_1m")
    broker: MqttConnectionConfig = setting(doc="Broker to publish to.")
    topic: str = setting(
        default="edgestream/{device_id}/{stream}/{key}",
        doc="Topic of each message; {device_id}, {stream}, {key}, {topic} (the event's "
        "original topic) and {payload.<field>} (a payload field, dotted path) are filled in "
        "per event, a missing value as `_`.",
    )
    qos: int = setting(
        default=1,
        doc="QoS of published messages; 0 can lose messages when the connection drops.",
        minimum=0,
        maximum=2,
    )
    retain: bool = setting(default=False, doc="Ask the broker to retain the last message.")

    def check(self) -> list[Problem]:
        try:
            names = {
                name for _, name, _, _ in string.Formatter().parse(self.topic) if name is not None
            }
        except ValueError as exc:
            return [Problem("topic", f"bad topic template: {exc}", IssueKind.WRONG_TYPE)]
        unknown = sorted(n for n in names - TOPIC_PLACEHOLDERS if not _payload_field(n))
        if not unknown:
            return []
        allowed = "{device_id}, {stream}, {key}, {topic} or {payload.<field>}"
        message = f"unknown placeholder {{{unknown[0]}}} (use {allowed})"
        return [Problem("topic", message, IssueKind.WRONG_TYPE)]


TOPIC_PLACEHOLDERS: Final = frozenset({"device_id", "stream", "key", "topic"})


def _payload_field(placeholder: str) -> bool:
    """``payload.sensor`` or ``payload.env.site``: a dotted path into the payload."""
    parts = placeholder.split(".")
    return len(parts) > 1 and parts[0] == "payload" and all(p.isidentifier() for p in parts[1:])


Source = Annotated[
    MqttSourceConfig
    | SimulatedSourceConfig
    | SystemSourceConfig
    | ThermalSourceConfig
    | W1SourceConfig
    | IioSourceConfig
    | GpioSourceConfig
    | CommandSourceConfig
    | FileSourceConfig
    | HttpSourceConfig,
    TAGGED_BY_TYPE,
]
Output = Annotated[MqttOutputConfig, TAGGED_BY_TYPE]


@config_class
class AgentConfig:
    """The whole agent: sources feed streams, pipelines transform them, outputs and uplink send."""

    device_id: str = setting(
        doc="Unique id of this device; it is part of uplink topics and MQTT client ids.",
        example="greenhouse-1",
        pattern=DEVICE_ID_PATTERN,
    )
    data_dir: str = setting(
        default="./data",
        doc="Folder for the durable queue and pipeline state; it must survive reboots.",
    )
    log_level: LogLevel = setting(default="info", doc="Least severe log level written.")
    log_format: Literal["text", "json"] = setting(
        default="text", doc="Log line format: text for people, json for a log collector."
    )
    queue: QueueConfig = setting(
        default=QueueConfig(), doc="Tuning of the durable queue every event is committed to."
    )
    streams: dict[str, StreamConfig] = setting(
        doc="Streams by name; an empty entry (`sensors: {}`) uses the defaults.",
        example={"sensors": {"max_bytes": "64MiB", "uplink": True}},
        minimum=1,
    )
    sources: tuple[Source, ...] = setting(default=(), doc="Where events come from, by `type`.")
    pipelines: tuple[PipelineConfig, ...] = setting(
        default=(), doc="Processing that reads one stream and appends results to another."
    )
    outputs: tuple[Output, ...] = setting(default=(), doc="Where local results go, by `type`.")
    uplink: UplinkConfig | None = setting(
        default=None, doc="Store-and-forward to the hub; unset keeps all data on the device."
    )
    metrics: MetricsConfig = setting(
        default=MetricsConfig(),
        doc="Prometheus metrics and health endpoints, on loopback port 9108 by default.",
    )

    def check(self) -> list[Problem]:
        problems = [
            Problem(f"streams.{name}", _BAD_STREAM_NAME, IssueKind.WRONG_TYPE)
            for name in self.streams
            if not re.fullmatch(STREAM_PATTERN, name)
        ]
        return problems + self._uplink_problems()

    def check_references(self) -> list[Problem]:
        problems = [self._missing_stream(path, name, reads) for path, name, reads in self._refs()]
        problems += _duplicates("sources", self.sources) + _duplicates("pipelines", self.pipelines)
        problems += _duplicates("outputs", self.outputs)
        problems.append(pipeline_cycle(self.pipelines))
        return [problem for problem in problems if problem is not None]

    def _refs(self) -> Iterator[tuple[str, str, bool]]:
        """(path, stream name, whether it is only read) for every stream reference."""
        for i, source in enumerate(self.sources):
            yield f"sources[{i}].stream", source.stream, False
        for i, pipeline in enumerate(self.pipelines):
            yield f"pipelines[{i}].input", pipeline.input, True
            yield f"pipelines[{i}].output", pipeline.output, False
            for j, step in enumerate(pipeline.steps):
                base = f"pipelines[{i}].steps[{j}].{step.kind}"
                yield from ((f"{base}.{path}", name, False) for path, name in streams_written(step))
                yield from ((f"{base}.{path}", name, True) for path, name in streams_read(step))
        for i, output in enumerate(self.outputs):
            yield f"outputs[{i}].stream", output.stream, True

    def _missing_stream(self, path: str, name: str, reads: bool) -> Problem | None:
        if name in self.streams or (reads and name in READABLE_RESERVED):
            return None
        message = f"stream {describe(name)} is not defined in streams{hint(name, self.streams)}"
        return Problem(path, message, IssueKind.BAD_REFERENCE)

    def _uplink_problems(self) -> list[Problem]:
        marked = [name for name, stream in self.streams.items() if stream.uplink]
        if self.uplink is None:
            message = "is true but the top-level uplink section is not set"
            return [Problem(f"streams.{name}.uplink", message) for name in marked]
        return [
            Problem(
                f"uplink.streams.{name}",
                f"stream {describe(name)} is not sent to the hub (set "
                f"streams.{name}.uplink: true){hint(name, marked)}",
                IssueKind.BAD_REFERENCE,
            )
            for name in self.uplink.streams
            if name not in marked
        ]


def pipeline_cycle(pipelines: tuple[PipelineConfig, ...]) -> Problem | None:
    """A cycle of pipelines feeding each other (a -> b -> a) would loop events forever.

    A pipeline feeding itself is reported by `PipelineConfig.check`.
    """
    feeds = {
        p.name: {q.name for q in pipelines if q is not p and p.written() & q.read()}
        for p in pipelines
    }
    for start in feeds:
        path = _path_back(feeds, start, start, [start], set())
        if path:
            message = "pipelines feed each other in a cycle: " + " -> ".join(path)
            index = next(i for i, p in enumerate(pipelines) if p.name == start)
            return Problem(f"pipelines[{index}].output", message, IssueKind.BAD_REFERENCE)
    return None


def _path_back(
    feeds: dict[str, set[str]], start: str, node: str, path: list[str], seen: set[str]
) -> list[str] | None:
    for nxt in sorted(feeds[node]):
        if nxt == start:
            return [*path, start]
        if nxt not in seen:
            seen.add(nxt)
            found = _path_back(feeds, start, nxt, [*path, nxt], seen)
            if found:
                return found
    return None


_BAD_STREAM_NAME: Final = (
    'stream names use letters, digits, "_", "." and "-" and must not start with "_"'
)


def _duplicates(
    section: str,
    items: tuple[Any, ...],
) -> list[Problem | None]:
    first: dict[str, int] = {}
    problems: list[Problem | None] = []
    for i, item in enumerate(items):
        if item.name in first:
            message = f"name {describe(item.name)} is already used by {section}[{first[item.name]}]"
            problems.append(Problem(f"{section}[{i}].name", message))
        first.setdefault(item.name, i)
    return problems

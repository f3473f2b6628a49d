"""Config of the `mqtt` source: subscriptions, payload decoding, keys, tags and rate limits.

A source subscribes at one broker; several sources (each with its own `broker`) feed
one or several streams from several brokers. Everything a message becomes -- its
fields, key, time and tags -- is declared here and checked at load, expressions
included, so a typo refuses the config instead of dead-lettering every message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Final, Literal

from agent.config.sensors import NAME_PATTERN
from sync.config.errors import IssueKind, Problem, describe
from sync.config.fields import config_class, setting
from sync.config.units import Duration, Size
from sync.mqtt.config import MqttConnectionConfig

PayloadFormat = Literal["json", "number", "csv", "keyvalue", "raw"]
SHARE_PREFIX: Final = "$share/"
FIELD_NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*"


@config_class
class PayloadConfig:
    """How a source decodes message payloads and finds their event time."""

    format: PayloadFormat = setting(
        default="json",
        doc="How payloads are read: json (an object or a number), number (one bare number, "
        "stored as `{field: n}`), csv (one line of values named by `columns`), keyvalue "
        "(`a=1 b=2` pairs, separated by spaces, commas, semicolons or new lines), or raw "
        "(the bytes as they are). A payload that does not parse goes to the _deadletter "
        "stream with its reason.",
    )
    field: str = setting(
        default="value",
        doc="Field name of the value when the format is number.",
        pattern=FIELD_NAME,
    )
    columns: tuple[str, ...] = setting(
        default=(),
        doc="Field names of the values of a csv payload, in order; a line with another "
        "number of values is dead-lettered.",
        example=["temp", "humidity"],
    )
    separator: str = setting(
        default=",",
        doc="Character between the values of a csv payload.",
        pattern=r"[^\r\n\"]",
    )
    extract: dict[str, str] = setting(
        default={},
        doc="Fields computed from each decoded payload with the pipeline expression "
        "language (docs/pipelines.md), added to it (replacing a field of the same name).",
        example={"temp": "data.readings[0] / 10", "site": "topic[1]"},
    )
    extract_only: bool = setting(
        default=False,
        doc="Keep only the extracted fields (and tags) instead of the whole payload.",
    )
    max_size: Size = setting(
        default=256 * 1024,
        doc="Larger payloads are rejected and counted instead of stored.",
        minimum=1,
    )
    time_field: str | None = setting(
        default=None,
        doc="Dotted payload field holding the event time as epoch number; "
        "unset, or missing in a payload, uses the arrival time.",
        example="meta.ts",
    )
    time_unit: Literal["s", "ms", "us", "ns"] = setting(
        default="s", doc="Unit of the epoch number in time_field."
    )
    max_future: Duration = setting(
        default=86400.0,
        doc="An event time further than this ahead of the arrival time is not trusted "
        "(a wrong unit or clock): the arrival time is used and the event is counted "
        "under time_in_future, so one bad reading cannot close every window early.",
        minimum=0.0,
    )

    def check(self) -> list[Problem]:
        problems = []
        if self.format == "csv" and not self.columns:
            problems.append(Problem("columns", "is required when format is csv"))
        if self.format != "csv" and self.columns:
            problems.append(Problem("columns", f"is only used with format csv, not {self.format}"))
        problems += [Problem(f"columns[{i}]", "is used twice") for i in _repeated(self.columns)]
        if self.format == "raw" and (self.extract or self.time_field):
            used = "extract" if self.extract else "time_field"
            problems.append(Problem(used, "needs decoded fields; format raw keeps bytes"))
        if self.extract_only and not self.extract:
            problems.append(Problem("extract_only", "is true but no extract fields are set"))
        return problems

    @property
    def transforms(self) -> bool:
        """Whether the stored payload differs from the received bytes (beyond tags)."""
        return self.format in {"number", "csv", "keyvalue"} or bool(self.extract)


@config_class
class KeyConfig:
    """Where a source finds each event's key, which windows and output topics group by."""

    topic_segment: int | None = setting(
        default=None,
        doc="Topic level used as the key, counted from 0 (negative counts from the end), "
        "e.g. 1 for sensors/<id>/temp.",
        example=1,
    )
    field: str | None = setting(
        default=None, doc="Dotted payload field used as the key.", example="device.id"
    )
    expression: str | None = setting(
        default=None,
        doc="Expression over the decoded payload and topic giving the key; null means no key.",
        example="topic[1] + '/' + sensor",
    )

    def check(self) -> list[Problem]:
        chosen = [
            name
            for name, value in (
                ("topic_segment", self.topic_segment),
                ("field", self.field),
                ("expression", self.expression),
            )
            if value is not None
        ]
        if len(chosen) > 1:
            message = f"cannot be used together with {chosen[0]}; choose one"
            return [Problem(chosen[1], message)]
        return []


@config_class
class TopicConfig:
    """One subscription of an MQTT source; a plain string is short for `{topic: ...}`."""

    shorthand: ClassVar[str] = "topic"

    topic: str = setting(
        doc="MQTT topic filter to subscribe to; + matches one level, # the rest; "
        "`$share/<group>/<filter>` is a shared subscription (the broker gives each "
        "message to one member of the group).",
        example="sensors/+/temperature",
    )
    qos: int = setting(
        default=1,
        doc="Subscription QoS: with 1 or 2 a message is acknowledged only after it is "
        "committed; 0 can lose messages.",
        minimum=0,
        maximum=2,
    )

    def check(self) -> list[Problem]:
        if _valid_filter(self.topic):
            return []
        message = (
            "expected an MQTT topic filter such as sensors/+/temp or "
            f"$share/group/sensors/#, got {describe(self.topic)}"
        )
        return [Problem("topic", message, IssueKind.WRONG_TYPE)]


def _valid_filter(topic: str) -> bool:
    """A well-formed filter, or `$share/<group>/<filter>` with a group free of + # /."""
    if topic.startswith(SHARE_PREFIX):
        group, _, topic = topic[len(SHARE_PREFIX) :].partition("/")
        if not group or "+" in group or "#" in group:
            return False
    levels = topic.split("/")
    misplaced = any(
        ("+" in level and level != "+") or ("#" in level and level != "#") for level in levels
    )
    return bool(topic) and not misplaced and "#" not in levels[:-1]


@config_class
class RateLimitConfig:
    """A cap on the messages stored per topic: a noisy or stuck publisher cannot fill the disk."""

    per_second: float = setting(
        doc="Messages per second stored from each topic on average; the excess is "
        "acknowledged, dropped and counted under rate_limited.",
        example=10,
        minimum=0.001,
    )
    burst: int | None = setting(
        default=None,
        doc="Messages a topic may send at once above the average; unset is one second's "
        "worth (at least 1).",
        minimum=1,
    )

    @property
    def capacity(self) -> float:
        """Bucket size: the burst, or one second of the average rate."""
        return float(self.burst) if self.burst is not None else max(1.0, self.per_second)


@config_class
class MqttSourceConfig:
    """Subscribes to MQTT topics and commits each message to a stream before acknowledging it."""

    kind: ClassVar[str] = "mqtt"

    name: str = setting(
        doc="Unique name of the source, used in logs, metrics and the client id.",
        pattern=NAME_PATTERN,
    )
    stream: str = setting(doc="Stream the received events are appended to.", example="sensors")
    broker: MqttConnectionConfig = setting(
        doc="Broker to subscribe at; for several brokers, configure one source per broker."
    )
    topics: tuple[TopicConfig, ...] = setting(
        doc="Topic filters to subscribe to; each a string or a mapping with topic and qos.",
        example=["sensors/#"],
        minimum=1,
    )
    clean_session: bool = setting(
        default=False,
        doc="Start without the broker's stored session; false keeps subscriptions and queued "
        "QoS 1/2 messages across reconnects.",
    )
    payload: PayloadConfig = setting(
        default=PayloadConfig(), doc="How message payloads are decoded and timestamped."
    )
    key: KeyConfig = setting(default=KeyConfig(), doc="Event key extraction; unset means no key.")
    tags: dict[str, str] = setting(
        default={}, doc="Fields added to every event.", example={"site": "lab"}
    )
    topic_tags: dict[str, int] = setting(
        default={},
        doc="Fields taken from topic levels (counted from 0, negative from the end), "
        "e.g. `{room: 1}` adds room=kitchen for home/kitchen/temp; a topic too short "
        "adds nothing.",
        example={"room": 1},
    )
    user_properties: bool = setting(
        default=True,
        doc="Keep MQTT 5 user properties of each message in the event's headers "
        "(under user_properties; a repeated name keeps every value in a list).",
    )
    rate_limit: RateLimitConfig | None = setting(
        default=None, doc="Per-topic cap on stored messages; unset stores everything."
    )

    def check(self) -> list[Problem]:
        if self.payload.format == "raw" and (self.tags or self.topic_tags):
            used = "tags" if self.tags else "topic_tags"
            return [Problem(used, "needs decoded fields; payload format raw keeps bytes")]
        return []

    def expressions(self) -> Iterator[tuple[str, str]]:
        """(path, text) of every expression, compiled by the loader at start-up."""
        for name, text in self.payload.extract.items():
            yield f"payload.extract.{name}", text
        if self.key.expression is not None:
            yield "key.expression", self.key.expression


def _repeated(names: tuple[str, ...]) -> list[int]:
    seen: set[str] = set()
    repeated = []
    for i, name in enumerate(names):
        if name in seen:
            repeated.append(i)
        seen.add(name)
    return repeated

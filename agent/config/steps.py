"""Pipeline steps as configured: one frozen class per `- <kind>: ...` entry.

Each class lists the expressions it holds (`expressions()`), so the loader compiles
every one of them at start-up and reports a typo with its path and column, and
`streams_written()` / `streams_read()` so references and cycles are checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Final, Literal

from sync.config.errors import Problem
from sync.config.fields import TAGGED_BY_KEY, config_class, setting
from sync.config.units import Duration

ExprKind = Literal["value", "predicate", "aggregate"]
ExpressionRef = tuple[str, str, ExprKind]
"""(path relative to the step, expression text, how it is compiled)."""

TimeBase = Literal["event", "ingest"]

UNIT_CONVERSIONS: Final[dict[str, tuple[float, float]]] = {
    "c_to_f": (1.8, 32.0),
    "f_to_c": (5 / 9, -32.0 * 5 / 9),
    "c_to_k": (1.0, 273.15),
    "k_to_c": (1.0, -273.15),
    "pa_to_hpa": (0.01, 0.0),
    "hpa_to_pa": (100.0, 0.0),
    "ms_to_s": (0.001, 0.0),
    "s_to_ms": (1000.0, 0.0),
    "mv_to_v": (0.001, 0.0),
    "v_to_mv": (1000.0, 0.0),
    "percent_to_ratio": (0.01, 0.0),
    "ratio_to_percent": (100.0, 0.0),
    "millidegree_to_c": (0.001, 0.0),
}
"""Named unit conversions of the map step: value * scale + offset."""

Conversion = Literal[
    "c_to_f",
    "f_to_c",
    "c_to_k",
    "k_to_c",
    "pa_to_hpa",
    "hpa_to_pa",
    "ms_to_s",
    "s_to_ms",
    "mv_to_v",
    "v_to_mv",
    "percent_to_ratio",
    "ratio_to_percent",
    "millidegree_to_c",
]

_KEY_DOC = "Expression giving the key the step keeps its state per; unset uses the event key."
_TIME_DOC = "Clock the step follows: event time, or ingest (arrival) time."


@config_class
class FilterStep:
    """Keeps only events for which an expression is true; write `- filter: <expression>`."""

    kind: ClassVar[str] = "filter"
    shorthand: ClassVar[str] = "expr"

    expr: str = setting(
        doc="Condition an event must meet to pass on; a missing field is null, "
        "so the condition is false, not an error.",
        example="temp > 30 and topic[1] != 'test'",
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        yield "expr", self.expr, "predicate"


@config_class
class MapStep:
    """Reshapes each event: set computed fields, rename, convert units, drop; set key or time."""

    kind: ClassVar[str] = "map"

    set: dict[str, str] = setting(
        default={},
        doc="Field (dotted path, created if missing) to expression, all evaluated on the "
        "incoming event before any change.",
        example={"temp_f": "temp * 1.8 + 32", "site": "topic[1]"},
    )
    rename: dict[str, str] = setting(
        default={},
        doc="Old field path to new field path, applied after set.",
        example={"t": "temp"},
    )
    convert: dict[str, Conversion] = setting(
        default={},
        doc="Field path to a unit conversion (c_to_f, f_to_c, c_to_k, k_to_c, pa_to_hpa, "
        "hpa_to_pa, ms_to_s, s_to_ms, mv_to_v, v_to_mv, percent_to_ratio, ratio_to_percent, "
        "millidegree_to_c), applied after rename; a non-numeric value is left as it is.",
        example={"temp": "millidegree_to_c"},
    )
    drop: tuple[str, ...] = setting(
        default=(), doc="Field paths removed last.", example=["debug", "raw.bytes"]
    )
    key: str | None = setting(
        default=None,
        doc="Expression that becomes the event key (for later steps, topics and the uplink).",
        example="device",
    )
    time: str | None = setting(
        default=None,
        doc="Expression giving a new event time in epoch seconds; a non-numeric result "
        "keeps the old time.",
        example="ts / 1000",
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        for target, text in self.set.items():
            yield f"set.{target}", text, "value"
        if self.key is not None:
            yield "key", self.key, "value"
        if self.time is not None:
            yield "time", self.time, "value"

    def check(self) -> list[Problem]:
        if self.set or self.rename or self.convert or self.drop or self.key or self.time:
            return []
        return [Problem("set", "a map step needs at least one of set, rename, convert, drop, "
                        "key or time")]  # fmt: skip


@config_class
class SelectStep:
    """Keeps only the listed fields of each payload; write `- select: [a, b.c]`."""

    kind: ClassVar[str] = "select"
    shorthand: ClassVar[str] = "fields"

    fields: tuple[str, ...] = setting(
        doc="Field paths kept (nested paths keep their parents); the others are removed.",
        example=["device", "temp"],
        minimum=1,
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        return iter(())


@config_class
class SplitStep:
    """Turns one event holding an array into one event per element; `- split: readings`."""

    kind: ClassVar[str] = "split"
    shorthand: ClassVar[str] = "field"

    field: str = setting(doc="Field path of the array to split.", example="readings")
    element_field: str = setting(
        default="value", doc="Field that holds an element that is not an object."
    )
    keep_parent: bool = setting(
        default=True,
        doc="Copy the other fields of the original event into each new one "
        "(the element's own fields win).",
    )
    index_field: str | None = setting(
        default=None, doc="Field that receives the element's position, from 0.", example="index"
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        return iter(())


@config_class
class RouteRule:
    """One branch of a route: events meeting `when` go to stream `to`."""

    when: str = setting(doc="Condition of this branch.", example="temp > 40")
    to: str = setting(doc="Stream the matching events are appended to.", example="alerts")


@config_class
class RouteStep:
    """Sends events to other streams by condition; the first matching rule wins."""

    kind: ClassVar[str] = "route"
    shorthand: ClassVar[str] = "rules"

    rules: tuple[RouteRule, ...] = setting(
        doc="Branches tried in order; an event matching none continues down the pipeline.",
        example=[{"when": "temp > 40", "to": "alerts"}],
        minimum=1,
    )
    copy: bool = setting(
        default=False,
        doc="Also let routed events continue down the pipeline (a tee) instead of moving them.",
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        for i, rule in enumerate(self.rules):
            yield f"rules[{i}].when", rule.when, "predicate"


@config_class
class DeadbandStep:
    """Report by exception: passes an event only when its value moved beyond a band."""

    kind: ClassVar[str] = "deadband"

    value: str = setting(doc="Expression of the watched number.", example="temp")
    key: str | None = setting(default=None, doc=_KEY_DOC)
    absolute: float | None = setting(
        default=None, doc="Pass when |value - last passed value| > absolute.", minimum=0.0
    )
    relative: float | None = setting(
        default=None,
        doc="Pass when |value - last passed value| > relative * |last passed value| (0.05 is 5 %).",
        minimum=0.0,
    )
    heartbeat: Duration | None = setting(
        default=None,
        doc="Also pass an event when the last one passed for its key is at least this old "
        "(event time), so a steady value still shows the sensor is alive.",
        minimum=0.001,
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        yield "value", self.value, "value"
        if self.key is not None:
            yield "key", self.key, "value"

    def check(self) -> list[Problem]:
        if self.absolute is None and self.relative is None:
            return [Problem("absolute", "set absolute, relative or both")]
        return []


@config_class
class DedupeStep:
    """Drops an event equal to one already seen for its key within a time horizon."""

    kind: ClassVar[str] = "dedupe"

    key: str | None = setting(default=None, doc=_KEY_DOC)
    fields: tuple[str, ...] = setting(
        default=(),
        doc="Expressions whose values identify a duplicate; empty compares the whole payload.",
        example=["msg_id"],
    )
    horizon: Duration = setting(
        default=60.0,
        doc="How long a seen event is remembered (on the step's clock).",
        minimum=0.001,
    )
    time: TimeBase = setting(default="event", doc=_TIME_DOC)
    max_entries: int = setting(
        default=100000,
        doc="Remembered events at most; beyond it the oldest are forgotten early (counted).",
        minimum=1,
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        if self.key is not None:
            yield "key", self.key, "value"
        for i, text in enumerate(self.fields):
            yield f"fields[{i}]", text, "value"


@config_class
class ThrottleStep:
    """Limits each key to `rate` events per `per` seconds; the excess is dropped or held."""

    kind: ClassVar[str] = "throttle"

    rate: int = setting(doc="Events passed per key and interval.", example=1, minimum=1)
    per: Duration = setting(default=1.0, doc="Length of the interval.", minimum=0.001)
    key: str | None = setting(default=None, doc=_KEY_DOC)
    mode: Literal["drop", "latest"] = setting(
        default="drop",
        doc="What happens to the excess: drop discards it; latest keeps the newest excess "
        "event of the interval and passes it when the key's next interval starts (or when "
        "the key goes idle).",
    )
    time: TimeBase = setting(default="event", doc=_TIME_DOC)
    idle: Duration = setting(
        default=60.0,
        doc="With mode latest: pass a held event after this long without events for its key.",
        minimum=0.001,
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        if self.key is not None:
            yield "key", self.key, "value"


@config_class
class DownsampleStep:
    """Keeps one event per key and interval (aligned to the epoch)."""

    kind: ClassVar[str] = "downsample"

    interval: Duration = setting(doc="Length of each interval.", example="1m", minimum=0.001)
    key: str | None = setting(default=None, doc=_KEY_DOC)
    keep: Literal["first", "last"] = setting(
        default="first",
        doc="Which event of an interval passes: first passes the first one at once; last "
        "passes the last one when the key's next interval starts (or when the key goes idle).",
    )
    time: TimeBase = setting(default="event", doc=_TIME_DOC)
    idle: Duration = setting(
        default=60.0,
        doc="With keep last: pass a held event after this long without events for its key.",
        minimum=0.001,
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        if self.key is not None:
            yield "key", self.key, "value"


WindowType = Literal["tumbling", "hopping", "session", "count"]


@config_class
class WindowStep:
    """Aggregates events per window (and per key) into one result event per window."""

    kind: ClassVar[str] = "window"

    type: WindowType = setting(
        default="tumbling",
        doc="Window kind: tumbling (fixed size, no overlap), hopping (fixed size, a new one "
        "every slide), session (ends after a gap without events) or count (every `events` "
        "events).",
    )
    size: Duration | None = setting(
        default=None, doc="Length of each tumbling or hopping window.", example="1m", minimum=0.001
    )
    slide: Duration | None = setting(
        default=None, doc="Hopping windows: how often a window starts.", example="10s",
        minimum=0.001,
    )  # fmt: skip
    gap: Duration | None = setting(
        default=None,
        doc="Session windows: a session ends after this long without an event for its key.",
        example="5m",
        minimum=0.001,
    )
    max_length: Duration | None = setting(
        default=None,
        doc="Session windows: a session longer than this is closed and a new one starts.",
        minimum=0.001,
    )
    events: int | None = setting(
        default=None, doc="Count windows: events per window.", example=100, minimum=1
    )
    every: int | None = setting(
        default=None,
        doc="Count windows: start a window every this many events (sliding); unset means "
        "`events` (no overlap).",
        minimum=1,
    )
    key: str | None = setting(
        default=None,
        doc="Expression whose value keeps separate windows per key; unset uses the event key.",
        example="device",
    )
    time: TimeBase = setting(
        default="event",
        doc="Clock the windows follow: event uses the payload time (time_field), "
        "ingest the arrival time.",
    )
    lateness: Duration = setting(
        default=0.0, doc="How long after its end a window waits for out-of-order events."
    )
    idle: Duration = setting(
        default=60.0,
        doc="Close a key's windows when it had no event for this long (processing time), "
        "so a silent sensor does not hold its results back.",
        minimum=0.001,
    )
    late: str = setting(
        default="drop",
        doc="Events arriving after their window closed: drop (counted) or the name of a "
        "stream they are appended to.",
        example="late_readings",
    )
    aggregates: dict[str, str] = setting(
        doc="Result field name to aggregate call: count(), count(x), sum, avg, min, max, "
        "first, last, stddev, stddev_pop, variance, p50, p90, p95, p99, percentile(x, q), "
        "rate, delta, distinct.",
        example={"readings": "count()", "avg_temp": "avg(temp)"},
        minimum=1,
    )

    def expressions(self) -> Iterator[ExpressionRef]:
        if self.key is not None:
            yield "key", self.key, "value"
        for name, call in self.aggregates.items():
            yield f"aggregates.{name}", call, "aggregate"

    def check(self) -> list[Problem]:
        needs = _WINDOW_NEEDS[self.type]
        problems = [
            Problem(name, f"is required for {self.type} windows")
            for name in needs
            if getattr(self, name) is None
        ]
        problems += [
            Problem(name, f"does not apply to {self.type} windows")
            for name in _WINDOW_OPTIONS
            if name not in needs + _WINDOW_OPTIONAL[self.type] and getattr(self, name) is not None
        ]
        if self.type == "hopping" and self.size and self.slide and self.slide > self.size:
            problems.append(Problem("slide", "must not exceed size (events would be skipped)"))
        return problems


_WINDOW_OPTIONS: Final = ("size", "slide", "gap", "max_length", "events", "every")
_WINDOW_NEEDS: Final[dict[str, tuple[str, ...]]] = {
    "tumbling": ("size",),
    "hopping": ("size", "slide"),
    "session": ("gap",),
    "count": ("events",),
}
_WINDOW_OPTIONAL: Final[dict[str, tuple[str, ...]]] = {
    "tumbling": (),
    "hopping": (),
    "session": ("max_length",),
    "count": ("every",),
}


@config_class
class JoinStep:
    """Enriches events with another stream: its latest record per key, or matches in time."""

    kind: ClassVar[str] = "join"

    type: Literal["table", "window"] = setting(
        default="table",
        doc="Join kind: table adds the latest record of the other stream with the same key; "
        "window pairs events of both streams whose keys match and whose times are within "
        "`within`.",
    )
    stream: str = setting(doc="The other stream, whose events are joined.", example="calibration")
    key: str | None = setting(
        default=None, doc="Expression of the join key on this pipeline's events; unset: event key."
    )
    other_key: str | None = setting(
        default=None, doc="Expression of the join key on the other stream; unset: event key."
    )
    into: str | None = setting(
        default=None,
        doc="Field that receives the other event's payload; unset uses the other stream's name.",
    )
    required: bool = setting(
        default=False,
        doc="Table joins only: drop events that have no record yet (counted) instead of "
        "passing them with null.",
    )
    within: Duration | None = setting(
        default=None,
        doc="Window joins only: the largest time difference between two matched events.",
        example="5s",
        minimum=0.0,
    )
    lateness: Duration = setting(
        default=0.0,
        doc="Window joins only: how long events wait for out-of-order partners beyond `within`.",
    )
    time: TimeBase = setting(default="event", doc=_TIME_DOC)

    def expressions(self) -> Iterator[ExpressionRef]:
        if self.key is not None:
            yield "key", self.key, "value"
        if self.other_key is not None:
            yield "other_key", self.other_key, "value"

    def check(self) -> list[Problem]:
        if self.type == "window" and self.within is None:
            return [Problem("within", "is required for window joins")]
        if self.type == "table" and self.within is not None:
            return [Problem("within", "applies to window joins only")]
        return []


STEP_CLASSES: Final = (
    FilterStep,
    MapStep,
    SelectStep,
    SplitStep,
    RouteStep,
    DeadbandStep,
    DedupeStep,
    ThrottleStep,
    DownsampleStep,
    WindowStep,
    JoinStep,
)

StepConfig = (
    FilterStep
    | MapStep
    | SelectStep
    | SplitStep
    | RouteStep
    | DeadbandStep
    | DedupeStep
    | ThrottleStep
    | DownsampleStep
    | WindowStep
    | JoinStep
)
Step = Annotated[StepConfig, TAGGED_BY_KEY]


def streams_written(step: StepConfig) -> list[tuple[str, str]]:
    """(path relative to the step, stream) for every stream a step appends to."""
    if isinstance(step, RouteStep):
        return [(f"rules[{i}].to", rule.to) for i, rule in enumerate(step.rules)]
    if isinstance(step, WindowStep) and step.late != "drop":
        return [("late", step.late)]
    return []


def streams_read(step: StepConfig) -> list[tuple[str, str]]:
    """(path relative to the step, stream) for every extra stream a step reads."""
    if isinstance(step, JoinStep):
        return [("stream", step.stream)]
    return []

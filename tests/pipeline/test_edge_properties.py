"""Edge steps against straightforward reference models, however the input is cut.

Each model walks the events one by one with plain dicts; the step under test gets
the same events in random batches, and is snapshotted (through JSON) into a new
instance at random points. Outputs (including what is still held at the end) and
the counters summed over all instances must equal the model's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.steps import DeadbandStep, DedupeStep, DownsampleStep, ThrottleStep
from agent.pipeline.batch import Batch
from agent.pipeline.operator import Operator, SideOutputs
from agent.pipeline.steps.deadband import Deadband
from agent.pipeline.steps.dedupe import Dedupe
from agent.pipeline.steps.downsample import Downsample
from agent.pipeline.steps.throttle import Throttle


@dataclass(frozen=True)
class Event:
    id: str
    key: str | None
    time: float
    ingest: float
    payload: Any


Outcome = tuple[list[str], Counter[str]]
"""Ids of the events that came out, in order, and the counters."""

VALUES = st.one_of(
    st.integers(-4, 4),
    st.integers(-8, 8).map(lambda n: n / 4),
    st.sampled_from([None, "x", True, False, math.nan, math.inf, [1]]),
)
PAYLOADS: st.SearchStrategy[Any] = st.one_of(
    VALUES.map(lambda v: {"v": v}),
    st.tuples(VALUES, VALUES).map(lambda vs: {"v": vs[0], "w": vs[1]}),
    st.sampled_from([None, "text", 3, {}]),
)
STEPS = st.one_of(st.integers(-3, 6).map(lambda n: n / 2), st.none())
"""Time from one event to the next; None gives that event a NaN time."""


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    raw = draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", None]), STEPS, st.integers(0, 3), PAYLOADS),
            max_size=40,
        )
    )
    events, t, ingest = [], 100.0, 100.0
    for i, (key, step, ingest_step, payload) in enumerate(raw):
        t += step or 0.0
        ingest += ingest_step
        events.append(Event(f"e{i}", key, math.nan if step is None else t, ingest, payload))
    return events


CUTS = st.lists(st.integers(0, 40), max_size=8)
RESTARTS = st.sets(st.integers(0, 8), max_size=3)


def to_batch(events: list[Event]) -> Batch:
    batch = Batch.of_payloads(
        [e.payload for e in events],
        [e.time for e in events],
        keys=[e.key for e in events],
        ingest=[e.ingest for e in events],
    )
    batch.topics = [e.id for e in events]
    return batch


def run_in_pieces(
    make: Callable[[], Operator], events: list[Event], cuts: list[int], restarts: set[int]
) -> Outcome:
    """Feed ``events`` cut at ``cuts``, restarting from a snapshot after the listed pieces."""
    batch = to_batch(events)
    bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    op, out, counters = make(), [], Counter[str]()
    for piece, (start, end) in enumerate(pairwise(bounds)):
        out += op.process(batch.take(range(start, end)), SideOutputs()).topics
        if piece in restarts:
            counters.update(op.counters)
            state = orjson.loads(orjson.dumps(op.snapshot()))
            op = make()
            op.restore(state)
    out += op.idle(math.inf, SideOutputs()).topics
    counters.update(op.counters)
    return [str(i) for i in out], +counters


def check(make: Callable[[], Operator], model: Outcome, events: list[Event], cuts: list[int],
          restarts: set[int]) -> None:  # fmt: skip
    assert run_in_pieces(make, events, [], set()) == model
    assert run_in_pieces(make, events, list(range(len(events))), set()) == model
    assert run_in_pieces(make, events, cuts, restarts) == model


def field(payload: Any, name: str) -> Any:
    return payload.get(name) if isinstance(payload, dict) else None


def finite(x: float) -> bool:
    return math.isfinite(x)


# --- deadband ---------------------------------------------------------------------


def deadband_model(events: list[Event], step: DeadbandStep) -> Outcome:
    out, counters, last = [], Counter[str](), dict[Any, tuple[float, float]]()
    for e in events:
        v = field(e.payload, "v")
        if isinstance(v, bool) or not isinstance(v, int | float) or not finite(v):
            counters["not_numeric"] += 1
            out.append(e.id)
            continue
        if not finite(e.time):
            counters["bad_time"] += 1
            out.append(e.id)
            continue
        if e.key in last:
            before, when = last[e.key]
            change = abs(v - before)
            moved = (step.absolute is not None and change > step.absolute) or (
                step.relative is not None and change > step.relative * abs(before)
            )
            beat = step.heartbeat is not None and e.time - when >= step.heartbeat
            if not (moved or beat):
                counters["suppressed"] += 1
                continue
        last[e.key] = (v, e.time)
        out.append(e.id)
    return out, counters


DEADBANDS = st.builds(
    DeadbandStep,
    value=st.just("v"),
    absolute=st.sampled_from([None, 0.0, 0.5, 1.0]),
    relative=st.sampled_from([None, 0.1, 0.5]),
    heartbeat=st.sampled_from([None, 1.0, 2.5]),
)


@settings(max_examples=300, deadline=None)
@given(step=DEADBANDS, events=event_lists(), cuts=CUTS, restarts=RESTARTS)
def test_deadband_matches_the_model_however_cut(
    step: DeadbandStep, events: list[Event], cuts: list[int], restarts: set[int]
) -> None:
    check(lambda: Deadband(step), deadband_model(events, step), events, cuts, restarts)


# --- dedupe -----------------------------------------------------------------------


def dedupe_model(events: list[Event], step: DedupeStep) -> Outcome:
    out, counters = [], Counter[str]()
    memory: dict[bytes, tuple[float, int]] = {}  # identity -> (time, arrival)
    newest, arrivals = -math.inf, 0
    for e in events:
        t = e.ingest if step.time == "ingest" else e.time
        if step.fields:
            values = [field(e.payload, name) for name in step.fields]
            if all(v is None for v in values):
                counters["no_identity"] += 1
                out.append(e.id)
                continue
            identity = orjson.dumps([e.key, *values], option=orjson.OPT_SORT_KEYS)
        else:
            identity = orjson.dumps([e.key, e.payload], option=orjson.OPT_SORT_KEYS)
        if not finite(t):
            counters["bad_time"] += 1
            out.append(e.id)
            continue
        newest = max(newest, t)
        memory = {k: v for k, v in memory.items() if v[0] >= newest - step.horizon}
        if identity in memory:
            counters["duplicates"] += 1
            continue
        out.append(e.id)
        if t >= newest - step.horizon:
            memory[identity] = (t, arrivals)
            arrivals += 1
            if len(memory) > step.max_entries:
                del memory[min(memory, key=memory.__getitem__)]
                counters["evicted"] += 1
    return out, counters


DEDUPES = st.builds(
    DedupeStep,
    fields=st.sampled_from([(), ("v",), ("v", "w")]),
    horizon=st.sampled_from([0.5, 2.0, 5.0]),
    time=st.sampled_from(["event", "ingest"]),
    max_entries=st.integers(1, 4),
)


@settings(max_examples=300, deadline=None)
@given(step=DEDUPES, events=event_lists(), cuts=CUTS, restarts=RESTARTS)
def test_dedupe_matches_the_model_however_cut(
    step: DedupeStep, events: list[Event], cuts: list[int], restarts: set[int]
) -> None:
    check(lambda: Dedupe(step), dedupe_model(events, step), events, cuts, restarts)


# --- throttle ---------------------------------------------------------------------


def throttle_model(events: list[Event], step: ThrottleStep) -> Outcome:
    out, counters = [], Counter[str]()
    current: dict[Any, float] = {}
    passed: dict[Any, int] = {}
    held: dict[Any, str] = {}
    for e in events:
        interval = (e.ingest if step.time == "ingest" else e.time) // step.per
        if not finite(interval):
            counters["bad_time"] += 1
            out.append(e.id)
            continue
        if e.key in current and interval < current[e.key]:
            counters["out_of_order"] += 1
            continue
        if e.key not in current or interval > current[e.key]:
            if e.key in held:
                out.append(held.pop(e.key))
            current[e.key], passed[e.key] = interval, 0
        if passed[e.key] < step.rate:
            passed[e.key] += 1
            out.append(e.id)
        elif step.mode == "drop":
            counters["throttled"] += 1
        else:
            if e.key in held:
                counters["throttled"] += 1
            held[e.key] = e.id
    out += [held[k] for k in sorted(held, key=lambda k: (k is not None, k or ""))]
    return out, counters


THROTTLES = st.builds(
    ThrottleStep,
    rate=st.integers(1, 3),
    per=st.sampled_from([0.5, 1.0, 2.5]),
    mode=st.sampled_from(["drop", "latest"]),
    time=st.sampled_from(["event", "ingest"]),
)


@settings(max_examples=300, deadline=None)
@given(step=THROTTLES, events=event_lists(), cuts=CUTS, restarts=RESTARTS)
def test_throttle_matches_the_model_however_cut(
    step: ThrottleStep, events: list[Event], cuts: list[int], restarts: set[int]
) -> None:
    check(lambda: Throttle(step), throttle_model(events, step), events, cuts, restarts)


# --- downsample -------------------------------------------------------------------


def downsample_model(events: list[Event], step: DownsampleStep) -> Outcome:
    out, counters = [], Counter[str]()
    current: dict[Any, float] = {}
    last: dict[Any, str] = {}  # keep last: the newest event of the current interval
    for e in events:
        interval = (e.ingest if step.time == "ingest" else e.time) // step.interval
        if not finite(interval):
            counters["bad_time"] += 1
            out.append(e.id)
        elif e.key in current and interval < current[e.key]:
            counters["out_of_order"] += 1
        elif e.key in current and interval == current[e.key]:
            counters["downsampled"] += 1
            if step.keep == "last":
                last[e.key] = e.id
        else:
            current[e.key] = interval
            if step.keep == "first":
                out.append(e.id)
            else:
                if e.key in last:
                    out.append(last[e.key])
                last[e.key] = e.id
    out += [last[k] for k in sorted(last, key=lambda k: (k is not None, k or ""))]
    return out, counters


DOWNSAMPLES = st.builds(
    DownsampleStep,
    interval=st.sampled_from([0.5, 1.0, 2.5]),
    keep=st.sampled_from(["first", "last"]),
    time=st.sampled_from(["event", "ingest"]),
)


@settings(max_examples=300, deadline=None)
@given(step=DOWNSAMPLES, events=event_lists(), cuts=CUTS, restarts=RESTARTS)
def test_downsample_matches_the_model_however_cut(
    step: DownsampleStep, events: list[Event], cuts: list[int], restarts: set[int]
) -> None:
    check(lambda: Downsample(step), downsample_model(events, step), events, cuts, restarts)


# --- bad input --------------------------------------------------------------------

NASTY_PAYLOADS: list[Any] = [
    None,
    "text",
    "",
    7,
    True,
    [1, 2],
    {},
    {"v": None},
    {"v": "21.5"},
    {"v": True},
    {"v": math.nan},
    {"v": math.inf},
    {"v": 10**400},
    {"v": {"deep": [1, {"x": None}]}},
    {"w": 1},
]
NASTY_TIMES = [0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5.0, 4.0]
NASTY_STEPS: list[Callable[[], Operator]] = [
    lambda: Deadband(DeadbandStep(value="v", key="w", absolute=1.0, relative=0.1, heartbeat=1.0)),
    lambda: Deadband(DeadbandStep(value="v / w", relative=0.5)),
    lambda: Dedupe(DedupeStep()),
    lambda: Dedupe(DedupeStep(key="v", fields=("v", "w.x"), max_entries=2)),
    lambda: Throttle(ThrottleStep(rate=1, per=0.001, key="v")),
    lambda: Throttle(ThrottleStep(rate=2, mode="latest", key="v")),
    lambda: Downsample(DownsampleStep(interval=1.0, key="w")),
    lambda: Downsample(DownsampleStep(interval=0.001, keep="last", time="ingest")),
]


@pytest.mark.parametrize("make", NASTY_STEPS)
def test_bad_input_never_raises_and_the_state_stays_json(make: Callable[[], Operator]) -> None:
    n = len(NASTY_PAYLOADS) * len(NASTY_TIMES)
    payloads = NASTY_PAYLOADS * len(NASTY_TIMES)
    times = [t for t in NASTY_TIMES for _ in NASTY_PAYLOADS]
    batch = Batch.of_payloads(payloads, times, keys=[None, "k", ""] * (n // 3) + [None] * (n % 3))
    batch.topics = [str(i) for i in range(n)]
    whole = make()
    together = whole.process(batch, SideOutputs()).topics
    one_by_one, single = [], make()
    for i in range(n):
        one_by_one += single.process(batch.take([i]), SideOutputs()).topics
        single.restore(orjson.loads(orjson.dumps(single.snapshot())))
    assert together == one_by_one
    assert whole.idle(math.inf, SideOutputs()).topics == single.idle(math.inf, SideOutputs()).topics
    assert whole.counters == single.counters

"""The join steps: table joins (latest record per key) and window (interval) joins."""

from __future__ import annotations

import copy
import math
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.steps import JoinStep
from agent.pipeline.batch import Batch
from agent.pipeline.joins import interval
from agent.pipeline.joins.interval import WindowJoin
from agent.pipeline.joins.table import TableJoin
from agent.pipeline.operator import Operator, SideOutputs

Key = str | None
OperatorT = TypeVar("OperatorT", bound=Operator)


def events(payloads: list[Any], keys: list[Key], times: list[float] | None = None) -> Batch:
    times = [float(i) for i in range(len(payloads))] if times is None else times
    return Batch.of_payloads(payloads, times, keys=keys)


def table_join(limit: int = 100_000, **settings: Any) -> TableJoin:
    return TableJoin(JoinStep(type="table", stream="cal", **settings), limit=limit)


def reborn(op: OperatorT, fresh: OperatorT) -> OperatorT:
    """``fresh`` restored from ``op``'s snapshot, through JSON as the runner stores it."""
    fresh.restore(orjson.loads(orjson.dumps(op.snapshot())))
    return fresh


# --- table join -------------------------------------------------------------------------


def test_table_join_adds_the_latest_record_of_the_key() -> None:
    join = table_join()
    assert join.side_inputs == ("cal",)
    released = join.absorb(
        "cal", events([{"off": 1}, {"off": 2}, {"off": 3}], ["a", "b", "a"]), SideOutputs()
    )
    assert len(released) == 0
    out = join.process(events([{"v": 1}, {"v": 2}], ["a", "b"], [10.0, 11.0]), SideOutputs())
    assert out.payloads == [{"v": 1, "cal": {"off": 3}}, {"v": 2, "cal": {"off": 2}}]
    assert out.keys == ["a", "b"]
    assert out.times == [10.0, 11.0]
    assert out.raw == [None, None]
    assert join.counters == {}


def test_table_join_passes_unmatched_events_with_null() -> None:
    join = table_join()
    join.absorb("cal", events([{"off": 1}], ["a"]), SideOutputs())
    out = join.process(events([{"v": 1}, {"v": 2}], ["x", "a"]), SideOutputs())
    assert out.payloads == [{"v": 1, "cal": None}, {"v": 2, "cal": {"off": 1}}]
    assert join.counters == {"unmatched": 1}


def test_required_table_join_drops_unmatched_events() -> None:
    join = table_join(required=True)
    join.absorb("cal", events([{"off": 1}], ["a"]), SideOutputs())
    out = join.process(events([{"v": 1}, {"v": 2}, {"v": 3}], ["x", "a", "y"]), SideOutputs())
    assert out.payloads == [{"v": 2, "cal": {"off": 1}}]
    assert out.keys == ["a"]
    assert out.times == [1.0]
    assert join.counters == {"unmatched": 2}


def test_a_null_record_is_a_tombstone() -> None:
    join = table_join()
    join.absorb("cal", events([{"off": 1}, {"off": 2}], ["a", "b"]), SideOutputs())
    join.absorb("cal", events([None, None], ["a", "never-seen"]), SideOutputs())
    out = join.process(events([{}, {}], ["a", "b"]), SideOutputs())
    assert out.payloads == [{"cal": None}, {"cal": {"off": 2}}]
    join.absorb("cal", events([{"off": 5}], ["a"]), SideOutputs())
    assert join.process(events([{}], ["a"]), SideOutputs()).payloads == [{"cal": {"off": 5}}]


def test_key_expressions_and_a_dotted_into() -> None:
    join = table_join(key="device", other_key="id", into="meta.cal")
    join.absorb("cal", events([{"id": 7, "gain": 2}], [None]), SideOutputs())
    incoming = [{"device": 7, "meta": {"unit": "C"}}, {"device": "7"}, {"device": 8}]
    out = join.process(events(incoming, ["k1", "k2", "k3"]), SideOutputs())
    record = {"id": 7, "gain": 2}
    assert out.payloads == [
        {"device": 7, "meta": {"unit": "C", "cal": record}},
        {"device": "7", "meta": {"cal": record}},  # keys are text: 7 and "7" are one key
        {"device": 8, "meta": {"cal": None}},
    ]
    assert out.keys == ["k1", "k2", "k3"]  # the event key is unchanged
    assert incoming[0] == {"device": 7, "meta": {"unit": "C"}}


def test_missing_key_fields_and_non_object_payloads() -> None:
    join = table_join(key="device", other_key="id")
    join.absorb("cal", events([3.5, "text"], [None, None]), SideOutputs())  # no id: key null
    out = join.process(events([5, None, {"x": 1}], [None, None, None]), SideOutputs())
    assert out.payloads == [
        {"value": 5, "cal": "text"},
        {"cal": "text"},
        {"x": 1, "cal": "text"},
    ]


def test_the_table_evicts_the_least_recently_updated_key() -> None:
    join = table_join(limit=2)
    join.absorb("cal", events([{"n": 1}, {"n": 2}], ["a", "b"]), SideOutputs())
    join.absorb("cal", events([{"n": 3}, {"n": 4}], ["a", "c"]), SideOutputs())  # b is oldest
    assert join.counters == {"evicted": 1}
    out = join.process(events([{}, {}, {}], ["a", "b", "c"]), SideOutputs())
    assert [p["cal"] for p in out.payloads] == [{"n": 3}, None, {"n": 4}]


def test_table_snapshot_round_trips_through_json_with_a_null_key() -> None:
    join = table_join(limit=3)
    join.absorb("cal", events([{"n": 1}, [1, 2], {"n": 3}], [None, "b", "c"]), SideOutputs())
    join.absorb("cal", events([{"n": 4}], [None]), SideOutputs())  # null key now newest
    again = reborn(join, table_join(limit=3))
    assert again.snapshot() == join.snapshot()
    again.absorb("cal", events([{"n": 5}], ["d"]), SideOutputs())  # evicts b, not the null key
    out = again.process(events([{}, {}, {}, {}], [None, "b", "c", "d"]), SideOutputs())
    assert [p["cal"] for p in out.payloads] == [{"n": 4}, None, {"n": 3}, {"n": 5}]
    fresh = table_join()
    fresh.restore(None)
    assert fresh.process(events([{}], ["c"]), SideOutputs()).payloads == [{"cal": None}]


def test_table_join_does_not_mutate_or_alias_its_input() -> None:
    join = table_join(into="a.b")
    records = [{"r": {"deep": 1}}]
    join.absorb("cal", events(records, ["k"]), SideOutputs())
    incoming: list[Any] = [{"a": {"b": 0, "c": 1}}, {"a": 2}]
    before = copy.deepcopy(incoming)
    out = join.process(events(incoming, ["k", "k"]), SideOutputs())
    assert incoming == before
    assert records == [{"r": {"deep": 1}}]
    assert out.payloads == [
        {"a": {"b": {"r": {"deep": 1}}, "c": 1}},
        {"a": {"b": {"r": {"deep": 1}}}},
    ]
    assert out.payloads[0] is not incoming[0]
    assert out.payloads[0]["a"] is not incoming[0]["a"]


ops = st.lists(
    st.tuples(
        st.booleans(),  # True: a record of the other stream, False: a pipeline event
        st.sampled_from(["a", "b", "c", None]),
        st.one_of(st.none(), st.integers(0, 9)),
    ),
    max_size=40,
)


@given(ops=ops, limit=st.integers(1, 4), cut=st.integers(1, 5))
@settings(max_examples=150, deadline=None)
def test_table_join_matches_a_reference_table(
    ops: list[tuple[bool, Key, int | None]], limit: int, cut: int
) -> None:
    join = table_join(limit=limit)
    model: dict[Key, Any] = {}  # insertion order = update order
    expected: list[Any] = []
    got: list[Any] = []
    for start in range(0, len(ops), cut):
        chunk = ops[start : start + cut]
        records = [(k, None if v is None else {"v": v}) for is_record, k, v in chunk if is_record]
        lookups = [k for is_record, k, _ in chunk if not is_record]
        if records:
            for key, payload in records:
                model.pop(key, None)
                if payload is not None:
                    model[key] = payload
                if len(model) > limit:
                    del model[next(iter(model))]
            payloads = [p for _, p in records]
            join.absorb("cal", events(payloads, [k for k, _ in records]), SideOutputs())
        if lookups:
            expected += [{"cal": model.get(key)} for key in lookups]
            got += join.process(events([{}] * len(lookups), lookups), SideOutputs()).payloads
        join = reborn(join, table_join(limit=limit))
    assert got == expected


# --- window join --------------------------------------------------------------------------

Event = tuple[str, Key, float, float]
"""(side "L" or "R", key, join time, ingest-or-event time for the other clock)."""


def window_join(
    within: float, lateness: float = 0.0, limit: int = 100_000, **kw: Any
) -> WindowJoin:
    step = JoinStep(type="window", stream="cal", within=within, lateness=lateness, **kw)
    return WindowJoin(step, limit=limit)


def side_batch(evs: list[tuple[int, Event]]) -> Batch:
    """Events of one side; payloads carry an id to identify pairs."""
    return Batch.of_payloads(
        [{"id": f"{ev[0]}{i}"} for i, ev in evs],
        [ev[2] for _, ev in evs],
        keys=[ev[1] for _, ev in evs],
    )


def feed(join: WindowJoin, batch: Batch, left: bool) -> Batch:
    return join.process(batch, SideOutputs()) if left else join.absorb("cal", batch, SideOutputs())


def pairs_of(out: Batch) -> list[tuple[str, str, Key, float]]:
    return [
        (p["id"], p["cal"]["id"], k, t)
        for p, k, t in zip(out.payloads, out.keys, out.times, strict=True)
    ]


def reference(
    evs: list[Event], within: float, lateness: float
) -> tuple[list[tuple[str, str, Key, float]], int]:
    """Every pair of non-late events of opposite sides, equal keys and |dt| <= within,
    emitted when the second arrives, partners in arrival order; and the late count.

    Each side's largest time counts every event, late or not; the watermark is the
    highest min(largest of the sides that have seen an event) - within - lateness."""
    largest = {"L": -math.inf, "R": -math.inf}
    mark = -math.inf
    seen: list[tuple[int, Event]] = []
    pairs = []
    late = 0
    for i, ev in enumerate(evs):
        side, key, t, _ = ev
        is_late = t < mark
        largest[side] = max(largest[side], t)
        active = [m for m in largest.values() if m > -math.inf]
        mark = max(mark, min(active) - (within + lateness))
        if is_late:
            late += 1
            continue
        for j, (other, k, u, _) in seen:
            if other != side and k == key and abs(t - u) <= within:
                left, right = (i, j) if side == "L" else (j, i)
                pairs.append((f"L{left}", f"R{right}", key, max(t, u)))
        seen.append((i, ev))
    return pairs, late


def run(
    evs: list[Event],
    breaks: list[bool],
    restarts: list[bool],
    within: float,
    lateness: float,
    limit: int = 100_000,
) -> tuple[list[tuple[str, str, Key, float]], WindowJoin]:
    """Feed the events in order, cutting runs of one side into batches after each
    true break, restarting from a JSON snapshot after batch b when ``restarts[b]``."""
    join = window_join(within, lateness, limit)
    out: list[tuple[str, str, Key, float]] = []
    chunk: list[tuple[int, Event]] = []
    batches = 0
    for i, ev in enumerate(evs):
        chunk.append((i, ev))
        last = i + 1 == len(evs)
        if last or breaks[i] or evs[i + 1][0] != ev[0]:
            out += pairs_of(feed(join, side_batch(chunk), ev[0] == "L"))
            chunk = []
            if batches < len(restarts) and restarts[batches]:
                join = reborn(join, window_join(within, lateness, limit))
            batches += 1
    return out, join


window_events = st.lists(
    st.tuples(
        st.sampled_from(["L", "R"]),
        st.sampled_from(["a", "b", None]),
        st.integers(0, 60).map(lambda n: n / 2),
        st.just(0.0),
    ),
    max_size=60,
)


@given(
    evs=window_events,
    within=st.sampled_from([0.0, 0.5, 2.0, 5.0]),
    lateness=st.sampled_from([0.0, 1.0, 3.0]),
    data=st.data(),
)
@settings(max_examples=300, deadline=None)
def test_window_join_emits_exactly_the_reference_pairs(
    evs: list[Event], within: float, lateness: float, data: st.DataObject
) -> None:
    breaks = data.draw(st.lists(st.booleans(), min_size=len(evs), max_size=len(evs)))
    restarts = data.draw(st.lists(st.booleans(), max_size=len(evs)))
    slack = data.draw(st.sampled_from([0, 3, interval.SWEEP_SLACK]))
    expected, late = reference(evs, within, lateness)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(interval, "SWEEP_SLACK", slack)  # sweep often, or never
        got, _ = run(evs, breaks, restarts, within, lateness)
        one_by_one, join = run(evs, [True] * len(evs), [], within, lateness)
    assert got == expected
    assert one_by_one == expected
    assert join.counters.get("late", 0) == late


@given(
    evs=window_events,
    within=st.sampled_from([0.5, 5.0]),
    limit=st.integers(1, 4),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_window_join_eviction_does_not_depend_on_batching(
    evs: list[Event], within: float, limit: int, data: st.DataObject
) -> None:
    breaks = data.draw(st.lists(st.booleans(), min_size=len(evs), max_size=len(evs)))
    restarts = data.draw(st.lists(st.booleans(), max_size=len(evs)))
    got, _ = run(evs, breaks, restarts, within, 1.0, limit)
    one_by_one, join = run(evs, [True] * len(evs), [], within, 1.0, limit)
    assert got == one_by_one
    assert len(join.left) <= limit
    assert len(join.right) <= limit
    assert set(got) <= set(reference(evs, within, 1.0)[0])


def test_window_join_pairs_and_their_event() -> None:
    join = window_join(within=5.0)
    assert join.side_inputs == ("cal",)
    left = Batch.of_payloads([{"v": 1}], [10.0], keys=["a"], ingest=[100.0])
    left.topics = ["s/a"]
    left.headers = ['{"h":"1"}']
    assert len(join.process(left, SideOutputs())) == 0
    right = Batch.of_payloads(
        [{"r": 1}, {"r": 2}, {"r": 3}], [13.0, 20.0, 9.0], keys=["a", "a", "b"], ingest=[99.0] * 3
    )
    right.topics = ["cal/x"] * 3
    out = join.absorb("cal", right, SideOutputs())
    assert out.payloads == [{"v": 1, "cal": {"r": 1}}]
    assert (out.times, out.ingest, out.keys) == ([13.0], [100.0], ["a"])
    assert (out.topics, out.headers, out.raw) == (["s/a"], ['{"h":"1"}'], [None])
    out = join.process(Batch.of_payloads([7], [16.0], keys=["a"]), SideOutputs())
    assert out.payloads == [{"value": 7, "cal": {"r": 1}}, {"value": 7, "cal": {"r": 2}}]
    assert out.times == [16.0, 20.0]


def test_late_events_are_counted_and_never_paired() -> None:
    join = window_join(within=1.0, lateness=2.0)
    join.absorb("cal", Batch.of_payloads([{}], [100.0], keys=["a"]), SideOutputs())
    assert join.watermark == 97.0
    out = join.process(Batch.of_payloads([{}, {}], [96.5, 97.0], keys=["a", "a"]), SideOutputs())
    assert len(out) == 0  # 96.5 is late; 97.0 is not, but is 3s from the right event
    assert join.counters == {"late": 1}
    right = Batch.of_payloads([{"r": 1}, {"r": 2}], [96.9, 97.5], keys=["a", "a"])
    out = join.absorb("cal", right, SideOutputs())
    assert [p["cal"] for p in out.payloads] == [{"r": 2}]  # 96.9 is late; 96.5 was not kept
    assert out.times == [97.5]
    assert join.counters == {"late": 2}
    # the left side's first events lowered min(left, right), not the watermark
    assert (join.left_max, join.right_max, join.watermark) == (97.0, 100.0, 97.0)


def test_non_finite_times_are_ignored() -> None:
    join = window_join(within=1.0)
    batch = Batch.of_payloads([{}, {}, {}], [math.nan, math.inf, 5.0], keys=["a"] * 3)
    assert len(join.process(batch, SideOutputs())) == 0
    assert join.counters == {"bad_time": 2}
    assert (join.left_max, join.right_max, join.watermark) == (5.0, -math.inf, 4.0)
    orjson.dumps(join.snapshot())


def test_ingest_time_joins_on_arrival() -> None:
    join = window_join(within=1.0, time="ingest", key="dev", other_key="dev", into="x.cal")
    left = Batch.of_payloads([{"dev": 1}], [0.0], ingest=[50.0])
    right = Batch.of_payloads([{"dev": "1"}, {"dev": 2}], [1000.0, 0.0], ingest=[50.5, 50.5])
    join.process(left, SideOutputs())
    out = join.absorb("cal", right, SideOutputs())
    assert out.payloads == [{"dev": 1, "x": {"cal": {"dev": "1"}}}]
    assert (out.keys, out.times, out.ingest) == (["1"], [1000.0], [50.5])


def test_window_buffers_evict_the_oldest_arrival() -> None:
    join = window_join(within=100.0, limit=2)
    join.absorb(
        "cal", Batch.of_payloads([1, 2, 3], [5.0, 1.0, 3.0], keys=["a", "b", "a"]), SideOutputs()
    )
    assert join.counters == {"evicted": 1}
    out = join.process(Batch.of_payloads([{}, {}], [4.0, 4.0], keys=["a", "b"]), SideOutputs())
    assert [p["cal"] for p in out.payloads] == [3, 2]  # 1 (the first arrival) is gone


def test_window_join_forgets_expired_events() -> None:
    join = window_join(within=1.0)
    join.absorb(
        "cal", Batch.of_payloads([{}] * 3, [1.0, 2.0, 3.0], keys=["a", "b", "c"]), SideOutputs()
    )
    join.process(Batch.of_payloads([{}], [10.0], keys=["z"]), SideOutputs())
    assert join.watermark == 2.0  # min(10, 3) - 1: the right side holds it back
    assert [row[0] for row in join.snapshot()["right"]] == ["a", "b", "c"]
    join.absorb("cal", Batch.of_payloads([{}], [10.0], keys=["y"]), SideOutputs())
    state = join.snapshot()
    assert (state["left_max"], state["right_max"], state["watermark"]) == (10.0, 10.0, 9.0)
    assert [row[0] for row in state["left"]] == ["z"]
    assert [row[0] for row in state["right"]] == ["y"]
    again = reborn(join, window_join(within=1.0))
    assert (again.left_max, again.right_max, again.watermark) == (10.0, 10.0, 9.0)
    assert again.snapshot() == state
    fresh = window_join(within=1.0)
    fresh.restore(None)
    assert fresh.snapshot() == {
        "left_max": None,
        "right_max": None,
        "watermark": None,
        "left": [],
        "right": [],
    }
    one_sided = window_join(within=1.0)
    one_sided.process(Batch.of_payloads([{}], [3.0], keys=["a"]), SideOutputs())
    state = reborn(one_sided, window_join(within=1.0)).snapshot()
    assert (state["left_max"], state["right_max"], state["watermark"]) == (3.0, None, 2.0)


def test_window_join_does_not_mutate_or_alias_its_input() -> None:
    join = window_join(within=1.0, into="m.cal")
    lefts: list[Any] = [{"m": {"u": 1}}, {"m": {"u": 2}}]
    rights: list[Any] = [{"deep": {"x": 1}}]
    before = copy.deepcopy((lefts, rights))
    join.process(Batch.of_payloads(lefts, [1.0, 1.0], keys=["k", "k"]), SideOutputs())
    out = join.absorb("cal", Batch.of_payloads(rights, [1.0], keys=["k"]), SideOutputs())
    out.payloads[0]["extra"] = 1  # a later step owns the new payloads
    assert (lefts, rights) == before
    assert out.payloads == [
        {"m": {"u": 1, "cal": {"deep": {"x": 1}}}, "extra": 1},
        {"m": {"u": 2, "cal": {"deep": {"x": 1}}}},
    ]
    assert out.payloads[0]["m"] is not lefts[0]["m"]
    assert out.payloads[1] is not lefts[1]


def test_an_event_is_kept_while_a_non_late_event_can_still_pair_with_it() -> None:
    join = window_join(within=5.0)
    join.absorb(
        "cal", Batch.of_payloads([{"r": 1}, {}], [10.0, 16.0], keys=["a", "y"]), SideOutputs()
    )
    join.process(Batch.of_payloads([{}], [16.0], keys=["z"]), SideOutputs())
    assert join.watermark == 11.0
    join = reborn(join, window_join(within=5.0))  # a snapshot forgets what has expired
    out = join.process(Batch.of_payloads([{}], [11.0], keys=["a"]), SideOutputs())
    assert [p["cal"] for p in out.payloads] == [{"r": 1}]  # 10 < watermark, yet 11 - 10 <= 5


def test_a_side_far_ahead_does_not_make_the_other_late() -> None:
    """Catching up: the runner reads a batch of the other stream first, and it runs far
    past within + lateness; the pipeline's own batch over the same time span still
    pairs in full, since the watermark follows the side that is behind."""
    n = 100
    join = window_join(within=1.0)
    times = [float(t) for t in range(1, n + 1)]
    batches = [
        (True, Batch.of_payloads([{"id": 0}], [0.0], keys=["a"])),
        (False, Batch.of_payloads([{"id": 0}], [0.0], keys=["a"])),
        (False, Batch.of_payloads([{"id": t} for t in range(1, n + 1)], times, keys=["a"] * n)),
        (True, Batch.of_payloads([{"id": t} for t in range(1, n + 1)], times, keys=["a"] * n)),
    ]
    got = []
    for index, (left, batch) in enumerate(batches):
        got += [(p["id"], p["cal"]["id"]) for p in feed(join, batch, left).payloads]
        if index == 2:  # the right side ran 100s ahead: the left one holds the watermark
            assert (join.left_max, join.right_max, join.watermark) == (0.0, 100.0, -1.0)
    assert "late" not in join.counters  # with max(left, right), 1 to 98 were late
    every = [(lt, rt) for lt in range(n + 1) for rt in range(n + 1) if abs(lt - rt) <= 1]
    assert sorted(got) == every
    assert join.watermark == 99.0
    state = join.snapshot()  # the right side's events expired as the left caught up
    assert [row[1] for row in state["right"]] == [98.0, 99.0, 100.0]
    assert [row[1] for row in state["left"]] == [98.0, 99.0, 100.0]


def test_a_silent_side_holds_back_expiry_until_the_buffer_bound() -> None:
    n, limit = 50, 10
    times = [float(t) for t in range(1, n + 1)]
    join = window_join(within=1.0, limit=limit)
    join.absorb("cal", Batch.of_payloads([{"r": 0}], [0.0], keys=["x"]), SideOutputs())
    lefts = [{"l": t} for t in range(1, n + 1)]
    join.process(Batch.of_payloads(lefts, times, keys=["a"] * n), SideOutputs())
    assert join.watermark == -1.0  # min(50, 0) - 1: the silent right side holds it
    assert join.counters == {"evicted": n - limit}
    assert [row[1] for row in join.snapshot()["left"]] == times[-limit:]  # oldest evicted
    back = Batch.of_payloads([{"r": n}], [float(n)], keys=["a"])
    out = join.absorb("cal", back, SideOutputs())  # the right side speaks again
    assert sorted(p["l"] for p in out.payloads) == [n - 1, n]
    assert join.watermark == n - 1.0
    assert [row[1] for row in join.snapshot()["left"]] == [n - 2.0, n - 1.0, float(n)]
    # a side that has seen no event at all does not count: the left alone moves the
    # watermark, and its old events expire instead of being evicted
    alone = window_join(within=1.0, limit=limit)
    alone.process(Batch.of_payloads(lefts, times, keys=["a"] * n), SideOutputs())
    assert alone.watermark == n - 1.0
    assert "evicted" not in alone.counters

"""Session and count windows on small examples: the documented semantics, one by one."""

from __future__ import annotations

import math
from typing import Any

import orjson

from agent.config.load import parse_agent_config
from agent.pipeline.aggregates import AGGREGATES
from agent.pipeline.batch import Batch
from agent.pipeline.build import compile_pipeline
from agent.pipeline.expr import compile_expression, parse_aggregate
from agent.pipeline.operator import Operator, SideOutputs
from agent.pipeline.windows.aggregation import AggregateSet, AggregateSpec
from agent.pipeline.windows.common import WindowSettings
from agent.pipeline.windows.count import CountWindow
from agent.pipeline.windows.session import SessionWindow


def settings(lateness: float = 0.0, idle: float = math.inf) -> WindowSettings:
    specs = []
    for name, text in {"n": "count()", "s": "sum(v)", "f": "first(v)", "l": "last(v)"}.items():
        call = parse_aggregate(text)
        specs.append(AggregateSpec(name, AGGREGATES[call.func], call.arg))
    return WindowSettings(
        AggregateSet(specs),
        key=compile_expression("k"),
        lateness=lateness,
        idle=idle,
        late_stream="late",
    )


def events(*pairs: tuple[float, Any], key: str = "a") -> Batch:
    """Events of one key: (time, v) pairs."""
    return Batch.of_payloads([{"k": key, "v": v} for _, v in pairs], [t for t, _ in pairs])


def windows(batch: Batch) -> list[tuple[float, float, int, Any, Any, Any]]:
    """(start, end, n, s, f, l) of each result."""
    return [(p["window_start"], p["window_end"], p["n"], p["s"], p["f"], p["l"])
            for p in batch.payloads]  # fmt: skip


def flush(op: Operator) -> Batch:
    return op.idle(math.inf, SideOutputs())


# --- session windows ----------------------------------------------------------------


def test_a_session_ends_a_gap_after_its_last_event() -> None:
    op = SessionWindow(settings(), gap=2.0)
    assert windows(op.process(events((0, 1), (1, 2), (2.5, 3)), SideOutputs())) == []
    out = op.process(events((4.4, 4)), SideOutputs())
    assert windows(out) == []
    out = op.process(events((6.4, 5)), SideOutputs())  # 4.4 + 2 <= 6.4: closes
    assert windows(out) == [(0, 6.4, 4, 10, 1, 4)]
    assert out.times == [6.4]
    assert out.keys == ["a"]
    assert windows(flush(op)) == [(6.4, 8.4, 1, 5, 5, 5)]


def test_an_event_bridging_two_open_sessions_merges_them_in_arrival_order() -> None:
    op = SessionWindow(settings(lateness=10.0), gap=6.0)
    op.process(events((0, None), (10, 2), (1, 3)), SideOutputs())
    assert len(op.open["a"]) == 2
    op.process(events((5, None)), SideOutputs())
    assert len(op.open["a"]) == 1
    # first(v) is 2: the first non-null value in arrival order, although time 1 is earlier
    assert windows(flush(op)) == [(0, 16, 4, 5, 2, 3)]


def test_an_out_of_order_event_extends_a_session_backwards() -> None:
    op = SessionWindow(settings(lateness=5.0), gap=2.0)
    op.process(events((10, 1), (8.5, 2), (7, 3)), SideOutputs())
    assert windows(flush(op)) == [(7, 12, 3, 6, 1, 3)]


def test_max_length_seals_a_session_and_starts_the_next() -> None:
    op = SessionWindow(settings(), gap=5.0, max_length=3.0)
    op.process(events((0, 1), (1, 1), (3, 1)), SideOutputs())  # spans 3: allowed
    out = op.process(events((4, 2), (7, 2)), SideOutputs())  # 4 - 0 > 3: a new session
    assert windows(out) == []
    out = op.process(events((8, 3), key="b"), SideOutputs())  # the sealed one ends at 3 + 5
    assert windows(out) == [(0, 8, 3, 3, 1, 1)]
    assert windows(flush(op)) == [(4, 12, 2, 4, 2, 2), (8, 13, 1, 3, 3, 3)]


def test_a_sealed_session_takes_no_more_events_even_as_its_keys_only_one() -> None:
    op = SessionWindow(settings(lateness=10.0), gap=5.0, max_length=2.0)
    op.process(events((10, 1), (11, 2), (8.5, 3)), SideOutputs())  # 11 - 8.5 > 2: sealed
    out = op.process(events((24, 4), key="b"), SideOutputs())  # watermark 14
    assert windows(out) == [(8.5, 13.5, 1, 3, 3, 3)]
    assert [s.sealed for s in op.open["a"]] == [True]
    side = SideOutputs()
    op.process(events((12, 5)), side)  # would fit [10, 11], but it is sealed
    assert side.streams["late"].payloads == [{"k": "a", "v": 5}]  # 12 < 13.5, a closed end
    assert windows(flush(op)) == [(10, 16, 2, 3, 1, 2), (24, 29, 1, 4, 4, 4)]


def test_late_events_go_to_the_late_stream_and_are_counted() -> None:
    op = SessionWindow(settings(), gap=2.0)
    side = SideOutputs()
    op.process(events((10, 1), (3, 2), (9, 3)), side)  # 3 + 2 <= 10; 9 joins the session
    assert side.streams["late"].payloads == [{"k": "a", "v": 2}]
    assert op.late == 1
    assert op.counters == {"late": 1}
    assert windows(flush(op)) == [(9, 12, 2, 4, 1, 3)]


def test_an_event_of_a_closed_session_is_late_even_within_gap_of_the_watermark() -> None:
    op = SessionWindow(settings(), gap=5.0)
    side = SideOutputs()
    batch = events((0, 1))
    batch.extend(events((6, 2), key="b"))
    batch.extend(events((4, 3)))
    out = op.process(batch, side)
    assert windows(out) == [(0, 5, 1, 1, 1, 1)]
    # 4 + 5 > 6, but 4 belongs to the session [0, 5) whose result is out
    assert side.streams["late"].payloads == [{"k": "a", "v": 3}]


def test_idle_closes_only_the_silent_keys_sessions() -> None:
    op = SessionWindow(settings(idle=30.0), gap=5.0)
    op.process(events((0, 1), key="a"), SideOutputs())
    op.activity.last_seen["a"] -= 60
    op.process(events((1, 2), key="b"), SideOutputs())
    out = op.idle(op.activity.last_seen["b"] + 1, SideOutputs())
    assert out.keys == ["a"]
    assert list(op.open) == ["b"]
    side = SideOutputs()
    op.process(events((4, 3), key="a"), side)  # before the end (5) of a's closed session
    assert op.late == 1


def test_non_finite_times_are_counted_and_dropped() -> None:
    op = SessionWindow(settings(), gap=5.0)
    op.process(events((math.nan, 1), (math.inf, 2), (3, 3)), SideOutputs())
    assert op.counters == {"bad_time": 2}
    assert windows(flush(op)) == [(3, 8, 1, 3, 3, 3)]


def test_session_snapshot_is_plain_json_and_restores_every_kind_of_session() -> None:
    op = SessionWindow(settings(lateness=4.0), gap=2.0, max_length=1.0)
    op.process(events((0, 1), (0.5, 2), (1.5, 3), (2, "x")), SideOutputs())
    op.process(events((3, 1), key="b"), SideOutputs())
    assert [s.sealed for s in op.open["a"]] == [True, False]
    state = orjson.loads(orjson.dumps(op.snapshot()))
    again = SessionWindow(settings(lateness=4.0), gap=2.0, max_length=1.0)
    again.restore(state)
    assert again.has_pending()
    assert windows(flush(again)) == windows(flush(op))
    again.restore(None)
    assert not again.has_pending()


# --- count windows ------------------------------------------------------------------


def test_count_windows_close_every_n_events_of_a_key() -> None:
    op = CountWindow(settings(), events=3)
    out = op.process(events((5, 1), (4, 2), (6, 3), (7, 4), (8, 5)), SideOutputs())
    # window_start / window_end: times of the first and last event, in arrival order
    assert windows(out) == [(5, 6, 3, 6, 1, 3)]
    assert out.times == [6]
    assert windows(flush(op)) == [(7, 8, 2, 9, 4, 5)]  # the partial window, at idle


def test_count_windows_ignore_other_keys_and_event_time() -> None:
    op = CountWindow(settings(), events=2)
    batch = events((100, 1))
    batch.extend(events((0, 2), key="b"))
    batch.extend(events((-50, 3)))
    assert windows(op.process(batch, SideOutputs())) == [(100, -50, 2, 4, 1, 3)]


def test_sliding_count_windows_start_every_few_events() -> None:
    op = CountWindow(settings(), events=3, every=1)
    out = op.process(events(*[(t, t) for t in range(5)]), SideOutputs())
    assert windows(out) == [(0, 2, 3, 3, 0, 2), (1, 3, 3, 6, 1, 3), (2, 4, 3, 9, 2, 4)]
    assert windows(flush(op)) == [(3, 4, 2, 7, 3, 4), (4, 4, 1, 4, 4, 4)]


def test_every_above_events_skips_the_events_between_windows() -> None:
    op = CountWindow(settings(), events=2, every=3)
    out = op.process(events(*[(t, t) for t in range(6)]), SideOutputs())
    assert windows(out) == [(0, 1, 2, 1, 0, 1), (3, 4, 2, 7, 3, 4)]


def test_a_silent_key_emits_its_partial_window_and_starts_afresh() -> None:
    op = CountWindow(settings(idle=30.0), events=3)
    op.process(events((1, 1), (2, 2)), SideOutputs())
    out = op.idle(op.activity.last_seen["a"] + 30, SideOutputs())
    assert windows(out) == [(1, 2, 2, 3, 1, 2)]
    assert not op.has_pending()
    out = op.process(events((3, 3), (4, 4), (5, 5)), SideOutputs())
    assert windows(out) == [(3, 5, 3, 12, 3, 5)]


def test_count_snapshot_round_trips_through_json() -> None:
    op = CountWindow(settings(), events=4, every=2)
    op.process(events((1, 1), (2, 2), (math.nan, 3)), SideOutputs())
    state = orjson.loads(orjson.dumps(op.snapshot()))
    again = CountWindow(settings(), events=4, every=2)
    again.restore(state)
    out = again.process(events((4, 4)), SideOutputs())
    assert windows(out) == [(1, 4, 4, 10, 1, 4)]
    start, end, *rest = windows(flush(again))[0]
    assert math.isnan(start)
    assert (end, *rest) == (4, 2, 7, 3, 4)


# --- configured -------------------------------------------------------------------

CONFIG = """\
device_id: pi
streams: {raw: {}, out: {}}
pipelines:
  - name: sessions
    input: raw
    output: out
    steps:
      - window: {type: session, gap: 2s, max_length: 1m, key: k, aggregates: {n: count()}}
  - name: counts
    input: raw
    output: out
    steps:
      - window: {type: count, events: 2, every: 1, key: k, aggregates: {s: sum(v)}}
"""


def test_configured_session_and_count_windows() -> None:
    sessions, counts = (compile_pipeline(p) for p in parse_agent_config(CONFIG).pipelines)
    batch = events((0, 1), (1, 2), (5, 3))
    out = sessions.chain.process(batch, SideOutputs())
    assert [(p["window_start"], p["window_end"], p["n"]) for p in out.payloads] == [(0, 3, 2)]
    out = counts.chain.process(events((0, 1), (1, 2), (5, 3)), SideOutputs())
    assert [p["s"] for p in out.payloads] == [3, 5]
    assert [p["s"] for p in counts.chain.flush(SideOutputs()).payloads] == [3]

"""The deadband step: bands, heartbeat, keys, non-numeric values, snapshots."""

from __future__ import annotations

import math
from typing import Any

import orjson

from agent.config.steps import DeadbandStep
from agent.pipeline.batch import Batch
from agent.pipeline.operator import SideOutputs
from agent.pipeline.steps.deadband import Deadband


def temps(*values: Any, times: list[float] | None = None, keys: list[Any] | None = None) -> Batch:
    payloads = [{"temp": v} for v in values]
    when = times if times is not None else [float(i) for i in range(len(values))]
    return Batch.of_payloads(payloads, when, keys=keys)


def passed(step: Deadband, batch: Batch) -> list[Any]:
    return [
        p["temp"] if isinstance(p, dict) else p for p in step.process(batch, SideOutputs()).payloads
    ]


def test_absolute_band_compares_with_the_last_passed_value_and_is_exclusive() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=0.5))
    assert passed(step, temps(10, 10.25, 10.75, 11.0, 11.25, 11.5)) == [10, 10.75, 11.5]
    assert step.counters == {"suppressed": 3}


def test_relative_band_scales_with_the_last_passed_value() -> None:
    step = Deadband(DeadbandStep(value="temp", relative=0.1))
    assert passed(step, temps(100, 109, 111, 121, 123)) == [100, 111, 123]


def test_relative_band_around_zero_passes_any_change() -> None:
    step = Deadband(DeadbandStep(value="temp", relative=0.1))
    assert passed(step, temps(0, 0, 0.001, 0.001)) == [0, 0.001]


def test_absolute_or_relative_either_band_passes() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=5.0, relative=0.5))
    batch = temps(100, 104, 106, 2, 2.5, 3.5, keys=["a", "a", "a", "b", "b", "b"])
    assert passed(step, batch) == [100, 106, 2, 3.5]


def test_heartbeat_passes_a_steady_value_on_event_time() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=1.0, heartbeat=10.0))
    batch = temps(5, 5, 5, 5, 5, 5, times=[0.0, 5.0, 10.0, 15.0, 19.9, 20.0])
    out = step.process(batch, SideOutputs())
    assert out.times == [0.0, 10.0, 20.0]


def test_a_change_restarts_the_heartbeat() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=1.0, heartbeat=10.0))
    out = step.process(temps(5, 7, 7, 7, times=[0.0, 6.0, 15.0, 16.0]), SideOutputs())
    assert out.times == [0.0, 6.0, 16.0]


def test_state_is_per_event_key_or_key_expression() -> None:
    by_event_key = Deadband(DeadbandStep(value="temp", absolute=1.0))
    assert passed(by_event_key, temps(1, 1, 1.5, 9, keys=["a", "b", "a", None])) == [1, 1, 9]
    by_field = Deadband(DeadbandStep(value="temp", key="dev", absolute=1.0))
    payloads = [{"dev": 1, "temp": 1}, {"dev": "1", "temp": 1.5}, {"dev": 2, "temp": 1.5}]
    out = by_field.process(Batch.of_payloads(payloads, [0.0, 1.0, 2.0]), SideOutputs())
    assert [p["dev"] for p in out.payloads] == [1, 2]  # 1 and "1" are the same key


def test_ints_and_floats_compare_as_numbers() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=0.0))
    assert passed(step, temps(1, 1.0, 2, 2.0, 2.5)) == [1, 2, 2.5]


def test_non_numeric_values_pass_unchanged_are_counted_and_leave_the_state_alone() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=1.0))
    odd: list[Any] = ["21.5", None, True, math.nan, math.inf, -math.inf, [1], {"x": 1}, 10**400]
    payloads: list[Any] = [{"temp": v} for v in odd]
    payloads += [{"temp": 20}, {"temp": 20.5}, {"temp": "err"}, {"temp": 20.9}, {"temp": 21.5}]
    payloads += [None, "text", 7, {}]
    out = step.process(Batch.of_payloads(payloads, [0.0] * len(payloads)), SideOutputs())
    suppressed = (payloads[len(odd) + 1], payloads[len(odd) + 3])
    assert [id(p) for p in out.payloads] == [id(p) for p in payloads if p not in suppressed]
    assert step.counters == {"not_numeric": len(odd) + 5, "suppressed": 2}


def test_value_of_a_bare_number_payload() -> None:
    step = Deadband(DeadbandStep(value="value", absolute=1.0))
    out = step.process(Batch.of_payloads([3, 3.5, 5], [0.0, 1.0, 2.0]), SideOutputs())
    assert out.payloads == [3, 5]


def test_an_event_with_a_time_that_is_not_finite_passes_and_is_counted() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=1.0, heartbeat=5.0))
    out = step.process(temps(1, 1, 1, 1, times=[0.0, math.nan, math.inf, 1.0]), SideOutputs())
    assert len(out) == 3
    assert step.counters == {"bad_time": 2, "suppressed": 1}
    orjson.dumps(step.snapshot())  # nothing non-finite reached the state


def test_output_keeps_every_column_of_the_passed_events() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=1.0))
    batch = temps(1, 1, 3, keys=["k", "k", "k"])
    batch.raw = [b"a", b"b", b"c"]
    batch.topics = ["t/a", "t/b", "t/c"]
    batch.headers = ['{"h":"a"}', None, '{"h":"c"}']
    out = step.process(batch, SideOutputs())
    assert (out.raw, out.topics, out.headers) == (
        [b"a", b"c"],
        ["t/a", "t/c"],
        ['{"h":"a"}', '{"h":"c"}'],
    )
    assert out.keys == ["k", "k"]


def test_snapshot_round_trips_through_json_into_a_new_instance() -> None:
    config = DeadbandStep(value="temp", absolute=1.0, heartbeat=10.0)
    first = Deadband(config)
    passed(first, temps(5, 9, keys=["a", None]))
    second = Deadband(config)
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    batch = temps(5.5, 6.5, 9.5, 9.5, times=[3.0, 4.0, 5.0, 11.0], keys=["a", "a", None, None])
    assert passed(second, batch) == [6.5, 9.5]
    assert second.stateful and not second.has_pending()


def test_restore_none_is_a_fresh_start() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=1.0))
    passed(step, temps(5))
    step.restore(None)
    assert passed(step, temps(5)) == [5]


def test_an_empty_batch_passes_through() -> None:
    step = Deadband(DeadbandStep(value="temp", absolute=1.0))
    assert len(step.process(Batch.empty(), SideOutputs())) == 0
    assert len(step.idle(0.0, SideOutputs())) == 0

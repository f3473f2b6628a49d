"""The stateless steps: filter, map, select, split, route."""

from __future__ import annotations

from typing import Any

import pytest

from agent.config.steps import FilterStep, MapStep, RouteRule, RouteStep, SelectStep, SplitStep
from agent.pipeline.batch import Batch
from agent.pipeline.operator import SideOutputs
from agent.pipeline.steps.filter import Filter
from agent.pipeline.steps.map import Map
from agent.pipeline.steps.route import Route
from agent.pipeline.steps.select import Select
from agent.pipeline.steps.split import Split


def batch(*payloads: Any, keys: list[str | None] | None = None) -> Batch:
    return Batch.of_payloads(list(payloads), [float(i) for i in range(len(payloads))], keys=keys)


def test_filter_keeps_matching_events_and_counts_the_rest() -> None:
    step = Filter(FilterStep(expr="temp > 20"))
    out = step.process(batch({"temp": 25}, {"temp": 10}, {"x": 1}, None, "text"), SideOutputs())
    assert out.payloads == [{"temp": 25}]
    assert out.times == [0.0]
    assert step.counters["dropped"] == 4


def test_filter_reads_metadata() -> None:
    step = Filter(FilterStep(expr="key == 'b' and event_time >= 1"))
    out = step.process(batch({}, {}, {}, keys=["b", "a", "b"]), SideOutputs())
    assert out.times == [2.0]


def test_map_sets_from_the_incoming_event_then_renames_converts_and_drops() -> None:
    step = Map(
        MapStep(
            set={"a": "b", "b": "a", "env.f": "temp * 1.8 + 32"},
            rename={"old": "new.name"},
            convert={"milli": "millidegree_to_c", "text": "c_to_f"},
            drop=("debug",),
        )
    )
    original = {"a": 1, "b": 2, "temp": 10, "old": "x", "milli": 21500, "text": "hot", "debug": 1}
    incoming = batch(original)
    incoming.raw = [b"original bytes"]
    out = step.process(incoming, SideOutputs())
    assert out.payloads == [{"a": 2, "b": 1, "temp": 10, "env": {"f": 50.0},
                             "new": {"name": "x"}, "milli": 21.5, "text": "hot"}]  # fmt: skip
    assert original["a"] == 1 and "debug" in original  # the input is never mutated
    assert out.raw == [None]  # re-encoded on write


def test_map_sets_key_and_time_and_keeps_the_old_time_when_not_numeric() -> None:
    step = Map(MapStep(key="device", time="ts / 1000"))
    out = step.process(batch({"device": "pi", "ts": 5000}, {"ts": "soon"}, 7), SideOutputs())
    assert out.keys == ["pi", None, None]
    assert out.times == [5.0, 1.0, 2.0]
    assert step.counters["bad_time"] == 2


def test_map_wraps_non_object_payloads() -> None:
    out = Map(MapStep(set={"double": "value * 2"})).process(batch(21, None), SideOutputs())
    assert out.payloads == [{"value": 21, "double": 42}, {"double": None}]


def test_select_keeps_only_listed_paths() -> None:
    step = Select(SelectStep(fields=("device", "env.temp", "missing")))
    payload = {"device": "pi", "env": {"temp": 1, "hum": 2}, "x": 3}
    out = step.process(batch(payload, 5), SideOutputs())
    assert out.payloads == [{"device": "pi", "env": {"temp": 1}}, {}]


def test_split_makes_one_event_per_element() -> None:
    step = Split(SplitStep(field="readings", index_field="i"))
    payload = {"site": "a", "readings": [{"temp": 1}, 2, {"site": "b"}]}
    out = step.process(batch(payload, {"readings": []}, {"readings": "x"}), SideOutputs())
    assert out.payloads == [
        {"site": "a", "temp": 1, "i": 0},
        {"site": "a", "value": 2, "i": 1},
        {"site": "b", "i": 2},
        {"readings": "x"},
    ]
    assert out.times == [0.0, 0.0, 0.0, 2.0]
    assert step.counters == {"empty": 1, "not_array": 1}


def test_split_without_parent_fields() -> None:
    step = Split(SplitStep(field="r", keep_parent=False))
    out = step.process(batch({"site": "a", "r": [1, 2]}), SideOutputs())
    assert out.payloads == [{"value": 1}, {"value": 2}]


@pytest.mark.parametrize("copy", [False, True])
def test_route_sends_to_the_first_matching_rule(copy: bool) -> None:
    rules = (RouteRule(when="temp > 40", to="alerts"), RouteRule(when="temp > 30", to="warm"))
    step = Route(RouteStep(rules=rules, copy=copy))
    side = SideOutputs()
    out = step.process(batch({"temp": 50}, {"temp": 35}, {"temp": 20}, {}), side)
    assert side.streams["alerts"].payloads == [{"temp": 50}]
    assert side.streams["warm"].payloads == [{"temp": 35}]
    expected = [{"temp": 50}, {"temp": 35}, {"temp": 20}, {}] if copy else [{"temp": 20}, {}]
    assert out.payloads == expected

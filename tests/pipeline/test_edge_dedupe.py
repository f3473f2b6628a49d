"""The dedupe step: identity, horizon, clocks, memory bound, odd payloads, snapshots."""

from __future__ import annotations

import math
from typing import Any

import orjson

from agent.config.steps import DedupeStep
from agent.pipeline.batch import Batch
from agent.pipeline.operator import SideOutputs
from agent.pipeline.steps.dedupe import Dedupe


def feed(
    step: Dedupe, payloads: list[Any], times: list[float], keys: list[Any] | None = None
) -> list[float]:
    """Event times of the events that pass."""
    return step.process(Batch.of_payloads(payloads, times, keys=keys), SideOutputs()).times


def test_whole_payload_identity_ignores_object_key_order() -> None:
    step = Dedupe(DedupeStep())
    payloads = [
        {"a": 1, "b": [1, {"x": 2, "y": 3}]},
        {"b": [1, {"y": 3, "x": 2}], "a": 1},
        {"a": 1},
    ]
    assert feed(step, payloads, [0.0, 1.0, 2.0]) == [0.0, 2.0]
    assert step.counters == {"duplicates": 1}


def test_numbers_and_booleans_are_compared_by_their_json_text() -> None:
    step = Dedupe(DedupeStep())
    assert feed(step, [1, 1.0, True, "1", 1, None, None], [0, 1, 2, 3, 4, 5, 6]) == [0, 1, 2, 3, 5]


def test_fields_identify_an_event_and_other_fields_are_ignored() -> None:
    step = Dedupe(DedupeStep(fields=("msg_id", "src")))
    payloads = [
        {"msg_id": 1, "src": "a", "v": 1},
        {"msg_id": 1, "src": "a", "v": 2},
        {"msg_id": 1, "src": "b", "v": 3},
        {"msg_id": 2, "v": 4},
        {"msg_id": 2, "src": None, "v": 5},
    ]
    assert feed(step, payloads, [0, 1, 2, 3, 4]) == [0, 2, 3]


def test_an_event_with_every_field_missing_has_no_identity_and_passes() -> None:
    step = Dedupe(DedupeStep(fields=("msg_id",)))
    payloads: list[Any] = [{"v": 1}, {"v": 1}, None, "text", 5, {"msg_id": None}]
    assert feed(step, payloads, [0, 1, 2, 3, 4, 5]) == [0, 1, 2, 3, 4, 5]
    assert step.counters == {"no_identity": 6}


def test_the_key_is_part_of_the_identity() -> None:
    by_event_key = Dedupe(DedupeStep())
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    keys = ["a", "b", None, "a", None]
    assert feed(by_event_key, [{"v": 1}] * 5, times, keys) == [0.0, 1.0, 2.0]
    by_field = Dedupe(DedupeStep(key="dev", fields=("v",)))
    payloads = [{"dev": 1, "v": 1}, {"dev": "1", "v": 1}, {"dev": 2, "v": 1}, {"v": 1}]
    assert feed(by_field, payloads, times[:4]) == [0.0, 2.0, 3.0]


def test_horizon_is_inclusive_and_a_duplicate_does_not_refresh_it() -> None:
    step = Dedupe(DedupeStep(horizon=60.0))
    times = [0.0, 30.0, 60.0, 60.5, 100.0, 121.0]
    assert feed(step, [{"v": 1}] * len(times), times) == [0.0, 60.5, 121.0]
    assert step.counters == {"duplicates": 3}


def test_the_horizon_follows_the_newest_time_seen_so_late_events_match_remembered_ones() -> None:
    step = Dedupe(DedupeStep(horizon=10.0))
    payloads = [{"v": "x"}, {"v": "y"}, {"v": "y"}, {"v": "x"}, {"v": "x"}]
    # y at 50 is already beyond the horizon of 100: it passes and is not remembered.
    # x at 95 (late) is remembered from 100; x at 111 is past it.
    assert feed(step, payloads, [100.0, 50.0, 51.0, 95.0, 111.0]) == [100.0, 50.0, 51.0, 111.0]


def test_ingest_clock() -> None:
    step = Dedupe(DedupeStep(horizon=10.0, time="ingest"))
    batch = Batch.of_payloads([1, 1, 1], [0.0, 0.0, 0.0], ingest=[100.0, 105.0, 111.0])
    assert step.process(batch, SideOutputs()).ingest == [100.0, 111.0]


def test_max_entries_forgets_the_oldest_first_and_counts_it() -> None:
    step = Dedupe(DedupeStep(max_entries=2))
    payloads: list[Any] = ["a", "b", "c", "b", "a", "c"]
    # c evicts a; b is a duplicate; a passes again and evicts b; c is still remembered.
    assert feed(step, payloads, [0, 1, 2, 3, 4, 5]) == [0, 1, 2, 4]
    assert step.counters == {"evicted": 2, "duplicates": 2}


def test_eviction_order_is_by_time_then_arrival() -> None:
    step = Dedupe(DedupeStep(max_entries=2, horizon=100.0))
    # "late" is remembered at 1 though it came second, so "c" evicts it, not "early".
    payloads: list[Any] = ["early", "late", "c", "early", "late"]
    assert feed(step, payloads, [5.0, 1.0, 6.0, 7.0, 8.0]) == [5.0, 1.0, 6.0, 8.0]


def test_values_json_cannot_encode_are_compared_by_their_text() -> None:
    step = Dedupe(DedupeStep())
    assert feed(step, [{"v": 10**30}, {"v": 10**30}, {"v": 10**31}], [0, 1, 2]) == [0, 2]


def test_bad_times_pass_and_are_not_remembered() -> None:
    step = Dedupe(DedupeStep())
    times = [math.nan, math.inf, 0.0, math.nan, 1.0]
    out = feed(step, ["x"] * 5, times)
    assert len(out) == 4 and out[2] == 0.0
    assert step.counters == {"bad_time": 3, "duplicates": 1}
    orjson.dumps(step.snapshot())


def test_snapshot_round_trips_through_json_into_a_new_instance() -> None:
    config = DedupeStep(horizon=10.0, max_entries=3)
    first = Dedupe(config)
    feed(first, ["a", "b", "c", "d"], [0.0, 1.0, 2.0, 3.0])
    second = Dedupe(config)
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    assert feed(second, ["a", "b", "d", "e", "b"], [4.0, 4.0, 4.0, 12.0, 12.0]) == [4.0, 4.0, 12.0]
    second.restore(None)
    assert feed(second, ["d"], [0.0]) == [0.0]
    assert second.stateful and not second.has_pending()


def test_out_of_order_entries_are_forgotten_in_time_order_across_a_snapshot() -> None:
    config = DedupeStep(horizon=10.0)
    first = Dedupe(config)
    feed(first, ["a", "b", "c", "d"], [100.0, 95.0, 92.0, 98.0])
    second = Dedupe(config)
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    out = feed(second, ["x", "c", "b", "z", "b", "d"], [104.0, 104.0, 104.0, 106.0, 106.0, 106.0])
    assert out == [104.0, 104.0, 106.0, 106.0]  # c (92) then b (95) forgotten; d (98) not


def test_an_empty_batch_passes_through() -> None:
    step = Dedupe(DedupeStep())
    assert len(step.process(Batch.empty(), SideOutputs())) == 0

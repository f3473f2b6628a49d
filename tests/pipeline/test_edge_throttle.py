"""The throttle step: rate per interval, drop and latest, idle release, snapshots."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
import pytest

from agent.config.steps import ThrottleStep
from agent.pipeline.batch import Batch
from agent.pipeline.operator import SideOutputs
from agent.pipeline.steps.throttle import Throttle


def events(*items: tuple[str | None, float]) -> Batch:
    """Events (key, event time) whose payload names them: "<key>@<time>"."""
    return Batch.of_payloads(
        [f"{k}@{t:g}" for k, t in items], [t for _, t in items], keys=[k for k, _ in items]
    )


def names(batch: Batch) -> list[Any]:
    return batch.payloads


def feed(step: Throttle, *items: tuple[str | None, float]) -> list[Any]:
    return names(step.process(events(*items), SideOutputs()))


def test_drop_passes_rate_events_per_interval_and_counts_the_rest() -> None:
    step = Throttle(ThrottleStep(rate=2, per=1.0))
    out = feed(step, *[("a", t) for t in (0.0, 0.1, 0.2, 0.9, 1.0, 1.5, 2.5)])
    assert out == ["a@0", "a@0.1", "a@1", "a@1.5", "a@2.5"]
    assert step.counters == {"throttled": 2}
    assert not step.has_pending()


def test_intervals_are_aligned_to_the_epoch_not_to_the_first_event() -> None:
    step = Throttle(ThrottleStep(rate=1, per=10.0))
    assert feed(step, ("a", 9.0), ("a", 11.0), ("a", 19.0), ("a", 20.0)) == ["a@9", "a@11", "a@20"]


def test_each_key_has_its_own_budget() -> None:
    step = Throttle(ThrottleStep(rate=1, per=1.0))
    out = feed(step, ("a", 0.0), ("b", 0.1), (None, 0.2), ("a", 0.3), (None, 0.4), ("b", 1.0))
    assert out == ["a@0", "b@0.1", "None@0.2", "b@1"]


def test_key_expression() -> None:
    step = Throttle(ThrottleStep(rate=1, key="dev"))
    payloads = [{"dev": 1}, {"dev": "1"}, {"dev": 2}, {}, {"x": 1}]
    out = step.process(Batch.of_payloads(payloads, [0.0] * 5), SideOutputs())
    assert out.payloads == [{"dev": 1}, {"dev": 2}, {}]


def test_an_event_of_an_earlier_interval_is_dropped_as_out_of_order() -> None:
    step = Throttle(ThrottleStep(rate=1, per=1.0))
    assert feed(step, ("a", 5.0), ("a", 3.0), ("a", 5.5), ("a", 6.0)) == ["a@5", "a@6"]
    assert step.counters == {"out_of_order": 1, "throttled": 1}


def test_ingest_clock() -> None:
    step = Throttle(ThrottleStep(rate=1, per=10.0, time="ingest"))
    batch = Batch.of_payloads([1, 2, 3], [0.0, 50.0, 99.0], ingest=[100.0, 105.0, 110.0])
    assert step.process(batch, SideOutputs()).payloads == [1, 3]


def test_latest_holds_the_newest_excess_event_until_the_next_interval() -> None:
    step = Throttle(ThrottleStep(rate=1, per=1.0, mode="latest"))
    out = feed(step, ("a", 0.0), ("a", 0.2), ("a", 0.5), ("b", 0.6))
    assert out == ["a@0", "b@0.6"]
    assert step.has_pending()
    assert step.counters == {"throttled": 1}  # a@0.2, replaced by a@0.5
    out = feed(step, ("b", 0.7), ("a", 1.1), ("a", 1.2))
    # the held event goes out just before the event that opened the next interval
    assert out == ["a@0.5", "a@1.1"]
    assert step.counters == {"throttled": 1}
    assert feed(step, ("b", 2.0), ("a", 3.0)) == ["b@0.7", "b@2", "a@1.2", "a@3"]
    assert not step.has_pending()


def test_latest_keeps_the_columns_of_the_held_event() -> None:
    step = Throttle(ThrottleStep(rate=1, mode="latest"))
    batch = events(("a", 0.0), ("a", 0.5), ("a", 1.0))
    batch.raw = [b"r0", b"r1", b"r2"]
    batch.topics = ["t0", "t1", "t2"]
    batch.headers = [None, '{"h":"1"}', None]
    batch.ingest = [10.0, 11.0, 12.0]
    out = step.process(batch, SideOutputs())
    assert out.raw == [b"r0", b"r1", b"r2"]
    assert out.topics == ["t0", "t1", "t2"]
    assert out.headers == [None, '{"h":"1"}', None]
    assert out.ingest == [10.0, 11.0, 12.0]
    assert out.times == [0.0, 0.5, 1.0]


def test_idle_releases_held_events_of_quiet_keys_sorted_by_key() -> None:
    step = Throttle(ThrottleStep(rate=1, mode="latest", idle=30.0))
    feed(step, ("b", 0.0), ("b", 0.5), (None, 0.0), (None, 0.5), ("a", 0.0), ("a", 0.5))
    now = time.monotonic()
    assert len(step.idle(now + 29.0, SideOutputs())) == 0
    assert names(step.idle(now + 30.0, SideOutputs())) == ["None@0.5", "a@0.5", "b@0.5"]
    assert not step.has_pending()
    # the interval is still the key's current one: a further event is held again
    assert feed(step, ("a", 0.7)) == []
    assert names(step.idle(time.monotonic() + 30.0, SideOutputs())) == ["a@0.7"]


def test_idle_waits_for_the_last_event_of_each_key(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    step = Throttle(ThrottleStep(rate=1, mode="latest", idle=30.0))
    feed(step, ("a", 0.0), ("a", 0.5), ("b", 0.0), ("b", 0.5))
    clock[0] = 1010.0
    feed(step, ("a", 0.6))  # replaces a@0.5, and a is active again
    feed(step, ("c", 0.0))  # another key's event does not make a or b active
    assert names(step.idle(1029.9, SideOutputs())) == []
    assert names(step.idle(1030.0, SideOutputs())) == ["b@0.5"]
    assert names(step.idle(1040.0, SideOutputs())) == ["a@0.6"]


def test_drop_mode_never_holds() -> None:
    step = Throttle(ThrottleStep(rate=1))
    feed(step, ("a", 0.0), ("a", 0.5))
    assert not step.has_pending()
    assert len(step.idle(math.inf, SideOutputs())) == 0


def test_times_that_are_not_finite_pass_and_are_counted() -> None:
    for mode in ("drop", "latest"):
        step = Throttle(ThrottleStep(rate=1, per=0.001, mode=mode))
        out = feed(step, ("a", math.nan), ("a", math.inf), ("a", 1e308), ("a", 0.0), ("a", 0.0))
        assert len(out) == 4
        assert step.counters["bad_time"] == 3
        orjson.dumps(step.snapshot())


def test_held_events_survive_a_snapshot_into_a_new_instance() -> None:
    config = ThrottleStep(rate=1, mode="latest", idle=30.0)
    first = Throttle(config)
    batch = events(("a", 0.0), ("a", 0.5), ("b", 0.0), ("b", 0.5))
    batch.raw = [b"0", "ä".encode(), None, None]
    batch.headers = [None, '{"h":"x"}', None, None]
    first.process(batch, SideOutputs())
    state = orjson.loads(orjson.dumps(first.snapshot()))
    second = Throttle(config)
    restored_at = time.monotonic()
    second.restore(state)
    assert second.has_pending()
    out = second.process(events(("a", 1.0)), SideOutputs())
    assert names(out) == ["a@0.5", "a@1"]
    assert out.raw == ["ä".encode(), None]
    assert out.headers == ['{"h":"x"}', None]
    # b counts as seen at the restore: the downtime does not make it idle
    assert len(second.idle(restored_at + 29.0, SideOutputs())) == 0
    assert names(second.idle(time.monotonic() + 30.0, SideOutputs())) == ["b@0.5"]


def test_restore_none_is_a_fresh_start() -> None:
    step = Throttle(ThrottleStep(rate=1, mode="latest"))
    feed(step, ("a", 0.0), ("a", 0.5))
    step.restore(None)
    assert not step.has_pending()
    assert feed(step, ("a", 0.6)) == ["a@0.6"]


def test_an_empty_batch_passes_through() -> None:
    step = Throttle(ThrottleStep(rate=1, mode="latest"))
    assert len(step.process(Batch.empty(), SideOutputs())) == 0
    assert step.stateful


def test_a_held_payload_json_cannot_hold_is_saved_as_the_bytes_the_queue_would_write() -> None:
    config = ThrottleStep(rate=1, mode="latest")
    first = Throttle(config)
    batch = Batch.of_payloads([{"n": 1}, {"n": 2**70}], [0.0, 0.5], keys=["a", "a"])
    first.process(batch, SideOutputs())
    second = Throttle(config)
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    released = second.idle(math.inf, SideOutputs())
    assert released.to_new_events()[0].payload == batch.take([1]).to_new_events()[0].payload

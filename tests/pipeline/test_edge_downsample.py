"""The downsample step: keep first or last per key and interval, out of order, idle."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
import pytest

from agent.config.steps import DownsampleStep
from agent.pipeline.batch import Batch
from agent.pipeline.operator import SideOutputs
from agent.pipeline.steps.downsample import Downsample


def events(*items: tuple[str | None, float]) -> Batch:
    """Events (key, event time) whose payload names them: "<key>@<time>"."""
    return Batch.of_payloads(
        [f"{k}@{t:g}" for k, t in items], [t for _, t in items], keys=[k for k, _ in items]
    )


def feed(step: Downsample, *items: tuple[str | None, float]) -> list[Any]:
    return step.process(events(*items), SideOutputs()).payloads


def test_keep_first_passes_the_first_event_of_each_epoch_aligned_interval() -> None:
    step = Downsample(DownsampleStep(interval=60.0))
    out = feed(step, *[("a", t) for t in (0.0, 10.0, 59.0, 60.0, 61.0, 125.0)])
    assert out == ["a@0", "a@60", "a@125"]
    assert step.counters == {"downsampled": 3}
    assert not step.has_pending()


def test_keep_last_passes_the_last_event_when_the_next_interval_starts() -> None:
    step = Downsample(DownsampleStep(interval=60.0, keep="last"))
    out = feed(step, *[("a", t) for t in (0.0, 10.0, 59.0, 60.0, 61.0, 125.0)])
    assert out == ["a@59", "a@61"]
    assert step.counters == {"downsampled": 3}
    assert step.has_pending()
    assert step.idle(math.inf, SideOutputs()).payloads == ["a@125"]


def test_keep_last_releases_before_the_next_event_among_other_keys() -> None:
    step = Downsample(DownsampleStep(interval=10.0, keep="last"))
    assert feed(step, ("a", 1.0), ("b", 2.0), ("a", 3.0)) == []
    assert feed(step, ("b", 4.0), ("c", 5.0), ("a", 12.0), ("b", 13.0)) == ["a@3", "b@4"]


@pytest.mark.parametrize("keep", ["first", "last"])
def test_an_event_of_an_earlier_interval_is_dropped_in_both_modes(keep: Any) -> None:
    step = Downsample(DownsampleStep(interval=10.0, keep=keep))
    out = feed(step, ("a", 25.0), ("a", 5.0), ("a", 31.0))
    assert out == (["a@25", "a@31"] if keep == "first" else ["a@25"])
    assert step.counters["out_of_order"] == 1


def test_per_key_by_expression_and_on_ingest_time() -> None:
    step = Downsample(DownsampleStep(interval=10.0, key="dev", time="ingest"))
    payloads = [{"dev": "x"}, {"dev": "y"}, {"dev": "x"}, {"dev": "x"}]
    batch = Batch.of_payloads(payloads, [0.0, 0.0, 0.0, 0.0], ingest=[1.0, 2.0, 9.0, 10.0])
    out = step.process(batch, SideOutputs())
    assert out.ingest == [1.0, 2.0, 10.0]


def test_idle_releases_the_last_event_of_quiet_keys_sorted_by_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [500.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    step = Downsample(DownsampleStep(interval=60.0, keep="last", idle=20.0))
    feed(step, ("b", 1.0), ("a", 2.0), ("a", 3.0))
    clock[0] = 510.0
    feed(step, ("c", 4.0))
    assert step.idle(519.0, SideOutputs()).payloads == []
    assert step.idle(520.0, SideOutputs()).payloads == ["a@3", "b@1"]
    assert step.idle(530.0, SideOutputs()).payloads == ["c@4"]
    assert not step.has_pending()
    # the interval is not over: a later event of it is held (and sent) again
    assert feed(step, ("a", 30.0)) == []
    assert step.idle(math.inf, SideOutputs()).payloads == ["a@30"]


def test_keep_first_never_holds() -> None:
    step = Downsample(DownsampleStep(interval=1.0))
    feed(step, ("a", 0.0), ("a", 0.5))
    assert not step.has_pending()
    assert len(step.idle(math.inf, SideOutputs())) == 0


def test_held_event_survives_a_snapshot_into_a_new_instance() -> None:
    config = DownsampleStep(interval=10.0, keep="last")
    first = Downsample(config)
    feed(first, ("a", 11.0), ("a", 12.0), (None, 3.0))
    second = Downsample(config)
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    out = feed(second, ("a", 14.0), (None, 11.0), ("a", 5.0), ("a", 20.0))
    assert out == ["None@3", "a@14"]
    assert second.counters == {"downsampled": 1, "out_of_order": 1}
    second.restore(None)
    assert not second.has_pending()


def test_an_empty_batch_passes_through() -> None:
    step = Downsample(DownsampleStep(interval=1.0, keep="last"))
    assert len(step.process(Batch.empty(), SideOutputs())) == 0
    assert step.stateful

"""Keyed tumbling and hopping windows on event time, with a watermark and idle keys.

Semantics (docs/pipelines.md):
  * A window covers [start, start + size). Tumbling windows start at multiples of
    size, hopping windows at multiples of slide (both aligned to the Unix epoch), so
    an event belongs to one tumbling window or to size/slide hopping windows.
  * The watermark is the largest event time seen minus `lateness`; it never goes
    back and moves with every event, so results never depend on batching. A window
    closes when the watermark reaches its end.
  * An event all of whose windows have closed is late: counted, and sent to the
    late stream when one is configured. (A hopping event that still has an open
    window is added to it and is not late.)
  * A key without events for `idle` seconds of processing time has its windows
    closed; events that arrive later for those windows are late for that key.
The step does no I/O; its state snapshots to JSON-able data that the runner
commits with the cursor.
"""

from __future__ import annotations

import math
import time
from typing import Any

from agent.pipeline.batch import Batch
from agent.pipeline.columns import key_column
from agent.pipeline.operator import Operator, SideOutputs
from agent.pipeline.windows.aggregation import Columns
from agent.pipeline.windows.common import KeyActivity, WindowSettings, result_event, send_late

WindowId = tuple[str | None, float]


class TimeWindow(Operator):
    """Open windows per (key, start), their aggregate states, and the watermark."""

    stateful = True

    def __init__(self, settings: WindowSettings, size: float, slide: float | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.size = size
        self.slide = None if slide is None or slide == size else slide
        self.activity = KeyActivity()
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh start)."""
        self.open: dict[WindowId, list[Any]] = {}
        self.closed_until: dict[str | None, float] = {}
        self.watermark = -math.inf
        self.late = 0
        self._next_end = math.inf

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Assign each event to its windows, closing those the watermark passes."""
        if not batch.payloads:
            return batch
        settings = self.settings
        keys = batch.keys if settings.key is None else key_column(settings.key, batch)
        times = batch.ingest if settings.use_ingest_time else batch.times
        total = sum(times)
        if total - total != 0.0 and not all(math.isfinite(t) for t in times):
            return self.process(self._drop_bad_times(batch, times), side)
        self.activity.touch(keys, time.monotonic())
        columns = settings.aggregates.columns(batch)
        out = Batch.empty()
        late: list[int] = []
        pending: dict[WindowId, list[int]] = {}
        if self.slide is None:
            single = len(times) == 1  # a trickle: the per-event loop is cheaper then
            if single or not self._group_if_nothing_closes(keys, times, pending):
                self._tumble(keys, times, columns, pending, late, out)
        else:
            self._hop(keys, times, columns, pending, late, out)
        self._fold(pending, columns)
        if late:
            self.late += len(late)
            self.count("late", len(late))
            send_late(settings, batch, late, side)
        return out

    def _drop_bad_times(self, batch: Batch, times: list[float]) -> Batch:
        """Events whose time is NaN or infinite cannot be placed: dropped, counted."""
        good = [math.isfinite(t) for t in times]
        self.count("bad_time", good.count(False))
        return batch.select(good)

    def _group_if_nothing_closes(
        self, keys: list[str | None], times: list[float], pending: dict[WindowId, list[int]]
    ) -> bool:
        """The common case in one pass: no window closes and no event is late.

        When both the watermark and the largest mark of the batch stay below the end of
        every window the batch touches (open or new), the watermark passes no end during
        the batch: nothing closes and, since an event is late only when its window's end
        is at or below the watermark, nothing is late. Then assigning is plain grouping, done
        without the per-event watermark bookkeeping. Otherwise returns False untouched.
        """
        size, lateness = self.size, self.settings.lateness
        if self.closed_until:
            return False
        first, last = min(times), max(times)
        start = first - first % size
        if last - last % size == start:  # the whole batch is in one window per key
            if max(last - lateness, self.watermark) >= min(self._next_end, start + size):
                return False
            by_key: dict[str | None, list[int]] = {}
            for i, key in enumerate(keys):
                group = by_key.get(key)
                if group is None:
                    by_key[key] = [i]
                else:
                    group.append(i)
            self._add_groups({(key, start): group for key, group in by_key.items()}, pending)
        else:
            starts = [ts - ts % size for ts in times]
            if max(last - lateness, self.watermark) >= min(self._next_end, min(starts) + size):
                return False
            grouped: dict[WindowId, list[int]] = {}
            for i, window in enumerate(zip(keys, starts, strict=True)):
                group = grouped.get(window)
                if group is None:
                    grouped[window] = [i]
                else:
                    group.append(i)
            self._add_groups(grouped, pending)
        self.watermark = max(self.watermark, last - lateness)
        return True

    def _add_groups(
        self, groups: dict[WindowId, list[int]], pending: dict[WindowId, list[int]]
    ) -> None:
        """Open the windows the groups need (pending is empty on this path)."""
        open_, new_states, size = self.open, self.settings.aggregates.new_states, self.size
        for window in groups:
            if window not in open_:
                open_[window] = new_states()
                self._next_end = min(self._next_end, window[1] + size)
        pending.update(groups)

    def _tumble(
        self,
        keys: list[str | None],
        times: list[float],
        columns: Columns,
        pending: dict[WindowId, list[int]],
        late: list[int],
        out: Batch,
    ) -> None:
        """The hot loop for tumbling windows: one window per event."""
        size, lateness, open_ = self.size, self.settings.lateness, self.open
        closed_until = self.closed_until
        watermark = self.watermark
        for i, ts in enumerate(times):
            mark = ts - lateness
            if mark > watermark:
                watermark = mark
                if mark >= self._next_end:
                    self.watermark = mark
                    self._fold(pending, columns)
                    self._close_due(out)
            key = keys[i]
            start = ts - ts % size
            end = start + size
            if end <= watermark or (closed_until and end <= closed_until.get(key, -math.inf)):
                late.append(i)
                continue
            group = pending.get((key, start))
            if group is not None:
                group.append(i)
                continue
            pending[(key, start)] = [i]
            if (key, start) not in open_:
                open_[(key, start)] = self.settings.aggregates.new_states()
                self._next_end = min(self._next_end, end)
        self.watermark = watermark

    def _hop(
        self,
        keys: list[str | None],
        times: list[float],
        columns: Columns,
        pending: dict[WindowId, list[int]],
        late: list[int],
        out: Batch,
    ) -> None:
        """Hopping windows: an event joins every window that covers it."""
        size, lateness, slide = self.size, self.settings.lateness, self.slide
        assert slide is not None
        for i, ts in enumerate(times):
            mark = ts - lateness
            if mark > self.watermark:
                self.watermark = mark
                if mark >= self._next_end:
                    self._fold(pending, columns)
                    self._close_due(out)
            key = keys[i]
            placed = False
            until = self.closed_until.get(key, -math.inf)
            for start in _hop_starts(ts, size, slide):
                end = start + size
                if end <= self.watermark or end <= until:
                    continue
                placed = True
                pending.setdefault((key, start), []).append(i)
                if (key, start) not in self.open:
                    self.open[(key, start)] = self.settings.aggregates.new_states()
                    self._next_end = min(self._next_end, end)
            if not placed:
                late.append(i)

    def _fold(self, pending: dict[WindowId, list[int]], columns: Columns) -> None:
        fold, open_ = self.settings.aggregates.fold, self.open
        for window, indices in pending.items():
            fold(open_[window], indices, columns)
        pending.clear()

    def _close_due(self, out: Batch) -> None:
        """Emit and forget every window whose end the watermark reached."""
        mark, size = self.watermark, self.size
        self._emit(out, [w for w in self.open if w[1] + size <= mark])
        if self.closed_until:
            self.closed_until = {k: t for k, t in self.closed_until.items() if t > mark}

    def _emit(self, out: Batch, windows: list[WindowId]) -> None:
        windows.sort(key=lambda w: (w[1], "" if w[0] is None else w[0]))
        results, size = self.settings.aggregates.results, self.size
        for key, start in windows:
            result_event(out, key, start, start + size, results(self.open.pop((key, start))))
        self._next_end = min((s for _, s in self.open), default=math.inf) + size

    def idle(self, now: float, side: SideOutputs) -> Batch:
        """Close every window of the keys that went silent for `idle` seconds."""
        out = Batch.empty()
        if not self.open:
            return out
        silent = self.activity.silent(now, self.settings.idle)
        closing = [w for w in self.open if w[0] in silent]
        for key, start in closing:
            end = start + self.size
            self.closed_until[key] = max(self.closed_until.get(key, -math.inf), end)
        self._emit(out, closing)
        self.activity.forget(silent)
        return out

    def has_pending(self) -> bool:
        return bool(self.open)

    def snapshot(self) -> Any:
        return {
            "watermark": None if self.watermark == -math.inf else self.watermark,
            "late": self.late,
            "open": [[k, s, states] for (k, s), states in self.open.items()],
            "closed_until": [[k, t] for k, t in self.closed_until.items()],
        }

    def restore(self, state: Any) -> None:
        self.reset()
        if state is None:
            return
        self.watermark = -math.inf if state["watermark"] is None else state["watermark"]
        self.late = state["late"]
        self.open = {(k, s): states for k, s, states in state["open"]}
        self.closed_until = dict(state.get("closed_until", []))
        self._next_end = min((s for _, s in self.open), default=math.inf) + self.size
        now = time.monotonic()
        self.activity.touch([k for k, _ in self.open], now)


def _hop_starts(ts: float, size: float, slide: float) -> list[float]:
    """Starts of the hopping windows [start, start + size) that contain ``ts``."""
    k = math.floor(ts / slide)
    starts = []
    while k * slide + size > ts:
        if k * slide <= ts:
            starts.append(k * slide)
        k -= 1
    starts.reverse()
    return starts

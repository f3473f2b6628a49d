"""Keyed count windows: a result every `events` events of a key, in arrival order.

Semantics:
  * Count windows follow arrival order only: event time, lateness and the watermark
    play no part, so no event is ever late.
  * Per key, the n-th event (from 0) opens a window when n is a multiple of
    `every` (unset: `events`, windows without overlap). A window takes the next
    `events` events of its key and closes with the last of them, so with every <
    events an event is in up to ceil(events / every) windows, and with every >
    events the events between windows are in none.
  * A result's window_start and window_end are the times (event or ingest time, as
    configured) of the window's first and last event; its event time is window_end.
    With out-of-order events window_start may be after window_end; a NaN or
    infinite time is reported as it is (it decides nothing here).
  * A key without events for `idle` seconds of processing time has its partial
    windows emitted with the events they have, and then starts afresh: its next
    event opens a new window. Without idle closing, a partial window stays open.
"""

from __future__ import annotations

import time
from typing import Any

from agent.pipeline.batch import Batch
from agent.pipeline.operator import Operator, SideOutputs
from agent.pipeline.windows.aggregation import Columns
from agent.pipeline.windows.common import KeyActivity, WindowSettings, result_event


class CountWindowState:
    """One open window: where it starts (event number and time) and its aggregates.

    ``pending`` holds the batch indices not yet folded into ``states``.
    """

    __slots__ = ("opened", "pending", "start", "states")

    def __init__(self, opened: int, start: float, states: list[Any]) -> None:
        self.opened = opened
        self.start = start
        self.states = states
        self.pending: list[int] = []


class KeyCount:
    """A key's event count (since it started afresh), last time, and open windows."""

    __slots__ = ("last", "seen", "windows")

    def __init__(self, seen: int = 0, last: float = 0.0) -> None:
        self.seen = seen
        self.last = last
        self.windows: list[CountWindowState] = []


Closing = tuple[str | None, float, CountWindowState]
"""A window being emitted: its key, the time of its last event, the window."""


class CountWindow(Operator):
    """Per key: the number of events seen and the open windows."""

    stateful = True

    def __init__(self, settings: WindowSettings, events: int, every: int | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.events = max(1, events)
        self.every = max(1, every if every is not None else events)
        self.activity = KeyActivity()
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh start)."""
        self.keys: dict[str | None, KeyCount] = {}

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Add each event to its key's open windows, emitting those that fill up."""
        if not len(batch):
            return batch
        settings = self.settings
        keys, times = settings.keys(batch), settings.times(batch)
        self.activity.touch(keys, time.monotonic())
        columns = settings.aggregates.columns(batch)
        out = Batch.empty()
        touched: list[CountWindowState] = []
        states, every, size = self.keys, self.every, self.events
        for i, key in enumerate(keys):
            state = states.get(key)
            if state is None:
                state = states[key] = KeyCount()
            n, ts = state.seen, times[i]
            state.seen, state.last = n + 1, ts
            if n % every == 0:
                state.windows.append(CountWindowState(n, ts, settings.aggregates.new_states()))
            for window in state.windows:
                if not window.pending:
                    touched.append(window)
                window.pending.append(i)
            if state.windows and state.windows[0].opened + size == n + 1:
                self._fold(state.windows[0], columns)
                self._emit(out, [(key, ts, state.windows.pop(0))])
            if not state.windows and state.seen % every == 0:
                del states[key]  # the same as a fresh start, and holds no memory
        for window in touched:
            self._fold(window, columns)
        return out

    def _fold(self, window: CountWindowState, columns: Columns) -> None:
        if window.pending:
            self.settings.aggregates.fold(window.states, window.pending, columns)
            window.pending = []

    def _emit(self, out: Batch, closing: list[Closing]) -> None:
        results = self.settings.aggregates.results
        for key, end, window in closing:
            result_event(out, key, window.start, end, results(window.states))

    def idle(self, now: float, side: SideOutputs) -> Batch:
        """Emit the partial windows of keys silent for `idle` seconds; they start afresh.

        Several at once are ordered by (start, key, first event number).
        """
        out = Batch.empty()
        if not self.keys:
            return out
        silent = self.activity.silent(now, self.settings.idle)
        closing: list[Closing] = []
        for key in silent:
            state = self.keys.pop(key, None)
            if state is not None:
                closing += [(key, state.last, w) for w in state.windows]
        closing.sort(key=_closing_order)
        self._emit(out, closing)
        self.activity.forget(silent)
        return out

    def has_pending(self) -> bool:
        return bool(self.keys)

    def snapshot(self) -> Any:
        return {
            "keys": [
                [key, s.seen, _json_time(s.last), [_json_window(w) for w in s.windows]]
                for key, s in self.keys.items()
            ]
        }

    def restore(self, state: Any) -> None:
        self.reset()
        if state is None:
            return
        for key, seen, last, windows in state["keys"]:
            count = self.keys[key] = KeyCount(seen, float(last))
            count.windows = [CountWindowState(n, float(t), states) for n, t, states in windows]
        self.activity.touch(list(self.keys), time.monotonic())


def _json_time(t: float) -> float | str:
    """A time as JSON keeps it: NaN and infinities (which JSON lacks) as text for float()."""
    return t if t - t == 0.0 else repr(t)


def _json_window(window: CountWindowState) -> list[Any]:
    return [window.opened, _json_time(window.start), window.states]


def _closing_order(closing: Closing) -> tuple[bool, float, bool, str, int]:
    """A total order even for NaN times (count windows take any time as it is)."""
    key, _, window = closing
    nan = window.start != window.start
    return (nan, 0.0 if nan else window.start, key is not None, key or "", window.opened)

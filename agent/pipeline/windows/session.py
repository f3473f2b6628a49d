"""Keyed session windows on event time: a session ends after a gap without events.

Semantics:
  * Per key, a session is a run of events whose consecutive times (in time order,
    not arrival order) are less than `gap` apart. It covers [first, last + gap):
    the result's window_start is its first event time and window_end its last event
    time plus gap, the moment the session is known to be over.
  * The watermark is the one of the time window: the largest event time seen minus
    `lateness`, moved with every event, so results never depend on batching. A
    session closes when the watermark reaches its end.
  * An event less than gap from an open session of its key joins it, extending it
    backwards or forwards; an event within gap of several open sessions of its key
    merges them into one.
  * `max_length`: an event that would make a session's events span more than
    max_length (last - first > max_length) does not join it: the session (every
    session it touches) is sealed, taking no more events but still closing when the
    watermark reaches its end, and the event starts the next session. An event that
    touches only sealed sessions starts a session of its own.
  * An event that joins no open session is late when the session it would start is
    already over (time + gap <= watermark) or when it is earlier than the end of a
    session of its key that has closed (it belongs to that session, whose result is
    out). A late event changes nothing: it is counted and sent to the late stream.
  * A key without events for `idle` seconds of processing time has its sessions
    closed; its later events earlier than their end are late.
  * An event whose time is NaN or infinite cannot be placed: dropped, counted as
    ``bad_time``.

Aggregates only fold; two sessions cannot be merged from their states. With
lateness 0 no merge can happen: an open session ends after the watermark, which is
at or past every event seen, so a key never has two unsealed open sessions. Then a
session folds its events batch by batch, as the time window does. With lateness > 0
an open session instead keeps its events' aggregate arguments (the evaluated
columns, not the payloads) with their arrival number, and folds them in arrival
order when it closes or is sealed, so a merged session gives exactly the result of
one that saw all its events. That memory is bounded by the session; `max_length`
bounds it for a key that never pauses.
"""

from __future__ import annotations

import heapq
import math
import time
from operator import itemgetter
from typing import Any

from agent.pipeline.batch import Batch
from agent.pipeline.operator import Operator, SideOutputs
from agent.pipeline.windows.aggregation import Columns
from agent.pipeline.windows.common import KeyActivity, WindowSettings, result_event, send_late

Row = list[Any]
"""One kept event of a session: arrival number, time, then one value per argument slot."""

_ARRIVAL = itemgetter(0)


class Session:
    """One open session: its event-time bounds and its aggregates so far.

    Exactly one of ``states`` (folded aggregate states) and ``rows`` (kept events,
    lateness > 0 and not sealed) is set.
    """

    __slots__ = ("first", "last", "rows", "sealed", "states")

    def __init__(
        self,
        first: float,
        last: float,
        states: list[Any] | None,
        rows: list[Row] | None,
        sealed: bool = False,
    ) -> None:
        self.first = first
        self.last = last
        self.states = states
        self.rows = rows
        self.sealed = sealed


Closing = tuple[str | None, Session]


class SessionWindow(Operator):
    """Open sessions per key, the watermark, and where each key's closed sessions end."""

    stateful = True

    def __init__(
        self, settings: WindowSettings, gap: float, max_length: float | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.gap = gap
        self.max_length = max_length
        self.keep_rows = settings.lateness > 0
        self.activity = KeyActivity()
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh start)."""
        self.open: dict[str | None, list[Session]] = {}
        self.closed_until: dict[str | None, float] = {}
        self.watermark = -math.inf
        self.late = 0
        self.arrivals = 0
        self._next_end = math.inf

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Place each event in its session, closing those the watermark passes."""
        if not len(batch):
            return batch
        settings = self.settings
        keys, times = settings.keys(batch), settings.times(batch)
        self.activity.touch(keys, time.monotonic())
        columns = settings.aggregates.columns(batch)
        out, late, bad = Batch.empty(), [], 0
        pending: dict[Session, list[int]] = {}
        lateness = settings.lateness
        for i, ts in enumerate(times):
            if ts - ts != 0.0:
                bad += 1
                continue
            mark = ts - lateness
            if mark > self.watermark:
                self.watermark = mark
                if mark >= self._next_end:
                    self._fold(pending, columns)
                    self._close_due(out)
            if not self._place(keys[i], ts, i, columns, pending):
                late.append(i)
        self._fold(pending, columns)
        if bad:
            self.count("bad_time", bad)
        if late:
            self.late += len(late)
            self.count("late", len(late))
            send_late(settings, batch, late, side)
        return out

    def _place(
        self,
        key: str | None,
        ts: float,
        i: int,
        columns: Columns,
        pending: dict[Session, list[int]],
    ) -> bool:
        """Add event ``i`` to its session (joined, merged or new); False when it is late."""
        gap = self.gap
        sessions = self.open.get(key)
        near = (
            [s for s in sessions if not s.sealed and s.first < ts + gap and ts < s.last + gap]
            if sessions
            else []
        )
        if near and self._fits(near, ts):
            self._join(key, near, ts, i, columns, pending)
            return True
        if ts < self.closed_until.get(key, -math.inf) or ts + gap <= self.watermark:
            return False
        for session in near:
            self._seal(session)
        rows: list[Row] | None = [] if self.keep_rows else None
        session = Session(ts, ts, None if self.keep_rows else self._new_states(), rows)
        self.open.setdefault(key, []).append(session)
        self._next_end = min(self._next_end, ts + gap)
        self._add(session, ts, i, columns, pending)
        return True

    def _fits(self, near: list[Session], ts: float) -> bool:
        """Whether the sessions ``near`` and ``ts`` together respect `max_length`."""
        if self.max_length is None:
            return True
        first = min(ts, *(s.first for s in near))
        last = max(ts, *(s.last for s in near))
        return last - first <= self.max_length

    def _join(
        self,
        key: str | None,
        near: list[Session],
        ts: float,
        i: int,
        columns: Columns,
        pending: dict[Session, list[int]],
    ) -> None:
        """Extend the session ``ts`` touches, merging first when it touches several."""
        target = self._merge(key, near) if len(near) > 1 else near[0]
        target.first = min(target.first, ts)
        target.last = max(target.last, ts)
        self._add(target, ts, i, columns, pending)

    def _merge(self, key: str | None, near: list[Session]) -> Session:
        """One session from several: their bounds, and their rows in arrival order.

        Only reachable with lateness > 0 (see the module docstring), where every
        unsealed session keeps its rows.
        """
        target, others = near[0], near[1:]
        target.first = min(s.first for s in near)
        target.last = max(s.last for s in near)
        target.rows = list(heapq.merge(*(s.rows or [] for s in near), key=_ARRIVAL))
        self.open[key] = [s for s in self.open[key] if all(s is not o for o in others)]
        return target

    def _add(
        self,
        session: Session,
        ts: float,
        i: int,
        columns: Columns,
        pending: dict[Session, list[int]],
    ) -> None:
        """Record event ``i`` in ``session``: a kept row, or an index folded with its batch."""
        if session.rows is None:
            pending.setdefault(session, []).append(i)
            return
        session.rows.append([self.arrivals, ts, *(_at(col, i) for col in columns.values)])
        self.arrivals += 1

    def _seal(self, session: Session) -> None:
        """Stop ``session`` taking events (max_length); its rows are no longer needed."""
        session.sealed = True
        if session.rows is not None:
            session.states = self._fold_rows(session.rows)
            session.rows = None

    def _new_states(self) -> list[Any]:
        return self.settings.aggregates.new_states()

    def _fold(self, pending: dict[Session, list[int]], columns: Columns) -> None:
        fold = self.settings.aggregates.fold
        for session, indices in pending.items():
            if session.states is not None:
                fold(session.states, indices, columns)
        pending.clear()

    def _states(self, session: Session) -> list[Any]:
        """The folded aggregate states of a session that takes no more events."""
        if session.rows is not None:
            return self._fold_rows(session.rows)
        return session.states if session.states is not None else self._new_states()

    def _fold_rows(self, rows: list[Row]) -> list[Any]:
        """Aggregate states of kept rows, folded in arrival order in one call."""
        states = self._new_states()
        if rows:
            slots = len(rows[0]) - 2
            values: list[list[Any] | None] = [[row[2 + s] for row in rows] for s in range(slots)]
            columns = Columns(values, [row[1] for row in rows])
            self.settings.aggregates.fold(states, list(range(len(rows))), columns)
        return states

    def _close_due(self, out: Batch) -> None:
        """Emit and forget every session whose end the watermark reached."""
        mark, gap = self.watermark, self.gap
        closing: list[Closing] = []
        for key, sessions in list(self.open.items()):
            due = [s for s in sessions if s.last + gap <= mark]
            if not due:
                continue
            closing += [(key, s) for s in due]
            keep = [s for s in sessions if s.last + gap > mark]
            if keep:
                self.open[key] = keep
            else:
                del self.open[key]
        self._emit(out, closing)
        if self.closed_until:
            self.closed_until = {k: t for k, t in self.closed_until.items() if t + gap > mark}

    def _emit(self, out: Batch, closing: list[Closing]) -> None:
        """Results of closed sessions, ordered by (start, key, end); note where they end.

        Once the watermark is a gap past a closed end, the watermark alone makes the
        events before that end late, so `_close_due` drops the entry.
        """
        closing.sort(key=_closing_order)
        gap, results, closed_until = self.gap, self.settings.aggregates.results, self.closed_until
        for key, session in closing:
            end = session.last + gap
            closed_until[key] = max(closed_until.get(key, -math.inf), end)
            result_event(out, key, session.first, end, results(self._states(session)))
        self._next_end = self._min_end()

    def _min_end(self) -> float:
        return min((s.last for ss in self.open.values() for s in ss), default=math.inf) + self.gap

    def idle(self, now: float, side: SideOutputs) -> Batch:
        """Close every session of the keys that went silent for `idle` seconds."""
        out = Batch.empty()
        if not self.open:
            return out
        silent = self.activity.silent(now, self.settings.idle)
        closing = [(key, s) for key in silent if key in self.open for s in self.open.pop(key)]
        self._emit(out, closing)
        self.activity.forget(silent)
        return out

    def has_pending(self) -> bool:
        return bool(self.open)

    def snapshot(self) -> Any:
        return {
            "watermark": None if self.watermark == -math.inf else self.watermark,
            "late": self.late,
            "arrivals": self.arrivals,
            "open": [
                [key, s.first, s.last, s.sealed, s.states, s.rows]
                for key, sessions in self.open.items()
                for s in sessions
            ],
            "closed_until": [[k, t] for k, t in self.closed_until.items()],
        }

    def restore(self, state: Any) -> None:
        self.reset()
        if state is None:
            return
        self.watermark = -math.inf if state["watermark"] is None else state["watermark"]
        self.late = state["late"]
        self.arrivals = state["arrivals"]
        for key, first, last, sealed, states, rows in state["open"]:
            self.open.setdefault(key, []).append(Session(first, last, states, rows, sealed))
        self.closed_until = dict(state["closed_until"])
        self._next_end = self._min_end()
        self.activity.touch(list(self.open), time.monotonic())


def _at(col: list[Any] | None, i: int) -> Any:
    return None if col is None else col[i]


def _closing_order(closing: Closing) -> tuple[float, bool, str, float]:
    key, session = closing
    return (session.first, key is not None, key or "", session.last)

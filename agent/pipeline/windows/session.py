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

Results of sessions closing at the same event (or idle call) come ordered by
(start, key, end).
"""

from __future__ import annotations

import heapq
import math
import time
from itertools import count
from operator import itemgetter
from typing import Any

from agent.pipeline.batch import Batch
from agent.pipeline.operator import Operator, SideOutputs
from agent.pipeline.windows.aggregation import AggregateSet, Columns
from agent.pipeline.windows.common import KeyActivity, WindowSettings, result_event, send_late

Row = list[Any]
"""One kept event of a session: arrival number, time, then one value per argument slot."""

_ARRIVAL = itemgetter(0)


class Session:
    """One open session: its event-time bounds and its aggregates so far.

    Exactly one of ``states`` (folded aggregate states) and ``rows`` (kept events:
    lateness > 0 and not sealed) is set. ``closed``: emitted or merged into another.
    """

    __slots__ = ("closed", "first", "last", "rows", "sealed", "states")

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
        self.closed = False


Closing = tuple[str | None, Session]
EndEntry = tuple[float, int, str | None, Session]
"""A session's end when it was pushed, a tie-breaker, its key, the session."""


class Pending:
    """Events of the batch in process that are not yet in their session's aggregates.

    A session takes its events of a batch in one call (a fold, or one extension of
    its rows) instead of one per event. It settles early only when it closes, merges
    or is sealed, so its events always enter in arrival order.
    """

    __slots__ = ("aggregates", "base", "columns", "groups")

    def __init__(self, aggregates: AggregateSet, columns: Columns, base: int) -> None:
        self.aggregates = aggregates
        self.columns = columns
        self.base = base
        """Arrival number of the batch's first event."""
        self.groups: dict[Session, list[int]] = {}

    def add(self, session: Session, i: int) -> None:
        group = self.groups.get(session)
        if group is None:
            self.groups[session] = [i]
        else:
            group.append(i)

    def settle(self, session: Session) -> None:
        """Fold (or keep as rows) the session's pending events."""
        indices = self.groups.pop(session, None)
        if not indices:
            return
        if session.rows is not None:
            session.rows += self._rows(indices)
        elif session.states is not None:
            self.aggregates.fold(session.states, indices, self.columns)

    def settle_all(self) -> None:
        for session in list(self.groups):
            self.settle(session)

    def _rows(self, indices: list[int]) -> list[Row]:
        times, base = self.columns.times, self.base
        slots = [
            [None] * len(indices) if col is None else [col[j] for j in indices]
            for col in self.columns.values
        ]
        arrivals = [base + j for j in indices]
        return list(map(list, zip(arrivals, [times[j] for j in indices], *slots, strict=True)))


class SessionWindow(Operator):
    """Open sessions per key, the watermark, and where each key's closed sessions end."""

    stateful = True
    prune_min = 64
    """Housekeeping that changes no result waits for this many entries, then for twice
    the live ones: pruning closed ends, rebuilding the end heap after idle closes."""

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
        self._ends: list[EndEntry] = []
        """Heap of open sessions by end; an end only grows, so an entry is a lower bound."""
        self._tie = count()
        self._next_end = math.inf
        self._prune_at = self.prune_min

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Place each event in its session, closing those the watermark passes."""
        if not len(batch):
            return batch
        settings = self.settings
        keys, times = settings.keys(batch), settings.times(batch)
        self.activity.touch(keys, time.monotonic())
        pending = Pending(settings.aggregates, settings.aggregates.columns(batch), self.arrivals)
        out, late = Batch.empty(), list[int]()
        bad = self._assign(keys, times, pending, late, out)
        pending.settle_all()
        self.arrivals += len(batch)
        if len(self.closed_until) >= self._prune_at:
            self._prune()
        if bad:
            self.count("bad_time", bad)
        if late:
            self.late += len(late)
            self.count("late", len(late))
            send_late(settings, batch, late, side)
        return out

    def _assign(
        self,
        keys: list[str | None],
        times: list[float],
        pending: Pending,
        late: list[int],
        out: Batch,
    ) -> int:
        """The hot loop: move the watermark and place every event; the bad time count.

        The common case is inline: the event falls in or extends its key's only
        session. Everything else goes to `_place`.
        """
        lateness, gap, max_length = self.settings.lateness, self.gap, self.max_length
        open_, groups, bad = self.open, pending.groups, 0
        for i, ts in enumerate(times):
            if ts - ts != 0.0:
                bad += 1
                continue
            mark = ts - lateness
            if mark > self.watermark:
                self.watermark = mark
                if mark >= self._next_end:
                    self._close_due(out, pending)
            key = keys[i]
            sessions = open_.get(key)
            if sessions is not None and len(sessions) == 1:
                s = sessions[0]
                if (
                    not s.sealed
                    and s.first <= ts < s.last + gap
                    and (max_length is None or max(ts, s.last) - s.first <= max_length)
                ):
                    s.last = max(s.last, ts)
                    group = groups.get(s)
                    if group is None:
                        groups[s] = [i]
                    else:
                        group.append(i)
                    continue
            if not self._place(key, ts, i, pending):
                late.append(i)
        return bad

    def _place(self, key: str | None, ts: float, i: int, pending: Pending) -> bool:
        """Add event ``i`` to its session (joined, merged or new); False when it is late."""
        gap = self.gap
        sessions = self.open.get(key)
        near = (
            [s for s in sessions if not s.sealed and s.first < ts + gap and ts < s.last + gap]
            if sessions
            else []
        )
        if near and self._fits(near, ts):
            target = self._merge(key, near, pending) if len(near) > 1 else near[0]
            target.first = min(target.first, ts)
            target.last = max(target.last, ts)
            pending.add(target, i)
            return True
        if ts < self.closed_until.get(key, -math.inf) or ts + gap <= self.watermark:
            return False
        for session in near:
            self._seal(session, pending)
        session = (
            Session(ts, ts, None, [])
            if self.keep_rows
            else Session(ts, ts, self.settings.aggregates.new_states(), None)
        )
        self.open.setdefault(key, []).append(session)
        self._push(key, session)
        pending.add(session, i)
        return True

    def _fits(self, near: list[Session], ts: float) -> bool:
        """Whether the sessions ``near`` and ``ts`` together respect `max_length`."""
        if self.max_length is None:
            return True
        first = min(ts, *(s.first for s in near))
        last = max(ts, *(s.last for s in near))
        return last - first <= self.max_length

    def _merge(self, key: str | None, near: list[Session], pending: Pending) -> Session:
        """One session from several: their bounds, and their rows in arrival order.

        Only reachable with lateness > 0 (see the module docstring), where every
        unsealed session keeps its rows.
        """
        for session in near:
            pending.settle(session)
        target, others = near[0], near[1:]
        target.first = min(s.first for s in near)
        target.last = max(s.last for s in near)
        if target.rows is not None:
            target.rows = list(heapq.merge(*(s.rows or [] for s in near), key=_ARRIVAL))
        for other in others:
            other.closed = True
            self.open[key].remove(other)
        return target

    def _seal(self, session: Session, pending: Pending) -> None:
        """Stop ``session`` taking events (max_length); its rows are no longer needed."""
        pending.settle(session)
        session.sealed = True
        if session.rows is not None:
            session.states = self._fold_rows(session.rows)
            session.rows = None

    def _states(self, session: Session) -> list[Any]:
        """The folded aggregate states of a settled session that takes no more events."""
        if session.rows is not None:
            return self._fold_rows(session.rows)
        if session.states is not None:
            return session.states
        return self.settings.aggregates.new_states()

    def _fold_rows(self, rows: list[Row]) -> list[Any]:
        """Aggregate states of kept rows, folded in arrival order in one call."""
        aggregates = self.settings.aggregates
        states = aggregates.new_states()
        if rows:
            slots = len(rows[0]) - 2
            values: list[list[Any] | None] = [[row[2 + s] for row in rows] for s in range(slots)]
            aggregates.fold(states, list(range(len(rows))), Columns(values, [r[1] for r in rows]))
        return states

    def _push(self, key: str | None, session: Session) -> None:
        end = session.last + self.gap
        heapq.heappush(self._ends, (end, next(self._tie), key, session))
        self._next_end = min(self._next_end, end)

    def _close_due(self, out: Batch, pending: Pending) -> None:
        """Emit and forget every session whose end the watermark reached.

        A session that grew since its end was pushed goes back with its new end. Only
        the closing sessions settle now; the others keep their pending events for one
        fold per batch.
        """
        mark, ends, closing = self.watermark, self._ends, list[Closing]()
        while ends and ends[0][0] <= mark:
            _, _, key, session = heapq.heappop(ends)
            if session.closed:
                continue
            if session.last + self.gap > mark:
                self._push(key, session)
                continue
            closing.append((key, session))
            sessions = self.open[key]
            sessions.remove(session)
            if not sessions:
                del self.open[key]
            pending.settle(session)
        self._emit(out, closing)

    def _emit(self, out: Batch, closing: list[Closing]) -> None:
        """Results of closed sessions, ordered by (start, key, end); note where they end."""
        closing.sort(key=_closing_order)
        gap, results, closed_until = self.gap, self.settings.aggregates.results, self.closed_until
        for key, session in closing:
            session.closed = True
            end = session.last + gap
            closed_until[key] = max(closed_until.get(key, -math.inf), end)
            result_event(out, key, session.first, end, results(self._states(session)))
        self._next_end = self._ends[0][0] if self._ends else math.inf

    def _prune(self) -> None:
        """Forget closed ends a gap behind the watermark: it alone makes earlier events late.

        Pruning changes no result, so it runs only when the table doubled.
        """
        mark, gap = self.watermark, self.gap
        self.closed_until = {k: t for k, t in self.closed_until.items() if t + gap > mark}
        self._prune_at = max(self.prune_min, 2 * len(self.closed_until))

    def idle(self, now: float, side: SideOutputs) -> Batch:
        """Close every session of the keys that went silent for `idle` seconds."""
        out = Batch.empty()
        if not self.open:
            return out
        silent = self.activity.silent(now, self.settings.idle)
        closing = [(key, s) for key in silent if key in self.open for s in self.open.pop(key)]
        self._emit(out, closing)
        if len(self._ends) > self.prune_min + 2 * sum(len(s) for s in self.open.values()):
            self._rebuild_ends()
        self.activity.forget(silent)
        return out

    def _rebuild_ends(self) -> None:
        """The end heap of the open sessions only (drops entries of closed ones)."""
        self._ends = []
        self._next_end = math.inf
        for key, sessions in self.open.items():
            for session in sessions:
                self._push(key, session)

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
        self._rebuild_ends()
        self.activity.touch(list(self.open), time.monotonic())


def _closing_order(closing: Closing) -> tuple[float, bool, str, float]:
    key, session = closing
    return (session.first, key is not None, key or "", session.last)

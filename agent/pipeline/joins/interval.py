"""`join` of type window: an interval join pairing events of two streams close in time.

Left is the pipeline's own input, right the other stream (`stream`). Times are event
or ingest times (`time`); keys are `key` on the left and `other_key` on the right
(default the event key; a missing field gives null, a key like any other).

  * Each side buffers its recent events per key. An arriving event is paired with
    every buffered event of the other side with the same key and
    |t_left - t_right| <= within, in the order those arrived, then is buffered
    itself. So each pair is emitted exactly once, by whichever of its two events
    arrived second (from `process` or from `absorb`); an event that finds no partner
    emits nothing (an inner join).
  * A pair is one new event: a copy of the left payload (a non-object becomes
    ``{"value": it}``) with the right payload at `into` (a dotted path; default the
    other stream's name), the join key as key, the left's topic and headers, and
    the later of the two event times and of the two ingest times.
  * Each side tracks the largest time it has seen (every event with a finite time
    counts, late or not). watermark = min(left largest, right largest) - within -
    lateness, where a side that has seen no event yet does not count (-inf while
    neither has); the highest value reached is kept, so it never goes back (not even
    when the second side's first event is older) and moves with every event. As in
    Flink's interval join, one side running ahead (catching up after downtime, a
    sparse stream, a large batch of one stream) does not make the other's events
    late. An arriving event older than the watermark is late: counted `late`,
    neither paired nor buffered. A buffered event is kept while a non-late event
    could still pair with it (until the watermark passes its time + within), so
    every pair of non-late events is emitted.
  * Each side buffers at most `MAX_BUFFERED` events; beyond that the earliest
    arrival is evicted (counted `evicted`) and misses its later partners.
  * A side that falls silent holds back expiry, so the other side's buffer grows
    until its bound (MAX_BUFFERED, oldest evicted and counted).
  * An event whose time is not finite is counted `bad_time` and ignored.
Events are handled one at a time, so results depend on the order in which the two
streams' events arrive (how the runner interleaves them), never on how either
stream is cut into batches. A side holds about rate * (2 * within + lateness + how far
the other side lags behind it) events.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Final

from agent.config.steps import JoinStep
from agent.pipeline.batch import Batch
from agent.pipeline.columns import key_column
from agent.pipeline.expr import compile_expression
from agent.pipeline.fields import Path, parse_path, set_path, writable
from agent.pipeline.operator import Operator, SideOutputs

MAX_BUFFERED: Final = 100_000
"""Events buffered per side: with payloads of a few hundred bytes, tens of MB at most."""

SWEEP_SLACK: Final = 1024
"""Buffers are swept of expired events once they grow past twice their size after
the last sweep plus this, so quiet keys cannot hoard expired events (amortized cost)."""

Key = str | None
Entry = tuple[float, Any, float, float, str | None, str | None]
"""A buffered event: (join time, payload, event time, ingest time, topic, headers)."""


class Buffer:
    """One side's buffered events by join key, and their arrival order across keys."""

    def __init__(self) -> None:
        self.by_key: dict[Key, dict[int, Entry]] = {}
        self.arrivals: OrderedDict[int, Key] = OrderedDict()
        self.pruned_at = -math.inf

    def __len__(self) -> int:
        return len(self.arrivals)

    def add(self, seq: int, key: Key, entry: Entry) -> None:
        """Buffer an event; ``seq`` grows with every arrival."""
        events = self.by_key.get(key)
        if events is None:
            events = self.by_key[key] = {}
        events[seq] = entry
        self.arrivals[seq] = key

    def drop(self, key: Key, seqs: list[int]) -> None:
        """Forget some events of one key."""
        events = self.by_key[key]
        for seq in seqs:
            del events[seq]
            del self.arrivals[seq]
        if not events:
            del self.by_key[key]

    def prune(self, watermark: float, within: float) -> None:
        """Forget every event no event at or after ``watermark`` can pair with.

        Events buffered since the last prune are not older than the watermark was
        then, so a watermark that has not moved finds nothing to forget.
        """
        if watermark <= self.pruned_at:
            return
        self.pruned_at = watermark
        for key in list(self.by_key):
            stale = [s for s, e in self.by_key[key].items() if expired(e[0], watermark, within)]
            if stale:
                self.drop(key, stale)

    def evict_oldest(self) -> None:
        """Forget the earliest arrival still buffered."""
        seq, key = self.arrivals.popitem(last=False)
        events = self.by_key[key]
        del events[seq]
        if not events:
            del self.by_key[key]

    def rows(self) -> list[list[Any]]:
        """The buffered events in arrival order as JSON-able ``[key, *entry]`` rows."""
        by_key = self.by_key
        return [[key, *by_key[key][seq]] for seq, key in self.arrivals.items()]


def expired(time: float, watermark: float, within: float) -> bool:
    """Whether no event at or after ``watermark`` can pair with one at ``time``.

    Written as the pairing test itself (a float difference against `within`), so
    rounding can never forget an event that a later one would still have matched.
    """
    return watermark - time > within


class WindowJoin(Operator):
    """Both sides' buffers, largest times and the watermark; see the module docstring."""

    stateful = True

    def __init__(self, step: JoinStep, limit: int = MAX_BUFFERED) -> None:
        super().__init__()
        if step.within is None:
            raise ValueError("a window join needs `within` (JoinStep.check reports it)")
        self.side_inputs = (step.stream,)
        self.key = compile_expression(step.key) if step.key is not None else None
        self.other_key = compile_expression(step.other_key) if step.other_key is not None else None
        self.into = parse_path(step.into if step.into is not None else step.stream)
        self.within = step.within
        self.span = step.within + step.lateness
        self.use_ingest_time = step.time == "ingest"
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh start)."""
        self.left = Buffer()
        self.right = Buffer()
        self.left_max = -math.inf
        self.right_max = -math.inf
        self.watermark = -math.inf
        """Events older than this are late; the highest min(left_max, right_max) - span."""
        self.seq = 0
        self._swept_size = 0

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Pairs completed by the pipeline's own (left) events."""
        return self._arrive(batch, key_column(self.key, batch), self.left, self.right, True)

    def absorb(self, stream: str, batch: Batch, side: SideOutputs) -> Batch:
        """Pairs completed by the other stream's (right) events."""
        return self._arrive(batch, key_column(self.other_key, batch), self.right, self.left, False)

    def _arrive(
        self, batch: Batch, keys: list[Key], own: Buffer, other: Buffer, is_left: bool
    ) -> Batch:
        """Pair, then buffer, each event in order; the watermark moves per event."""
        out = Batch.empty()
        times = batch.ingest if self.use_ingest_time else batch.times
        late = bad = 0
        watermark, span = self.watermark, self.span
        own_max = self.left_max if is_left else self.right_max
        other_max = self.right_max if is_left else self.left_max  # fixed during the batch
        ceiling = math.inf if other_max == -math.inf else other_max  # no event yet: does not count
        for i, t in enumerate(times):
            if not math.isfinite(t):
                bad += 1
                continue
            is_late = t < watermark
            if t > own_max:
                own_max = t
                if is_left:
                    self.left_max = t
                else:
                    self.right_max = t
                mark = min(t, ceiling) - span
                if mark > watermark:
                    watermark = self.watermark = mark
            if is_late:
                late += 1
                continue
            key = keys[i]
            entry = (
                t,
                batch.payloads[i],
                batch.times[i],
                batch.ingest[i],
                batch.topics[i],
                batch.headers[i],
            )
            partners = other.by_key.get(key)
            if partners:
                self._pair(out, key, entry, partners, other, is_left)
            own.add(self.seq, key, entry)
            self.seq += 1
            if len(own) > self.limit:
                self._evict(own)
        if late:
            self.count("late", late)
        if bad:
            self.count("bad_time", bad)
        self._sweep()
        return out

    def _pair(
        self,
        out: Batch,
        key: Key,
        entry: Entry,
        partners: dict[int, Entry],
        other: Buffer,
        is_left: bool,
    ) -> None:
        """Emit a pair per partner within `within`; forget expired partners on the way."""
        t, within, watermark = entry[0], self.within, self.watermark
        stale: list[int] = []
        for seq, partner in partners.items():
            if abs(t - partner[0]) <= within:
                if is_left:
                    _emit(out, self.into, key, entry, partner)
                else:
                    _emit(out, self.into, key, partner, entry)
            elif expired(partner[0], watermark, within):
                stale.append(seq)
        if stale:
            other.drop(key, stale)

    def _evict(self, buffer: Buffer) -> None:
        """Bring a full buffer back to `limit`: expired events first, then the oldest."""
        buffer.prune(self.watermark, self.within)
        excess = len(buffer) - self.limit
        for _ in range(excess):
            buffer.evict_oldest()
        if excess > 0:
            self.count("evicted", excess)

    def _sweep(self) -> None:
        """Forget expired events of all keys, amortized over buffer growth."""
        size = len(self.left) + len(self.right)
        if size > 2 * self._swept_size + SWEEP_SLACK:
            self._prune()
            self._swept_size = len(self.left) + len(self.right)

    def _prune(self) -> None:
        self.left.prune(self.watermark, self.within)
        self.right.prune(self.watermark, self.within)

    def snapshot(self) -> Any:
        """Both sides' largest times, the watermark (null for -inf) and the live events."""
        self._prune()
        return {
            "left_max": _finite_or_none(self.left_max),
            "right_max": _finite_or_none(self.right_max),
            "watermark": _finite_or_none(self.watermark),
            "left": self.left.rows(),
            "right": self.right.rows(),
        }

    def restore(self, state: Any) -> None:
        self.reset()
        if state is None:
            return
        self.left_max = _or_minus_inf(state["left_max"])
        self.right_max = _or_minus_inf(state["right_max"])
        self.watermark = _or_minus_inf(state["watermark"])
        for buffer, rows in ((self.left, state["left"]), (self.right, state["right"])):
            for key, t, payload, event_time, ingest, topic, headers in rows:
                buffer.add(self.seq, key, (t, payload, event_time, ingest, topic, headers))
                self.seq += 1
        self._swept_size = len(self.left) + len(self.right)


def _finite_or_none(time: float) -> float | None:
    """JSON has no -inf: a side that has seen nothing (and its watermark) is null."""
    return None if time == -math.inf else time


def _or_minus_inf(time: float | None) -> float:
    return -math.inf if time is None else time


def _emit(out: Batch, into: Path, key: Key, left: Entry, right: Entry) -> None:
    """Append the pair: the left payload with the right one at `into`."""
    payload = writable(left[1])
    set_path(payload, into, right[1])
    out.append(payload, max(left[2], right[2]), max(left[3], right[3]), key, left[4], None, left[5])

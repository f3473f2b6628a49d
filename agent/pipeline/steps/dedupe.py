"""`dedupe`: drop an event whose identity was already seen within a time horizon.

Semantics (docs/pipelines.md):
  * Identity: the key (the `key` expression, else the event key) and the values of
    the `fields` expressions, or the whole payload when `fields` is empty, encoded as
    JSON with sorted object keys. So {"a": 1, "b": 2} equals {"b": 2, "a": 1}, but 1
    and 1.0 differ, as do 1 and true. The memory holds that text when it is at most 64
    bytes long (a message id), else its 128-bit BLAKE2b digest in hex (which cannot
    be mistaken for JSON text).
    A value JSON cannot encode (an integer beyond 64 bits) is compared by its Python
    text instead; if even that fails the event passes, counted `unhashable`.
  * With `fields`, an event for which every field is null or missing has no identity:
    it passes, counted `no_identity` (a schema change must not drop everything as
    duplicates of one another). An event without an identity (`no_identity`,
    `unhashable`) is otherwise ignored: it does not move the clock.
  * Clock: event time or ingest time (`time`). `newest` is the largest time seen.
    An identity is remembered from the event that passed with it until `newest` is
    more than `horizon` past that event's time (an entry at exactly newest - horizon
    is still remembered: the horizon is inclusive).
  * An event whose identity is remembered is a duplicate: dropped, counted
    `duplicates`. A duplicate does not refresh the remembered time, so a value
    repeated forever passes once per horizon instead of never again.
  * An event that passes is remembered, unless its time is already older than
    newest - horizon (a late event that nothing could still match).
  * At most `max_entries` identities are remembered; beyond it the one with the
    oldest time (first remembered among equal times) is forgotten, counted `evicted`.
  * An event whose clock time is not finite passes, is not remembered, `bad_time`.
Results depend only on the order of events, never on batching.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from hashlib import blake2b
from heapq import heappop, heappush
from typing import Any

import orjson

from agent.config.steps import DedupeStep
from agent.pipeline.batch import Batch
from agent.pipeline.columns import column, key_column
from agent.pipeline.expr import compile_expression
from agent.pipeline.operator import Operator, SideOutputs

INF = math.inf
_CANONICAL = orjson.OPT_SORT_KEYS
_SHORT = 64
"""Identities up to this many bytes are kept as their text: cheaper than hashing them."""
_FALLBACK = b"\x00"
"""Prefix of identities encoded with repr(), so they never collide with JSON text."""

Entry = tuple[float, int, str]
"""(remembered time, arrival sequence number, identity): compared, they order by age."""


class Dedupe(Operator):
    """Remembered identities: a set to look them up, and their entries by age.

    Entries are forgotten oldest first, by (time, arrival). Events come mostly in time
    order, so entries go to a deque that stays sorted by appending alone (O(1)); an
    entry older than the deque's last goes to a heap instead (O(log n)). The oldest
    entry is at the front of one of the two.
    """

    stateful = True

    def __init__(self, step: DedupeStep) -> None:
        super().__init__()
        self.key = None if step.key is None else compile_expression(step.key)
        self.fields = tuple(compile_expression(text) for text in step.fields)
        self.horizon = step.horizon
        self.use_ingest_time = step.time == "ingest"
        self.max_entries = step.max_entries
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh start)."""
        self.remembered: set[str] = set()
        self.in_order: deque[Entry] = deque()
        self.late: list[Entry] = []
        """A heap of the entries that arrived after a newer one."""
        self.next_seq = 0
        self.newest = -INF

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Keep the events whose identity is not remembered."""
        if not len(batch):
            return batch
        identities = self._identities(batch)
        times = batch.ingest if self.use_ingest_time else batch.times
        return batch.select(self._verdicts(identities, times))

    def _identities(self, batch: Batch) -> list[str | None]:
        """Every event's identity as text (None when it has none); see the module docstring."""
        keys = key_column(self.key, batch)
        parts: Iterator[tuple[Any, ...]]
        if self.fields:
            columns = [column(expression, batch) for expression in self.fields]
            parts, width = zip(keys, *columns, strict=True), len(columns)
        else:
            parts, width = zip(keys, batch.payloads, strict=True), 0
        dumps, option = orjson.dumps, _CANONICAL
        identities: list[str | None] = []
        found = identities.append
        missing = unhashable = 0
        for part in parts:
            if width and part.count(None) - (part[0] is None) == width:
                missing += 1
                found(None)
                continue
            data: bytes | None
            try:
                data = dumps(part, option=option)
            except TypeError:
                data = _fallback(part)
            if data is None:
                unhashable += 1
                found(None)
                continue
            if len(data) <= _SHORT:
                found(data.decode())
            else:
                found(blake2b(data, digest_size=16).hexdigest())
        self._tally(no_identity=missing, unhashable=unhashable)
        return identities

    def _verdicts(self, identities: list[str | None], times: list[float]) -> list[bool]:
        """The hot loop: forget what the horizon passed, then look each identity up."""
        remembered, in_order, late = self.remembered, self.in_order, self.late
        horizon, newest = self.horizon, self.newest
        cutoff = newest - horizon
        mask: list[bool] = []
        keep = mask.append
        duplicates = bad = evicted = 0
        for identity, t in zip(identities, times, strict=True):
            if identity is None:  # no identity: counted by _identities
                keep(True)
                continue
            if not -INF < t < INF:
                bad += 1
                keep(True)
                continue
            if t > newest:
                newest = t
                cutoff = t - horizon
                while in_order and in_order[0][0] < cutoff:
                    remembered.discard(in_order.popleft()[2])
                while late and late[0][0] < cutoff:
                    remembered.discard(heappop(late)[2])
            if identity in remembered:
                duplicates += 1
                keep(False)
            else:
                keep(True)
                if t >= cutoff:
                    evicted += self._remember(t, identity)
        self.newest = newest
        self._tally(duplicates=duplicates, bad_time=bad, evicted=evicted)
        return mask

    def _remember(self, t: float, identity: str) -> int:
        """Add an identity; forget the oldest one when the memory is full (returns 1 then)."""
        self.remembered.add(identity)
        entry = (t, self.next_seq, identity)
        self.next_seq += 1
        in_order = self.in_order
        if not in_order or t >= in_order[-1][0]:
            in_order.append(entry)
        else:
            heappush(self.late, entry)
        if len(self.remembered) <= self.max_entries:
            return 0
        late = self.late
        if late and (not in_order or late[0] < in_order[0]):
            oldest = heappop(late)
        else:
            oldest = in_order.popleft()
        self.remembered.discard(oldest[2])
        return 1

    def _tally(self, **counts: int) -> None:
        for name, n in counts.items():
            if n:
                self.count(name, n)

    def snapshot(self) -> Any:
        # Both lists are stored as they are: each keeps its order after a round trip.
        return {
            "newest": None if self.newest == -INF else self.newest,
            "next_seq": self.next_seq,
            "in_order": list(self.in_order),
            "late": self.late,
        }

    def restore(self, state: Any) -> None:
        self.reset()
        if state is None:
            return
        self.newest = -INF if state["newest"] is None else state["newest"]
        self.next_seq = state["next_seq"]
        self.in_order = deque((t, seq, identity) for t, seq, identity in state["in_order"])
        self.late = [(t, seq, identity) for t, seq, identity in state["late"]]
        self.remembered = {entry[2] for entry in self.in_order}
        self.remembered.update(entry[2] for entry in self.late)


def _fallback(part: Any) -> bytes | None:
    """repr() text of an identity JSON cannot encode; None if even that fails."""
    try:
        return _FALLBACK + repr(part).encode("utf-8", "replace")
    except Exception:  # e.g. RecursionError on an absurdly deep payload
        return None

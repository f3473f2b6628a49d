"""`join` of type table: add to each event the latest record of another stream with its key.

The other stream is read as a changelog, one table row per join key:
  * A record replaces the row of its key (`other_key`, default the event key); the
    latest in the other stream's order wins, whatever its event time.
  * A record whose payload is null is a tombstone: it deletes the row of its key.
  * At most `MAX_KEYS` rows are kept; a new key beyond that evicts the least recently
    updated row (counted `evicted`), so a stream with endless distinct keys cannot
    exhaust a Pi's memory.
Each pipeline event is looked up by its `key` (default the event key; a missing
field gives the key null, which is a key like any other). With a row, the event's
payload becomes a copy with the row's payload at `into` (a dotted path; default the
other stream's name, also read as a path, so ``calibration.offset`` reads it later).
Without one it passes with null there, or is dropped when `required`; both are
counted `unmatched`. A payload that is not an object becomes ``{"value": it}`` first.
The row's payload is shared, not copied, by the events it enriches: steps never
mutate a payload they did not create (see `agent.pipeline.fields`).

Which events see which rows depends on how the runner interleaves the two streams'
batches; the state always matches the committed cursors of both.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from agent.config.steps import JoinStep
from agent.pipeline.batch import Batch
from agent.pipeline.columns import key_column
from agent.pipeline.expr import compile_expression
from agent.pipeline.fields import parse_path, set_path, writable
from agent.pipeline.operator import Operator, SideOutputs

MAX_KEYS: Final = 100_000
"""Rows kept per table join: about 100 bytes of overhead each, plus the payloads."""


class TableJoin(Operator):
    """The latest payload per key of the other stream, in update order (oldest first)."""

    stateful = True

    def __init__(self, step: JoinStep, limit: int = MAX_KEYS) -> None:
        super().__init__()
        self.side_inputs = (step.stream,)
        self.key = compile_expression(step.key) if step.key is not None else None
        self.other_key = compile_expression(step.other_key) if step.other_key is not None else None
        self.into = parse_path(step.into if step.into is not None else step.stream)
        self.required = step.required
        self.limit = limit
        self.table: OrderedDict[str | None, Any] = OrderedDict()

    def absorb(self, stream: str, batch: Batch, side: SideOutputs) -> Batch:
        """Apply the records to the table; nothing flows on from the other stream itself."""
        table = self.table
        for key, payload in zip(key_column(self.other_key, batch), batch.payloads, strict=True):
            if payload is None:
                table.pop(key, None)
                continue
            table[key] = payload
            table.move_to_end(key)
            if len(table) > self.limit:  # per record, so batching cannot change what is kept
                table.popitem(last=False)
                self.count("evicted")
        return Batch.empty()

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """Each event with its key's row at `into` (or null, or dropped when `required`)."""
        if not len(batch):
            return batch
        table, into, required = self.table, self.into, self.required
        kept: list[int] = []
        payloads: list[Any] = []
        unmatched = 0
        keys = key_column(self.key, batch)
        for i, (key, payload) in enumerate(zip(keys, batch.payloads, strict=True)):
            record = table.get(key)
            if record is None:
                unmatched += 1
                if required:
                    continue
            joined = writable(payload)
            set_path(joined, into, record)
            kept.append(i)
            payloads.append(joined)
        if unmatched:
            self.count("unmatched", unmatched)
        out = batch.take(kept)
        out.payloads = payloads
        out.raw = [None] * len(payloads)
        return out

    def snapshot(self) -> Any:
        """``{"rows": [[key, payload], ...]}`` oldest update first (keys may be null)."""
        return {"rows": [[key, payload] for key, payload in self.table.items()]}

    def restore(self, state: Any) -> None:
        self.table = OrderedDict()
        if state is not None:
            self.table.update((key, payload) for key, payload in state["rows"])

"""The contract between the runner and every pipeline step.

A step is an `Operator`: it takes a batch and returns the batch that flows on to
the next step. Events a step sends elsewhere (a route, late events to a side
stream) go to `SideOutputs`, which the runner appends in the same transaction as
the main output. A stateful step keeps its state in memory, snapshots it to bytes
and restores it; the runner commits every snapshot with the cursor (promise 4), so
after a crash each step restarts from the state that matches the committed cursor.

Rules every step follows:
  * ``process`` never raises on bad input: a value of the wrong type or a missing
    field is handled (counted, passed or dropped as the step documents).
  * Results depend only on the events and the state, never on how the input was
    cut into batches (a restart re-batches the same events differently). Steps
    that act on processing time (``idle``) are the documented exception.
  * ``snapshot`` returns JSON-able data encoded as bytes; ``restore`` accepts it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from agent.pipeline.batch import Batch


class SideOutputs:
    """Events a step sends to streams other than the pipeline's output."""

    def __init__(self) -> None:
        self.streams: defaultdict[str, Batch] = defaultdict(Batch.empty)

    def send(self, stream: str, batch: Batch) -> None:
        """Queue ``batch`` for ``stream``; order is kept per stream."""
        if len(batch):
            self.streams[stream].extend(batch)


class Operator:
    """Base of every step; stateless steps override `process` only."""

    stateful = False
    """Whether the runner snapshots this step."""

    side_inputs: tuple[str, ...] = ()
    """Other streams this step reads (joins); the runner feeds them to `absorb`."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter (late, dropped, suppressed...) shown in stats."""
        self.counters[name] = self.counters.get(name, 0) + n

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        """The events that continue after this step."""
        raise NotImplementedError

    def idle(self, now: float, side: SideOutputs) -> Batch:
        """Events released because processing time passed (``now`` is wall-clock
        epoch seconds); called while the input is quiet. Default: nothing."""
        return Batch.empty()

    def absorb(self, stream: str, batch: Batch, side: SideOutputs) -> Batch:
        """Take a batch of a side input; return events that continue downstream."""
        return Batch.empty()

    def snapshot(self) -> Any:
        """The state as JSON-able data (committed with the cursor)."""
        return None

    def restore(self, state: Any) -> None:
        """Load what `snapshot` returned; ``None`` means a fresh start."""

    def has_pending(self) -> bool:
        """Whether `idle` could release anything (open windows, held events)."""
        return False

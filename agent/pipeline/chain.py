"""The steps of one pipeline in order, run batch by batch.

A step receives the batch the previous step returned and owns it (it may change
its columns in place). Events a step releases on its own — on a side input (a
join) or on processing time (idle windows, held events) — enter the chain right
after that step, so they pass through the same later steps as every other event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from agent.pipeline.batch import Batch
from agent.pipeline.operator import Operator, SideOutputs


class Chain:
    """Runs a batch through the operators; see the module docstring."""

    def __init__(self, operators: Sequence[Operator]) -> None:
        self.operators = list(operators)

    def process(self, batch: Batch, side: SideOutputs, start: int = 0) -> Batch:
        """The events that leave the last step, for ``batch`` entering step ``start``."""
        for operator in self.operators[start:] if start else self.operators:
            if not batch.payloads:
                return batch
            batch = operator.process(batch, side)
        return batch

    def absorb(self, index: int, stream: str, batch: Batch, side: SideOutputs) -> Batch:
        """Feed a side input to step ``index``; what it releases runs through the rest."""
        released = self.operators[index].absorb(stream, batch, side)
        return self.process(released, side, index + 1)

    def idle(self, now: float, side: SideOutputs) -> Batch:
        """Let every step release what processing time ``now`` (monotonic) makes due."""
        carry = Batch.empty()
        for operator in self.operators:
            if len(carry):
                carry = operator.process(carry, side)
            released = operator.idle(now, side)
            if len(released):
                carry.extend(released)
        return carry

    def flush(self, side: SideOutputs) -> Batch:
        """End of input: release everything still open or held (tests, benchmarks)."""
        return self.idle(math.inf, side)

    def has_pending(self) -> bool:
        """Whether any step holds something `idle` could release."""
        return any(operator.has_pending() for operator in self.operators)

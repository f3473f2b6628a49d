"""`filter`: keep the events for which a condition is true."""

from __future__ import annotations

from agent.config.steps import FilterStep
from agent.pipeline.batch import Batch
from agent.pipeline.columns import column
from agent.pipeline.expr import compile_predicate
from agent.pipeline.operator import Operator, SideOutputs


class Filter(Operator):
    """Evaluates the condition over the whole batch, then keeps the matching events."""

    def __init__(self, step: FilterStep) -> None:
        super().__init__()
        self.predicate = compile_predicate(step.expr)

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        kept = batch.select(column(self.predicate, batch))
        dropped = len(batch.payloads) - len(kept.payloads)
        if dropped:
            self.count("dropped", dropped)
        return kept

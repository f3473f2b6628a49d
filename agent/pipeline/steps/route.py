"""`route`: send events to other streams by condition; the first matching rule wins."""

from __future__ import annotations

from agent.config.steps import RouteStep
from agent.pipeline.batch import Batch
from agent.pipeline.columns import column
from agent.pipeline.expr import compile_predicate
from agent.pipeline.operator import Operator, SideOutputs


class Route(Operator):
    """Events matching a rule go to its stream; the rest (or all, with copy) continue."""

    def __init__(self, step: RouteStep) -> None:
        super().__init__()
        self.rules = [(compile_predicate(rule.when), rule.to) for rule in step.rules]
        self.copy = step.copy

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        undecided = list(range(len(batch)))
        for predicate, stream in self.rules:
            if not undecided:
                break
            verdicts = column(predicate, batch.take(undecided))
            matched = [i for i, hit in zip(undecided, verdicts, strict=True) if hit]
            if matched:
                side.send(stream, batch.take(matched))
                self.count(f"routed:{stream}", len(matched))
                undecided = [i for i, hit in zip(undecided, verdicts, strict=True) if not hit]
        if self.copy:
            return batch
        return batch.take(undecided)

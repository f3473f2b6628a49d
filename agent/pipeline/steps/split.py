"""`split`: one event holding an array becomes one event per element."""

from __future__ import annotations

from typing import Any

from agent.config.steps import SplitStep
from agent.pipeline.batch import Batch
from agent.pipeline.fields import get_path, parse_path, pop_path, set_path, writable
from agent.pipeline.operator import Operator, SideOutputs


class Split(Operator):
    """Elements inherit the event's time, key and topic; an event without the array passes.

    An event whose field is missing or not an array is passed unchanged and counted
    (`not_array`), so a sensor that sometimes sends a single reading loses nothing;
    an empty array yields no event (counted `empty`).
    """

    def __init__(self, step: SplitStep) -> None:
        super().__init__()
        self.path = parse_path(step.field)
        self.element_path = parse_path(step.element_field)
        self.index_path = parse_path(step.index_field) if step.index_field else None
        self.keep_parent = step.keep_parent

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        out = Batch.empty()
        for i, payload in enumerate(batch.payloads):
            items = get_path(payload, self.path)
            if type(items) is not list:
                self.count("not_array")
                out.extend(batch.take([i]))
                continue
            if not items:
                self.count("empty")
            parent = self._parent(payload)
            for index, item in enumerate(items):
                out.append(
                    self._element(parent, item, index),
                    batch.times[i],
                    batch.ingest[i],
                    batch.keys[i],
                    batch.topics[i],
                    None,
                    batch.headers[i],
                )
        return out

    def _parent(self, payload: Any) -> dict[str, Any]:
        if not self.keep_parent:
            return {}
        parent = writable(payload)
        pop_path(parent, self.path)
        return parent

    def _element(self, parent: dict[str, Any], item: Any, index: int) -> dict[str, Any]:
        element = dict(parent)
        if type(item) is dict:
            element.update(item)
        else:
            set_path(element, self.element_path, item)
        if self.index_path is not None:
            set_path(element, self.index_path, index)
        return element

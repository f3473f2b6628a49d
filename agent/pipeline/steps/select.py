"""`select`: keep only the listed fields of each payload."""

from __future__ import annotations

from typing import Any

from agent.config.steps import SelectStep
from agent.pipeline.batch import Batch
from agent.pipeline.fields import MISSING, Path, get_path, parse_path, set_path
from agent.pipeline.operator import Operator, SideOutputs


class Select(Operator):
    """Builds a new payload from the kept paths; events without any of them become ``{}``."""

    def __init__(self, step: SelectStep) -> None:
        super().__init__()
        self.paths: list[Path] = [parse_path(f) for f in step.fields]

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        batch.payloads = [self._project(p) for p in batch.payloads]
        batch.raw = [None] * len(batch)
        return batch

    def _project(self, payload: Any) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for path in self.paths:
            value = get_path(payload, path)
            if value is not MISSING:
                set_path(kept, path, value)
        return kept

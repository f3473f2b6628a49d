"""What every window kind shares: its settings, result events, late events, idle keys."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.pipeline.batch import Batch
from agent.pipeline.columns import key_column
from agent.pipeline.expr import Expression
from agent.pipeline.operator import SideOutputs
from agent.pipeline.windows.aggregation import AggregateSet


@dataclass(frozen=True, slots=True)
class WindowSettings:
    """The parts of a window step that do not depend on its kind."""

    aggregates: AggregateSet
    key: Expression | None = None
    use_ingest_time: bool = False
    lateness: float = 0.0
    idle: float = float("inf")
    late_stream: str | None = None

    def keys(self, batch: Batch) -> list[str | None]:
        """The grouping key of every event."""
        return key_column(self.key, batch)

    def times(self, batch: Batch) -> list[float]:
        """The clock the windows follow, per event."""
        return batch.ingest if self.use_ingest_time else batch.times


def result_event(
    out: Batch, key: str | None, start: float, end: float, values: dict[str, Any]
) -> None:
    """Append one closed window as an event: key, bounds, then the aggregates.

    The event time of a result is the window's end, so downstream windows and the
    uplink order results the way they happened.
    """
    payload = {"key": key, "window_start": start, "window_end": end}
    payload.update(values)
    out.append(payload, end, time.time(), key)


def send_late(settings: WindowSettings, batch: Batch, late: list[int], side: SideOutputs) -> None:
    """Late events go to the side stream when one is configured (else they are only counted)."""
    if late and settings.late_stream is not None:
        side.send(settings.late_stream, batch.take(late))


class KeyActivity:
    """When each key last had an event, on the processing-time (monotonic) clock.

    In memory only: after a restart every key with open windows counts as seen at
    the restart, so an idle timeout never fires early because of the downtime.
    """

    def __init__(self) -> None:
        self.last_seen: dict[str | None, float] = {}

    def touch(self, keys: list[str | None], now: float) -> None:
        """Mark the keys of a batch as active."""
        self.last_seen.update(dict.fromkeys(keys, now))

    def silent(self, now: float, idle: float) -> set[str | None]:
        """Keys without an event for at least ``idle`` seconds."""
        return {key for key, seen in self.last_seen.items() if now - seen >= idle}

    def forget(self, keys: set[str | None]) -> None:
        """Stop tracking keys whose windows are all closed."""
        for key in keys:
            self.last_seen.pop(key, None)

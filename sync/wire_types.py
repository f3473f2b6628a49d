"""The types every wire version shares: the batch a hub commits and the decode error.

They live apart from `sync.wire` so that each version's codec module can import them
without importing the dispatcher that imports it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sync.outbox import Gap, StoredEvent


class WireFormatError(ValueError):
    """A batch that cannot be decoded; the message says why (the hub sends it back)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One stream's events from one device, as the hub commits them."""

    device: str
    epoch: str
    stream: str
    events: Sequence[StoredEvent]
    gaps: Sequence[Gap]
    upto_seq: int
    sent_at: float | None = None
    """The device's clock when it encoded the batch (version 2 on); the hub's estimate of
    the device's clock skew. Not part of the batch's identity: a retry may differ."""

    @property
    def batch_id(self) -> str:
        """Deterministic id: a retried batch has the same id as its first try."""
        first = self.events[0].seq if self.events else self.upto_seq
        return f"{self.epoch}:{self.stream}:{first}-{self.upto_seq}"

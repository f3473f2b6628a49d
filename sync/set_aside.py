"""Events left in a corrupt queue file, reported to the hub as a gap of the old epoch.

A queue database that fails its integrity check at start is moved aside and the agent
starts a new epoch (agent/queue/integrity.py). The file is kept, but without this the
hub would never learn that the old epoch's unsent events are not coming: centrally the
old epoch would just stop, like a device that has not sent yet (found by the chaos
scenario). So at the switch the agent reads, best effort, each uplink stream's last
sequence number and uplink cursor from the old file, and the uplink sends the range
between them to the hub as an event-less batch of the OLD epoch holding one gap with
reason `set_aside`. The hub records it like any other gap: the loss is explicit,
counted and dated, and an operator who recovers the file (`sqlite3 .recover`) knows
exactly which numbers to look for.

The pending ranges live in the new queue's state table under the uplink's owner, so a
crash before the hub acknowledged one sends it again (the hub keeps gaps idempotently).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from sync.outbox import Gap
from sync.wire_types import Batch

STATE_PREFIX: Final = "set_aside."
"""State names `set_aside.<epoch>.<stream>` under the uplink's owner; empty when sent."""
REASON: Final = "set_aside"


@dataclass(frozen=True, slots=True)
class SetAsideRange:
    """Sequence numbers of one stream of an old epoch that never reached the hub."""

    epoch: str
    stream: str
    first_seq: int
    last_seq: int
    recorded_at: float

    @property
    def state_name(self) -> str:
        """Its name in the uplink's state."""
        return f"{STATE_PREFIX}{self.epoch}.{self.stream}"

    def to_bytes(self) -> bytes:
        """The state value that keeps it until the hub has it."""
        return orjson.dumps(
            [self.epoch, self.stream, self.first_seq, self.last_seq, self.recorded_at]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SetAsideRange:
        """Read back a saved range (ValueError when it is not one)."""
        try:
            epoch, stream, first, last, at = orjson.loads(data)
            return cls(str(epoch), str(stream), int(first), int(last), float(at))
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"not a set-aside range: {exc}") from exc

    def batch(self, device: str, sent_at: float) -> Batch:
        """The event-less batch of the old epoch that carries the gap to the hub."""
        gap = Gap(self.first_seq, self.last_seq, REASON, self.recorded_at)
        return Batch(device, self.epoch, self.stream, [], [gap], self.last_seq, sent_at)


def pending(saved: dict[str, bytes]) -> list[SetAsideRange]:
    """The ranges not yet acknowledged by the hub, from the uplink's saved state."""
    found = []
    for name, value in sorted(saved.items()):
        if name.startswith(STATE_PREFIX) and value:
            found.append(SetAsideRange.from_bytes(value))
    return found

"""The uplink's durable state (acked ranges, today's byte count), saved behind the sends.

Saving before each publish would pace the drain by the queue's group-commit interval.
Instead the latest value of each named piece is kept here and one companion task
commits whatever changed, coalesced, much like the cursor commits. What a crash can
forget is bounded by one commit interval: a few acked ranges (their batches are sent
again, the hub drops them as duplicates) and the bytes of the batches published in it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from sync.backoff import retry_until_done
from sync.outbox import Outbox

log = logging.getLogger(__name__)

OWNER: Final = "uplink"
"""The owner name of the uplink's rows in the queue's state table."""


def ranges_key(stream: str) -> str:
    """The state name of one stream's acked ranges."""
    return f"acked_ranges.{stream}"


class StateWriter:
    """Latest unsaved values by name, and the task that commits them."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._dirty: dict[str, bytes] = {}
        self._changed = asyncio.Event()

    async def load(self) -> dict[str, bytes]:
        """Everything the uplink saved before this start."""
        return await self._outbox.load_state(OWNER)

    def put(self, name: str, value: bytes) -> None:
        """Remember a new value; the next commit saves it (a newer put replaces it)."""
        self._dirty[name] = value
        self._changed.set()

    async def run(self) -> None:
        """Commit changed values until cancelled."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.flush()

    async def flush(self) -> None:
        """Commit what changed since the last commit, retrying until it is saved."""
        values, self._dirty = self._dirty, {}
        if not values:
            return
        try:
            await retry_until_done(
                lambda: self._outbox.save_state(OWNER, values),
                what="Saving the uplink state",
                errors=(Exception,),  # the outbox's own error type belongs to the agent
                logger=log,
            )
        except asyncio.CancelledError:
            self._dirty = {**values, **self._dirty}
            raise

"""Batch size that follows the link: additive increase on fast acks, halving on timeouts (AIMD).

A fixed batch size is wrong on a flaky link in both directions: a large batch that cannot
cross a slow cellular link within `ack_timeout` times out and is resent forever, while
a small one wastes round trips on a good link. Like TCP's congestion window, the size
grows by a step while acks come back within a quarter of `ack_timeout` and halves after
a timeout or a publish failure, between `minimum` and `maximum` events. It starts at
`maximum`, so a good link drains at full speed from the first batch.
"""

from __future__ import annotations

from typing import Final

FAST_ACK_SHARE: Final = 0.25
"""An ack within this share of `ack_timeout` counts as fast: the link has room to spare."""


class BatchSizer:
    """The current batch size (in events) of one stream."""

    def __init__(self, minimum: int, maximum: int, ack_timeout: float, adaptive: bool = True):
        self.minimum = min(minimum, maximum)
        self.maximum = maximum
        self.size = maximum
        self.step = max(self.minimum, maximum // 10)
        self._fast = ack_timeout * FAST_ACK_SHARE
        self._adaptive = adaptive

    def acked(self, round_trip: float, events: int) -> None:
        """A batch was acked `round_trip` seconds after its publish: grow if that was fast.

        Only a full batch says the link could carry more: a batch cut short by a
        quiet stream proves nothing about the size, so it does not grow it.
        """
        if self._adaptive and round_trip <= self._fast and events >= self.size:
            self.size = min(self.maximum, self.size + self.step)

    def failed(self) -> None:
        """A publish failed or its ack timed out: halve, down to `minimum`."""
        if self._adaptive:
            self.size = max(self.minimum, self.size // 2)

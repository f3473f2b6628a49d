"""A token bucket per topic, so one runaway publisher cannot flood a stream or the disk.

Buckets are kept for the most recently seen topics only (bounded memory however many
topics appear): a topic whose bucket was evicted starts again with a full bucket,
which at worst lets one extra burst through. Time is the message's arrival time, so
the decision does not depend on when the store loop gets to the message; a wall clock
stepped back (an NTP correction) mints no tokens for the step and refills from the new
time on, instead of starving the topic until the clock catches up.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

MAX_TOPICS: Final = 10_000


class TopicRateLimiter:
    """Allows `per_second` messages per topic on average and `capacity` at once."""

    def __init__(self, per_second: float, capacity: float, max_topics: int = MAX_TOPICS) -> None:
        self._rate = per_second
        self._capacity = capacity
        self._max_topics = max_topics
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """topic -> (tokens, time of the last update)."""

    def allow(self, topic: str, now: float) -> bool:
        """Take one token from the topic's bucket; False when it is empty."""
        tokens, last = self._buckets.pop(topic, (self._capacity, now))
        tokens = min(self._capacity, tokens + max(0.0, now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[topic] = (tokens, now)  # a clock stepped back refills from `now` on
        if len(self._buckets) > self._max_topics:
            self._buckets.popitem(last=False)
        return allowed

    @property
    def topics(self) -> int:
        """Topics with a bucket right now."""
        return len(self._buckets)

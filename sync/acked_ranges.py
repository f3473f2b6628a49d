"""What the hub has acked of one stream: a contiguous prefix (the cursor) plus ranges above it.

A queue cursor marks a contiguous prefix only, and retention deletes an event once
every consumer's cursor has passed it. Draining newest first acks ranges above the
cursor; they are remembered here (and saved in the queue's state table, so a restart
does not send them again) while the cursor moves only over the contiguous prefix.

Ranges are half-open on the left, `(after, upto]`, like a batch: it covers the
sequence numbers after its read position up to its `upto_seq`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass(slots=True)
class AckedRanges:
    """The cursor and the sorted, disjoint, non-adjacent acked ranges above it."""

    cursor: int
    ranges: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def restore(cls, cursor: int, saved: bytes | None) -> AckedRanges:
        """Rebuild from the committed cursor and the saved ranges (either may be behind)."""
        acked = cls(cursor)
        for after, upto in orjson.loads(saved) if saved else []:
            acked.add(int(after), int(upto))
        return acked

    def snapshot(self) -> bytes:
        """The ranges above the cursor, for the state table."""
        return orjson.dumps(self.ranges)

    @property
    def top(self) -> int:
        """The highest acked sequence number: nothing above it was acked."""
        return self.ranges[-1][1] if self.ranges else self.cursor

    def add(self, after: int, upto: int) -> None:
        """Record an acked range, merge neighbours, and move the cursor over the prefix."""
        if upto <= self.cursor:
            return
        merged = [(max(after, self.cursor), upto)]
        for lo, hi in self.ranges:
            if hi < merged[0][0] or lo > merged[0][1]:
                merged.append((lo, hi))
            else:
                merged[0] = (min(lo, merged[0][0]), max(hi, merged[0][1]))
        merged.sort()
        if merged[0][0] <= self.cursor:
            self.cursor = merged.pop(0)[1]
        self.ranges = merged

    def first_hole(self) -> tuple[int, int] | None:
        """The oldest unacked stretch below the top: (read after, stop before), or None.

        Backfill reads after the cursor and stops before the first acked range, so the
        next ack joins the cursor to that range (oldest first: the cursor moves, and
        retention can free disk as the backfill goes).
        """
        if not self.ranges:
            return None
        return self.cursor, self.ranges[0][0] + 1

"""Log a repeating condition a few times, never once per occurrence.

A broker that is down for a day, a sensor that is unplugged, a device that keeps
sending a batch the hub refuses: each fails again every few seconds, and a line per
failure would bury everything else in the journal (and wear the SD card). So a
condition is logged when it starts (WARNING), when it changes into another one, then
at most once per summary interval while it repeats, with the count since the last
line, and once when it clears (INFO, with the total count and how long it lasted).

Lines are written only when a failure or a success is reported, never by a timer:
nothing runs in the background and a condition nobody reports costs nothing.

Several conditions can be tracked at once, each under a key (a device and a reason
class on the hub, a topic on an output). The number of keys is bounded: when a new
key arrives at the limit, the least recently failing one is forgotten (and counted in
`evictions`), so a fleet of hostile or broken devices cannot grow the hub's memory.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

_LOG = logging.getLogger(__name__)

DEFAULT_SUMMARY_INTERVAL = 300.0
"""Seconds between two "still ..." lines of one repeating condition (5 minutes)."""

DEFAULT_MAX_KEYS = 1024

_summary_interval = DEFAULT_SUMMARY_INTERVAL


def set_summary_interval(seconds: float) -> None:
    """Change the interval of every log that was not given its own (setup_logging does)."""
    global _summary_interval  # noqa: PLW0603 - one process-wide logging setting
    if seconds <= 0:
        msg = f"The log summary interval must be positive, got {seconds}"
        raise ValueError(msg)
    _summary_interval = seconds


def summary_interval() -> float:
    """The process-wide summary interval in seconds."""
    return _summary_interval


@dataclass(frozen=True, slots=True)
class Wording:
    """The three lines of a condition, as %-templates over a mapping.

    Fields: subject, detail (the latest), key, count (failures since the last line,
    with thousands separators), interval (time since the last line), total (failures
    since the start), repeats (failures of the current condition after its first),
    duration (since the start); plus any fields given to the ConditionLog.
    """

    started: str = "%(subject)s: %(detail)s"
    still: str = "%(subject)s: still %(detail)s: %(count)s more times in the last %(interval)s"
    cleared: str = "%(subject)s: cleared after %(total)s failure(s) in %(duration)s: %(detail)s"


@dataclass(slots=True)
class _Episode:
    """One condition from its first failure to the success that clears it."""

    kind: str
    detail: str
    level: int
    started: float
    last_line: float
    unreported: int = 0
    total: int = 1
    repeats: int = 0
    fields: Mapping[str, object] | None = None


class ConditionLog:
    """Rate-limited logging of conditions that start, repeat and clear (see the module doc).

    Args:
        subject: who has the condition ("uplink", a source name); in every line.
        logger: where the lines go (this module's logger by default).
        wording: the templates of the started, still and cleared lines.
        summary_interval: seconds between "still" lines; None follows the process-wide
            setting (`set_summary_interval`), read at each failure.
        max_keys: how many keys are tracked at once before the oldest is forgotten.
        clock: monotonic seconds, injectable for tests.
        level: level of the started and still lines (cleared lines are INFO).
        fields: extra fixed fields for the templates (a broker url).
    """

    def __init__(
        self,
        subject: str,
        *,
        logger: logging.Logger | None = None,
        wording: Wording = Wording(),
        summary_interval: float | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
        fields: dict[str, object] | None = None,
    ) -> None:
        if max_keys < 1:
            msg = f"ConditionLog needs max_keys >= 1, got {max_keys}"
            raise ValueError(msg)
        self.subject = subject
        self.logger = logger if logger is not None else _LOG
        self.wording = wording
        self.max_keys = max_keys
        self.level = level
        self.evictions = 0
        """Keys forgotten because max_keys was reached (their clear line is never written)."""
        self._interval = summary_interval
        self._clock = clock
        self._fields = dict(fields or {})
        self._episodes: OrderedDict[Hashable, _Episode] = OrderedDict()

    def __len__(self) -> int:
        return len(self._episodes)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._episodes

    def failed(
        self,
        detail: str,
        *,
        key: Hashable = None,
        kind: str | None = None,
        level: int | None = None,
        fields: Mapping[str, object] | None = None,
    ) -> None:
        """Record one failure; logs only at a start, a change, or when a summary is due.

        `kind` says which condition this is (default: the detail itself); a failure of
        another kind than the current one under `key` is a change and logged at once,
        one of the same kind only counts (its detail is kept for the next line).
        `fields` are template fields of this key (a device, a topic), the latest kept.
        """
        now = self._clock()
        kind = detail if kind is None else kind
        level = self.level if level is None else level
        episode = self._episodes.get(key)
        if episode is None:
            self._start(key, _Episode(kind, detail, level, now, now, fields=fields), now)
            return
        self._episodes.move_to_end(key)
        episode.total += 1
        episode.detail = detail
        if fields is not None:
            episode.fields = fields
        if kind != episode.kind:
            episode.kind, episode.level, episode.repeats = kind, level, 0
            episode.unreported, episode.last_line = 0, now
            self._emit(episode.level, self.wording.started, key, episode, now, "changed")
            return
        episode.repeats += 1
        episode.unreported += 1
        if now - episode.last_line >= self._summary_interval():
            self._emit(episode.level, self.wording.still, key, episode, now, "still")
            episode.unreported, episode.last_line = 0, now

    def cleared(self, key: Hashable = None) -> bool:
        """Record a success; logs the end of the condition once. True if one was active."""
        episode = self._episodes.pop(key, None)
        if episode is None:
            return False
        self._emit(logging.INFO, self.wording.cleared, key, episode, self._clock(), "cleared")
        return True

    def cleared_where(self, matches: Callable[[Hashable], bool]) -> int:
        """Clear every condition whose key matches (all of a device's reasons); how many."""
        if not self._episodes:
            return 0
        keys = [key for key in self._episodes if matches(key)]
        for key in keys:
            self.cleared(key)
        return len(keys)

    def started_at(self, key: Hashable = None) -> float | None:
        """Clock time at which the condition under `key` started, or None if none is active."""
        episode = self._episodes.get(key)
        return None if episode is None else episode.started

    def _start(self, key: Hashable, episode: _Episode, now: float) -> None:
        if len(self._episodes) >= self.max_keys:
            self._episodes.popitem(last=False)
            self.evictions += 1
        self._episodes[key] = episode
        self._emit(episode.level, self.wording.started, key, episode, now, "started")

    def _summary_interval(self) -> float:
        return _summary_interval if self._interval is None else self._interval

    def _emit(
        self, level: int, template: str, key: Hashable, episode: _Episode, now: float, event: str
    ) -> None:
        if not self.logger.isEnabledFor(level):
            return
        values: dict[str, Any] = {
            **self._fields,
            **(episode.fields or {}),
            "subject": self.subject,
            "detail": episode.detail,
            "key": "" if key is None else str(key),
            "count": f"{episode.unreported:,}",
            "interval": format_span(now - episode.last_line),
            "total": f"{episode.total:,}",
            "repeats": episode.repeats,
            "duration": format_span(now - episode.started),
        }
        extra = {
            "condition": event,
            "count": episode.unreported if event == "still" else episode.total,
            "duration_s": round(now - episode.started, 3),
        }
        self.logger.log(level, template, values, extra=extra)


def format_span(seconds: float) -> str:
    """A readable length of time for a log line: `0.4s`, `12s`, `5 min`, `2.5 h`."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return _trimmed(seconds / 60) + " min"
    return _trimmed(seconds / 3600) + " h"


def _trimmed(value: float) -> str:
    """One decimal, without a trailing `.0`."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text

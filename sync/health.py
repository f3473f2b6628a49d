"""Readiness checks shared by the agent and the hub, each answering why it is not ready.

A readiness probe that only says 503 sends the operator to the logs; these return
sentences instead ("broker mqtt://hub:1883 unreachable for 95 s"), served as the
JSON list of /readyz. They are cheap (a statvfs, an access check, a clock read), since
a probe may ask every few seconds.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path


class DownTimer:
    """How long something has been seen down, observed at each readiness check.

    The time counts from the first check that saw it down (or from the timer's
    creation, so a broker never reached counts from start), so it is late by at most
    one probe interval, at no cost on the connection's own path.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down_since: float | None = clock()

    def copy(self) -> DownTimer:
        """A timer with the same state, to watch another connection from the same start."""
        twin = DownTimer(self._clock)
        twin._down_since = self._down_since
        return twin

    def down_for(self, up: bool) -> float:
        """Seconds it has been down; 0 while up."""
        now = self._clock()
        if up:
            self._down_since = None
            return 0.0
        if self._down_since is None:
            self._down_since = now
        return now - self._down_since


def connection_reason(what: str, timer: DownTimer, up: bool, grace: float) -> str | None:
    """Why a connection makes the process not ready, or None."""
    down = timer.down_for(up)
    if up or down < grace:
        return None
    return f"{what} not connected for {down:.0f} s"


def disk_reason(folder: str | Path, min_free: int) -> str | None:
    """Why the file system of `folder` makes the process not ready, or None."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as error:
        return f"cannot read free space of {folder}: {error.strerror}"
    if free < min_free:
        return f"disk nearly full: {free} bytes free in {folder}, below {min_free}"
    return None


def writable_reason(path: str | Path, what: str) -> str | None:
    """Why the database at `path` cannot be written (read-only mount or file), or None."""
    target = Path(path)
    try:
        if os.statvfs(target.parent).f_flag & os.ST_RDONLY:
            return f"{what} is read-only: {target.parent} is mounted read-only"
    except OSError as error:
        return f"{what} folder {target.parent} unusable: {error.strerror}"
    for candidate in (target, target.parent):
        if candidate.exists() and not os.access(candidate, os.W_OK):
            return f"{what} is read-only: no write permission on {candidate}"
    return None

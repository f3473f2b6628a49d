"""Named crash points for tests that must kill a process at an exact protocol step.

A SIGKILL sent from outside lands at a random instant; the hub-between-commit-and-ack
case needs the kill at one precise line. `EDGESTREAM_FAILPOINTS="hub.after_commit=kill@3"`
makes the third pass through `failpoint("hub.after_commit")` SIGKILL its own process:
a real kill of a real process, no mock. Unset (production), a failpoint costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_ENV = "EDGESTREAM_FAILPOINTS"
_hits: dict[str, int] = {}


def _armed() -> dict[str, int]:
    spec = os.environ.get(_ENV, "")
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        _kind, _, nth = action.partition("@")
        armed[name] = int(nth or "1")
    return armed


_ARMED = _armed()


def failpoint(name: str) -> None:
    """SIGKILL this process when the named failpoint is armed and reached N times."""
    nth = _ARMED.get(name)
    if nth is None:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == nth:
        os.kill(os.getpid(), signal.SIGKILL)

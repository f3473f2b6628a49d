"""systemd's service protocol: readiness, status, stopping, and the watchdog.

With `Type=notify` systemd waits for `READY=1` before it calls the service started
(units ordered after it start only then), shows `STATUS=` in `systemctl status`, and
with `WatchdogSec=` restarts a service that stops sending `WATCHDOG=1` (a hung event
loop, a deadlock). The protocol is one datagram per message to the unix socket named by
`$NOTIFY_SOCKET` (a leading `@` is Linux's abstract namespace); without that variable
(not under systemd) every call does nothing. No library needed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(*fields: str) -> bool:
    """Send `KEY=value` fields in one datagram; False when not under systemd or it failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:
        log.warning("Cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """How often to ping the watchdog (half of `WatchdogSec`), or None when it is off.

    `WATCHDOG_PID`, when set, names the process systemd watches: another process (a
    child that inherited the environment) must not ping on its behalf.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        log.warning("Ignoring WATCHDOG_USEC=%r: not a number of microseconds", usec)
        return None


async def keep_watchdog_fed(healthy: Callable[[], str | None]) -> None:
    """Ping `WATCHDOG=1` every half period while `healthy()` returns None.

    `healthy` returns the reason the process is stuck (a dead writer thread), or None;
    while it reports a reason the pings stop, so systemd restarts the service after
    `WatchdogSec`. The pings come from the event loop itself: a blocked loop stops them.
    """
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        problem = healthy()
        if problem is None:
            notify("WATCHDOG=1")
        else:
            log.error("Watchdog not fed: %s", problem)
        await asyncio.sleep(interval)

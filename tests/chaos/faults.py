"""The seeded fault schedule of a chaos scenario, and the code that applies each fault.

A schedule is a pure function of (seed, duration, kinds): the same seed gives the same
faults at the same offsets with the same parameters, so a failing run can be replayed.
Faults are applied one after another (never two at once), each followed by a quiet
interval, so a finding can be traced to the fault in flight when it happened; the
system under test still sees overlapping effects (a backlog from one fault is still
draining when the next one starts).
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tests.brokers import MosquittoBroker
from tests.chaos.device import DeviceClock, SetAside, SmallDisk, corrupt_queue
from tests.chaos.proxy import ChaosProxy
from tests.nats import NatsServer

KINDS: tuple[str, ...] = (
    "agent_kill",  # SIGKILL of the agent, restarted after a short down time
    "hub_kill",  # SIGKILL of the hub, restarted
    "broker_kill",  # SIGKILL of the central Mosquitto (persistence on), restarted
    "agent_pause",  # SIGSTOP ... SIGCONT of the agent: a hung process
    "hub_pause",  # SIGSTOP ... SIGCONT of the hub
    "partition",  # uplink connections closed and refused
    "blackhole",  # uplink connections open but silent
    "slow_link",  # uplink delayed per chunk
    "throttle",  # uplink limited in bytes per second
    "link_drop",  # every uplink connection closed once (a flap)
)
DEVICE_KINDS: tuple[str, ...] = (
    "clock_jump",  # the agent's wall clock steps forward or back, then back to true time
    "disk_full",  # the agent's data_dir filesystem is filled up, then freed
    "queue_corrupt",  # agent killed, a page of its queue database overwritten, restarted
)
STORE_KINDS: tuple[str, ...] = ("store_kill",)
"""With JetStream as the central store: SIGKILL of nats-server, restarted."""
QUIET = (1.0, 5.0)
"""Seconds between the end of one fault and the start of the next."""
HOLD = (1.0, 8.0)
"""Seconds a fault lasts (a kill: the down time before the restart)."""
HOLDS = {"blackhole": (6.0, 15.0)}
"""Kinds that last longer: a black hole outlasts the uplink's keepalive (5 s, x1.5)."""


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault: when it starts (seconds from the start), what, how long, its parameter."""

    at: float
    kind: str
    hold: float
    param: float = 0.0

    def describe(self) -> str:
        extra = f" param={self.param:.0f}" if self.param else ""
        return f"t+{self.at:6.1f}s {self.kind:<12} hold={self.hold:.1f}s{extra}"


def make_schedule(seed: int, duration: float, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """Faults drawn from `random.Random(seed)` until `duration` seconds are filled.

    Kinds are dealt from a shuffled deck rather than drawn independently, so each run of
    len(kinds) consecutive faults holds every kind once and a two-minute CI run covers
    the whole mix.
    """
    rng = random.Random(seed)
    faults: list[Fault] = []
    deck: list[str] = []
    at = rng.uniform(*QUIET)
    while True:
        if not deck:  # every kind once per round, in a seeded order: short runs see them all
            deck = rng.sample(kinds, len(kinds))
        kind = deck.pop()
        hold = 0.0 if kind == "link_drop" else rng.uniform(*HOLDS.get(kind, HOLD))
        param = _param(rng, kind)
        if at + hold > duration:
            return faults
        faults.append(Fault(round(at, 1), kind, round(hold, 1), round(param)))
        at += hold + rng.uniform(*QUIET)


def _param(rng: random.Random, kind: str) -> float:
    if kind == "slow_link":
        return rng.uniform(50, 800)  # milliseconds per chunk
    if kind == "throttle":
        return rng.uniform(2_000, 50_000)  # bytes per second
    if kind == "clock_jump":  # an RTC-less boot: hours behind or minutes ahead, then NTP
        return rng.uniform(300, 6 * 3600) if rng.random() < 0.5 else -rng.uniform(60, 3600)
    return 0.0


class Restartable(Protocol):
    """A daemon the injector can kill, restart, pause and resume (the agent or the hub)."""

    def kill(self) -> None: ...
    def restart(self) -> None: ...
    def pid(self) -> int | None: ...


@dataclasses.dataclass
class Targets:
    """What the faults act on."""

    agent: Restartable
    hub: Restartable
    central: MosquittoBroker
    proxy: ChaosProxy
    store: NatsServer | None = None
    clock: DeviceClock | None = None
    disk: SmallDisk | None = None
    queue_db: Path | None = None


class FaultInjector:
    """Applies faults to the targets and records each one as it happened."""

    def __init__(self, targets: Targets, log: Callable[[str], None] = print) -> None:
        self.targets = targets
        self.log = log
        self.applied: list[Fault] = []
        self.set_aside: list[SetAside] = []
        """What each corrupted queue file held, for the checker."""

    def run(self, schedule: list[Fault], started: float) -> None:
        """Apply every fault at its offset from `started` (a time.monotonic() value)."""
        for fault in schedule:
            wait = started + fault.at - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the schedule is by the clock: nothing to poll for
            self.log(fault.describe())
            self.apply(fault)
            self.applied.append(fault)

    def apply(self, fault: Fault) -> None:
        t = self.targets
        daemons = {"agent": t.agent, "hub": t.hub}
        who, _, action = fault.kind.partition("_")
        if who in daemons and action == "kill":
            daemons[who].kill()
            time.sleep(fault.hold)
            daemons[who].restart()
        elif who in daemons and action == "pause":
            _pause(daemons[who], fault.hold)
        elif fault.kind == "broker_kill":
            t.central.kill()
            time.sleep(fault.hold)
            t.central.start()
        elif fault.kind == "store_kill" and t.store is not None:
            t.store.kill()
            time.sleep(fault.hold)
            t.store.start()
        elif fault.kind in DEVICE_KINDS:
            self._device_fault(fault)
        elif fault.kind == "link_drop":
            t.proxy.drop()
        else:
            self._link_fault(fault)

    def _device_fault(self, fault: Fault) -> None:
        clock, disk = self.targets.clock, self.targets.disk
        if fault.kind == "clock_jump" and clock is not None:
            clock.set(int(fault.param))
            time.sleep(fault.hold)
            clock.set(0)
        elif fault.kind == "queue_corrupt" and self.targets.queue_db is not None:
            self.targets.agent.kill()
            self.set_aside.append(corrupt_queue(self.targets.queue_db))
            time.sleep(fault.hold)
            self.targets.agent.restart()
        elif fault.kind == "disk_full" and disk is not None:
            disk.fill()
            try:
                time.sleep(fault.hold)
            finally:
                disk.free()

    def _link_fault(self, fault: Fault) -> None:
        proxy = self.targets.proxy
        if fault.kind == "partition":
            proxy.set_partition()
        elif fault.kind == "blackhole":
            proxy.set_blackhole()
        elif fault.kind == "slow_link":
            proxy.set_delay(fault.param)
        elif fault.kind == "throttle":
            proxy.set_throttle(fault.param)
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        time.sleep(fault.hold)
        proxy.set_pass()


def _pause(target: Restartable, hold: float) -> None:
    pid = target.pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(hold)
    finally:
        os.kill(pid, signal.SIGCONT)

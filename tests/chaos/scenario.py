"""One chaos scenario from start to proof: start, load, faults, heal, drain, stop, check.

Phases:
  1. Start the system (tests/chaos/system.py) and prove the agent's subscription on the
     edge broker exists (a probe message reaches its queue).
  2. Start the publisher (numbered readings, QoS 1) and apply the seeded fault schedule
     while it runs; the simulated source produces all along.
  3. Heal: the link passes, paused processes resume, dead ones restart.
  4. Stop the publisher (every PUBACK it got is recorded) and wait until the hub holds
     what the agent committed: all of `sensors` and `windows`, and `sim` up to where it
     was when the drain began (the simulated source never stops producing).
  5. Stop the agent and the hub cleanly, then run the checker on their databases.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.chaos.checker import CheckResult, check
from tests.chaos.faults import DEVICE_KINDS, KINDS, Fault, FaultInjector, Targets, make_schedule
from tests.chaos.system import DEVICE, ChaosSystem, SequencePublisher
from tests.e2e.harness import query, queue_last_seq


@dataclasses.dataclass(frozen=True)
class ScenarioConfig:
    """What one run does: its seed, how long faults last, the load, the fault mix."""

    seed: int
    duration: float
    rate: float = 100.0
    kinds: tuple[str, ...] = KINDS + DEVICE_KINDS
    store: str = "sqlite"
    drain_timeout: float = 300.0


@dataclasses.dataclass
class ScenarioResult:
    """What happened and what the checker found."""

    config: ScenarioConfig
    kinds: tuple[str, ...]
    """The fault kinds this machine could apply (of those the config asked for)."""
    faults: list[Fault]
    check: CheckResult
    drained: bool
    drain_seconds: float
    fault_seconds: float
    agent_starts: int
    hub_starts: int

    @property
    def ok(self) -> bool:
        return self.drained and self.check.ok


def run_scenario(
    tmp: Path, config: ScenarioConfig, log: Callable[[str], None] = print
) -> ScenarioResult:
    """Run phases 1-5 in `tmp`; every process is stopped by PID before returning."""
    device_faults = bool(set(config.kinds) & set(DEVICE_KINDS))
    system = ChaosSystem(tmp, config.seed, config.store, device_faults)
    try:
        system.start()
        publisher = SequencePublisher(system.edge.url, config.rate)
        if not system.subscribed(publisher):
            raise RuntimeError(f"agent never subscribed:\n{system.agent.log_tail()}")
        kinds = tuple(k for k in config.kinds if system.supports(k))
        if skipped := sorted(set(config.kinds) - set(kinds)):
            log(f"fault kinds this machine cannot apply, left out: {', '.join(skipped)}")
        schedule = make_schedule(config.seed, config.duration, kinds)
        log(f"seed {config.seed}: {len(schedule)} faults over {config.duration:.0f}s")
        targets = Targets(
            system.agent, system.hub, system.central, system.proxy, system.nats,
            system.clock, system.disk, system.queue_db,
        )  # fmt: skip
        injector = FaultInjector(targets, log)
        began = time.monotonic()
        publisher.start()
        injector.run(schedule, began)
        if (rest := began + config.duration - time.monotonic()) > 0:
            time.sleep(rest)  # the load runs the whole duration, faults or not
        fault_seconds = time.monotonic() - began
        system.heal()
        acked = publisher.stop()
        log(f"faults over after {fault_seconds:.0f}s; {len(acked)} readings PUBACKed; draining")
        drain_began = time.monotonic()
        in_old_files = sum(len(s.readings) for s in injector.set_aside)  # never sent
        drained = _drain(system, len(acked) - in_old_files, config.drain_timeout)
        drain_seconds = time.monotonic() - drain_began
        log(f"drained={drained} in {drain_seconds:.0f}s; stopping cleanly")
        system.agent.terminate()
        system.hub.terminate()
        system.refresh_hub_view()
        result = check(system.queue_db, system.hub_db, acked, injector.set_aside)
        return ScenarioResult(
            config, kinds, injector.applied, result, drained, drain_seconds, fault_seconds,
            system.agent.starts, system.hub.starts,
        )  # fmt: skip
    finally:
        system.close()


def _drain(system: ChaosSystem, acked: int, timeout: float) -> bool:
    """Poll until the hub caught up with the agent (phase 4); False on timeout."""
    queue, hub = system.queue_db, system.hub_db
    sim_target = queue_last_seq(queue, "sim")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        system.refresh_hub_view()
        caught_up = (
            _hub_position(hub, "sensors", queue) == queue_last_seq(queue, "sensors")
            and _hub_readings(hub) >= acked
            and _hub_position(hub, "windows", queue) == queue_last_seq(queue, "windows")
            and _hub_position(hub, "sim", queue) >= sim_target
        )
        if caught_up:
            return True
        time.sleep(0.5 if system.nats is None else 3.0)  # a JetStream mirror costs more
    return False


def _hub_position(hub_db: Path, stream: str, queue_db: Path) -> int:
    """The hub's position in the agent's current epoch (a set-aside queue starts anew)."""
    epoch = query(queue_db, "SELECT value FROM meta WHERE name = 'epoch'")
    rows = query(
        hub_db, "SELECT max(upto_seq) FROM positions WHERE device = ? AND stream = ? "
        "AND epoch = ?", DEVICE, stream, epoch[0][0] if epoch else "",
    )  # fmt: skip
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _hub_readings(hub_db: Path) -> int:
    rows = query(
        hub_db, "SELECT count(*) FROM events WHERE device = ? AND stream = 'sensors' "
        "AND topic != 'plant/probe'", DEVICE,
    )  # fmt: skip
    return int(rows[0][0]) if rows else 0


def markdown(results: list[ScenarioResult]) -> str:
    """A results table, one row per run (the form docs/reliability-chaos.md uses)."""
    head = (
        "| seed | faults s | faults | agent / hub starts | readings PUBACKed | at hub "
        "| sim seqs | windows (matched / expected) | lost | duplicated | gaps | "
        "set aside (files / seqs / re-ingested) | order violations | drain s | result |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for r in results:
        c = r.check
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(Counter(f.kind for f in r.faults).items()))
        sensors = c.streams["sensors"]
        excused = sensors.in_gaps + sensors.pending + sensors.set_aside
        lost = max(0, c.acked_lost - excused) + sum(s.lost + s.holes for s in c.streams.values())
        order = c.sensor_order_violations + sum(s.misordered for s in c.streams.values())
        gaps = ", ".join(f"{k} {n}" for k, n in c.gaps_by_reason.items()) or "0"
        sim = c.streams.get("sim")
        sim_text = f"{sim.at_hub} (+{sim.pending} pending)" if sim else "-"
        rows.append(
            f"| {r.config.seed} | {r.fault_seconds:.0f} | {len(r.faults)}: {kinds} "
            f"| {r.agent_starts} / {r.hub_starts} | {c.acked} | {c.acked_at_hub} | {sim_text} "
            f"| {c.windows_matched} / {c.windows_expected} | {lost} "
            f"| {c.duplicated + c.windows_duplicated} | {gaps} "
            f"| {c.set_aside_files} / {sum(s.set_aside for s in c.streams.values())} "
            f"/ {c.reingested} | {order} "
            f"| {r.drain_seconds:.0f} | {'pass' if r.ok else 'FAIL'} |"
        )
    return "\n".join(rows)

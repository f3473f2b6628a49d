"""One power-cut campaign: run a writer, freeze-and-copy it at random instants, judge.

The judging is shared by the three components; what "open", "sound" and "a prefix"
mean for each is the `Judge` a test passes in. The bounds on how far a copy may have
got are the same for all (see tests/chaos/powercut.py for why each is honest):

- every variant: no further than the landed copy of the same snapshot (nothing that
  was never written);
- synchronous=FULL, every variant: at least every acknowledged commit;
- synchronous=NORMAL: the landed copy holds every acknowledged commit, and the damaged
  variants at least what the durable floor holds (a torn tail never takes synced data
  with it). A power cut may lose acknowledged NORMAL commits, never tear one.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos import powercut
from tests.chaos.powercut import Snapshot

DEFAULT_SEED = 20261127
HUNT_EVERY = 3
ROOT = Path(__file__).resolve().parents[2]


def chaos_seed() -> int:
    """The campaign seed: EDGESTREAM_CHAOS_SEED, or a fixed default."""
    return int(os.environ.get("EDGESTREAM_CHAOS_SEED", DEFAULT_SEED))


@dataclass(slots=True)
class Outcome:
    """What a judge found in one copy."""

    opened: bool
    integrity: bool
    progress: int
    problems: list[str]


Judge = Callable[[Path], Outcome]
"""Opens a copy the way the component does at start and checks its content."""


@dataclass(slots=True)
class Counts:
    """Copies of one variant and how many passed each check."""

    copies: int = 0
    opened: int = 0
    integrity: int = 0
    prefix: int = 0


@dataclass(slots=True)
class Tally:
    """Counts per variant and every failure, with the snapshot it came from."""

    counts: dict[str, Counts] = field(
        default_factory=lambda: {name: Counts() for name in powercut.VARIANTS}
    )
    failures: list[str] = field(default_factory=list)

    def summary(self, title: str, seed: int) -> str:
        """One line per variant, for the test output and docs/reliability.md."""
        lines = [f"{title} (seed {seed}): variant copies/opened/integrity ok/prefix ok"]
        for name, c in self.counts.items():
            lines.append(f"  {name:<10} {c.copies}/{c.opened}/{c.integrity}/{c.prefix}")
        return "\n".join(lines)


@dataclass(slots=True)
class Run:
    """The snapshots of one writer run and its complete acknowledgement log."""

    snapshots: list[Snapshot]
    final_acks: list[str]


def run_writer(
    kind: str, tmp: Path, db_name: str, sync: str, seed: int, seconds: float, copies: int
) -> Run:
    """Start the writer process and take `copies` snapshots at random instants."""
    data_dir, ack_log = tmp / "data", tmp / "acks.log"
    data_dir.mkdir()
    ack_log.touch()
    command = [sys.executable, "-m", "tests.chaos.writers", kind, str(data_dir), str(ack_log)]
    command += ["--sync", sync, "--seed", str(seed), "--seconds", str(seconds)]
    proc = subprocess.Popen(command, cwd=ROOT)
    rnd, snapshots = random.Random(seed), list[Snapshot]()
    try:
        _wait_for_first_ack(proc, ack_log)
        mean_gap = seconds * 0.6 / copies
        while len(snapshots) < copies and proc.poll() is None:
            pause = rnd.uniform(0.2, 1.8) * mean_gap
            if len(snapshots) % HUNT_EVERY == HUNT_EVERY - 1:
                _hunt_checkpoint(data_dir / f"{db_name}-shm", 4 * mean_gap)
            else:
                time.sleep(pause)  # a random instant, by design
            snapshot = powercut.freeze_and_copy(
                proc.pid, data_dir / db_name, ack_log, len(snapshots)
            )
            if snapshot is not None:
                snapshots.append(snapshot)
        assert proc.wait(timeout=120) == 0, f"writer {kind} failed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(snapshots, ack_log.read_text(encoding="utf-8").splitlines())


def _hunt_checkpoint(shm: Path, patience: float) -> None:
    """Return as soon as a checkpoint is copying pages (or after `patience` seconds).

    Checkpoints are short and rare, so random instants seldom freeze one; every
    HUNT_EVERY-th snapshot is taken at the first instant the wal-index shows one under
    way, which is still an instant a power cut could choose.
    """
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if powercut.checkpoint_running(shm):
            return
        time.sleep(0.0002)


def _wait_for_first_ack(proc: subprocess.Popen[bytes], ack_log: Path) -> None:
    deadline = time.monotonic() + 60
    while not ack_log.read_text(encoding="utf-8"):
        assert proc.poll() is None, "writer exited before its first commit"
        assert time.monotonic() < deadline, "writer made no commit within 60 s"
        time.sleep(0.01)


def judge_run(
    run: Run,
    *,
    sync: str,
    seed: int,
    scratch: Path,
    db_name: str,
    judge: Judge,
    target: Callable[[list[str]], int],
    progress: powercut.Progress,
) -> Tally:
    """Build every variant of every snapshot, judge it, and check the bounds."""
    tally, rnd = Tally(), random.Random(seed + 1)
    for snap in run.snapshots:
        wal = powercut.layout(snap)
        acked = target(snap.acked)
        floor = 0
        if wal is not None:
            floor = powercut.durable_frames(snap, wal, sync, acked, progress, scratch)
        reached: dict[str, int] = {}
        for name, db, wal_bytes in powercut.variants(snap, wal, floor, rnd):
            copy = scratch / f"snap{snap.number}-{name}"
            outcome = judge(powercut.write_copy(copy, db, wal_bytes, db_name))
            shutil.rmtree(copy)
            reached[name] = outcome.progress
            problems = outcome.problems + _bounds(name, outcome, sync, acked, reached)
            where = (
                f"seed {seed} snapshot {snap.number} {name} ({_describe(wal, floor, wal_bytes)})"
            )
            _count(tally, name, outcome, problems, where)
    return tally


def _describe(wal: powercut.WalLayout | None, floor: int, wal_bytes: bytes) -> str:
    if wal is None:
        return "no WAL"
    return (
        f"WAL {len(wal_bytes)} bytes, {len(wal.commit_frames)} commits to frame "
        f"{wal.commit_frames[-1] if wal.commit_frames else 0}, backfilled {wal.backfill}, "
        f"attempted {wal.backfill_attempted}, floor frame {floor}"
    )


def _bounds(
    name: str, outcome: Outcome, sync: str, acked: int, reached: dict[str, int]
) -> list[str]:
    if not outcome.opened or not outcome.integrity:
        return []
    low = acked if sync == "full" or name == "landed" else reached.get("durable", 0)
    problems = []
    if outcome.progress < low:
        problems.append(f"lost committed data: reached {outcome.progress}, must reach {low}")
    if outcome.progress > reached["landed"]:
        problems.append(f"holds more than was written: {outcome.progress} > {reached['landed']}")
    return problems


def _count(tally: Tally, name: str, outcome: Outcome, problems: list[str], where: str) -> None:
    counts = tally.counts[name]
    counts.copies += 1
    counts.opened += outcome.opened
    counts.integrity += outcome.opened and outcome.integrity
    counts.prefix += outcome.opened and outcome.integrity and not problems
    if not (outcome.opened and outcome.integrity) or problems:
        tally.failures.append(f"{where}: opened={outcome.opened} integrity={outcome.integrity} "
                              f"{'; '.join(problems)}")  # fmt: skip


def _scratch_root() -> str | None:
    """Copies are scratch: on tmpfs they cost no disk I/O on a busy machine."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def campaign(
    kind: str,
    tmp: Path,
    *,
    db_name: str,
    sync: str,
    judge_for: Callable[[Run, Path], Judge],
    target: Callable[[list[str]], int],
    progress: powercut.Progress,
    seconds: float = 3.0,
    copies: int = 30,
) -> Tally:
    """Run the writer, judge every variant of every snapshot, print the counts."""
    seed = chaos_seed()
    print(f"chaos seed={seed} (set EDGESTREAM_CHAOS_SEED to replay the same choices)")
    run = run_writer(kind, tmp, db_name, sync, seed, seconds, copies)
    with tempfile.TemporaryDirectory(prefix="chaos-", dir=_scratch_root()) as scratch:
        tally = judge_run(
            run, sync=sync, seed=seed, scratch=Path(scratch), db_name=db_name,
            judge=judge_for(run, Path(scratch)), target=target, progress=progress,
        )  # fmt: skip
    print(tally.summary(f"{kind} synchronous={sync}, {len(run.snapshots)} snapshots", seed))
    return tally

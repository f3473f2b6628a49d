"""The device faults work on this machine: a process's clock jumps; a small disk fills."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chaos.device import DeviceClock, SmallDisk

# Prints the wall clock once it moved an hour away from true time, and proves that
# Event.wait and asyncio timers (what the agent waits with) still work under libfaketime.
# time.sleep does not: libfaketime 0.9.10 fails Python's clock_nanosleep(TIMER_ABSTIME)
# with EINVAL while the monotonic clock is left alone; the agent never calls it.
PROBE = """
import asyncio, threading, time
threading.Event().wait(0.05); asyncio.run(asyncio.sleep(0.05))
print("ready", flush=True)
true_time, began = float(input()), time.monotonic()
while time.monotonic() - began < 20 and abs(time.time() - true_time) < 3000:
    threading.Event().wait(0.05)
print(time.time(), flush=True)
"""


@pytest.mark.skipif(not DeviceClock.available(), reason="libfaketime is not installed")
def test_device_clock_steps_a_running_process_wall_clock(tmp_path: Path) -> None:
    clock = DeviceClock(tmp_path / "clock")
    probe = subprocess.Popen(
        [sys.executable, "-c", PROBE], env={**os.environ, **clock.env}, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert probe.stdin is not None and probe.stdout is not None
    try:
        assert probe.stdout.readline().strip() == "ready"
        clock.set(3600)
        probe.stdin.write(f"{time.time()}\n")
        probe.stdin.flush()
        seen = float(probe.stdout.readline())
        assert seen - time.time() == pytest.approx(3600, abs=30)  # stepped within a second or two
    finally:
        probe.kill()
        probe.wait(10)


def test_small_disk_fills_to_enospc_and_frees(tmp_path: Path) -> None:
    disk = SmallDisk(tmp_path / "disk", 4)
    if not disk.mount():
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        assert disk.free_bytes() > 3 << 20
        assert disk.fill() > 3 << 20
        assert disk.free_bytes() == 0
        with pytest.raises(OSError):
            (disk.path / "x").write_bytes(b"\0" * 8192)
        disk.free()
        assert disk.free_bytes() > 3 << 20
    finally:
        disk.unmount()

"""The README's main job: `edgestream demo` runs broker, agent and hub, and data flows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_moves_readings_through_windows_to_the_hub(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "demo", "--data-dir", str(tmp_path),
         "--duration", "14", "--rate", "100", "--interval", "2"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "demo stopped cleanly" in result.stdout
    rows = [
        line.split()
        for line in result.stdout.splitlines()
        if line.strip().endswith(tuple("0123456789"))
    ]
    ingested = [int(r[1]) for r in rows if r[0].endswith("s")]
    assert ingested and ingested[-1] > 500
    with closing(sqlite3.connect(tmp_path / "hub" / "central.db")) as conn:
        (windows,) = conn.execute(
            "SELECT count(*) FROM events WHERE stream = 'sensors_10s'"
        ).fetchone()
    assert windows > 0

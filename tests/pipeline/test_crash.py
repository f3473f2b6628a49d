"""kill -9 of a real agent running every stateful step: the results equal an uninterrupted run.

The input streams are filled before the agent starts, so what each run reads, and in
which batches, depends only on its committed cursors. The agent is killed at random
instants over many cycles; each restart must continue from the committed state, and
the output streams must end up exactly as in a run that was never interrupted: no
result lost, none twice, no state counted twice.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.queue import DurableQueue, NewEvent, StreamLimits
from tests.e2e.harness import EdgestreamProcess, write_yaml

EVENTS = 60_000
KILLS = 10
NOW = time.time()
"""Ingest time of the input: recent, or retention (max_age) would expire it at once."""
OUTPUT_STREAMS = ("out", "alerts", "late")

STEPS: list[Any] = [
    {"filter": "value is not null"},
    {"map": {"set": {"f": "value * 1.8 + 32"}, "key": "device"}},
    {"route": [{"when": "value > 29", "to": "alerts"}]},
    {"dedupe": {"fields": ["seq_no"], "horizon": "10s"}},
    {"deadband": {"value": "value", "absolute": 0.5, "heartbeat": "5s"}},
    {"throttle": {"rate": 20, "per": "1s", "mode": "latest", "idle": "1h"}},
    {"downsample": {"interval": "100ms", "keep": "last", "idle": "1h"}},
    {"join": {"stream": "cal", "into": "cal"}},
    {"window": {"type": "session", "gap": "700ms", "max_length": "20s", "idle": "1h",
                "late": "late",
                "aggregates": {"n": "count()", "avg": "avg(value)", "p90": "p90(value)"}}},
    {"window": {"type": "count", "events": 3, "every": 2, "idle": "1h",
                "aggregates": {"n": "sum(n)", "sd": "stddev(avg)"}}},
    {"window": {"type": "hopping", "size": "10s", "slide": "5s", "idle": "1h",
                "lateness": "1s", "aggregates": {"n": "sum(n)", "distinct": "distinct(key)"}}},
]  # fmt: skip


def config(tmp: Path, data_dir: Path) -> Path:
    data = {
        "device_id": "crash",
        "data_dir": str(data_dir),
        "queue": {"commit_interval": "20ms", "read_batch": 250},
        "streams": {name: {} for name in ("raw", "cal", *OUTPUT_STREAMS)},
        "pipelines": [{"name": "all", "input": "raw", "output": "out", "steps": STEPS}],
    }
    return write_yaml(tmp / f"{data_dir.name}.yaml", data)


def workload() -> tuple[list[NewEvent], list[NewEvent]]:
    """Out-of-order sensor readings with duplicates and gaps, and calibration records."""
    rnd = random.Random(11)
    raw, cal = [], []
    for i in range(EVENTS):
        device = f"d{rnd.randrange(5)}"
        ts = 1_000.0 + i * 0.01 + rnd.uniform(-1.5, 0.2)
        body = {"device": device, "seq_no": i - (i % 7 == 0), "value": round(rnd.gauss(25, 3), 2)}
        if i % 97 == 0:
            body["value"] = None
        raw.append(NewEvent(ts, NOW, device, "t", orjson.dumps(body)))
    for i in range(50):
        body = {"device": f"d{i % 5}", "offset": i}
        cal.append(NewEvent(1_000.0, NOW, f"d{i % 5}", "c", orjson.dumps(body)))
    return raw, cal


async def fill(data_dir: Path) -> None:
    limits = {n: StreamLimits(1 << 30, 1e9) for n in ("raw", "cal", *OUTPUT_STREAMS)}
    queue = await DurableQueue.open(data_dir, limits, commit_interval=0.01, synchronous="normal")
    raw, cal = workload()
    await queue.append("cal", cal)
    for start in range(0, len(raw), 5000):
        await queue.append("raw", raw[start : start + 5000])
    await queue.close()


def database(data_dir: Path) -> Path:
    (path,) = data_dir.glob("*.db")
    return path


def position(data_dir: Path) -> int:
    """The pipeline's committed cursor on its input (0 before the first commit)."""
    with closing(sqlite3.connect(f"file:{database(data_dir)}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT c.position FROM cursors c JOIN streams s ON s.id = c.stream_id "
            "WHERE c.consumer = 'pipeline:all' AND s.name = 'raw'"
        ).fetchone()
    return 0 if row is None else int(row[0])


def done(data_dir: Path) -> bool:
    return position(data_dir) >= EVENTS


def outputs(data_dir: Path) -> dict[str, list[Any]]:
    with closing(sqlite3.connect(f"file:{database(data_dir)}?mode=ro", uri=True)) as db:
        return {
            name: [
                orjson.loads(payload)
                for (payload,) in db.execute(
                    "SELECT e.payload FROM events e JOIN streams s ON s.id = e.stream_id "
                    "WHERE s.name = ? ORDER BY e.seq",
                    (name,),
                )
            ]
            for name in OUTPUT_STREAMS
        }


def run_to_end(tmp: Path, data_dir: Path, kills: int, seed: int) -> tuple[dict[str, Any], int]:
    """Run the agent until its pipeline has read everything, killing it up to `kills`
    times, each once its committed cursor passed a random point plus a random delay, so
    kills land mid-slice, mid-commit or between commits. Returns the output streams and
    how many kills hit a run that still had input left."""
    asyncio.run(fill(data_dir))
    cfg = config(tmp, data_dir)
    rnd = random.Random(seed)
    mid_run_kills = 0
    for run in range(kills + 1):
        start = position(data_dir)
        if start >= EVENTS:
            break
        agent = EdgestreamProcess("run", cfg, tmp / f"{data_dir.name}.log").start()
        last = run == kills
        stop_at = EVENTS if last else start + rnd.randrange(1, max(2, (EVENTS - start) // 4))
        try:
            deadline = time.monotonic() + 120
            while position(data_dir) < stop_at:
                assert agent.alive, agent.log_tail()
                assert time.monotonic() < deadline, agent.log_tail()
                time.sleep(0.005)
            time.sleep(0.0 if last else rnd.uniform(0.0, 0.02))
        finally:
            agent.kill()
        mid_run_kills += not last and not done(data_dir)
    assert done(data_dir)
    return outputs(data_dir), mid_run_kills


@pytest.mark.slow
def test_kill_9_at_random_points_gives_the_results_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    reference, _ = run_to_end(tmp_path, tmp_path / "reference", kills=0, seed=0)
    assert all(reference[name] for name in OUTPUT_STREAMS), {
        k: len(v) for k, v in reference.items()
    }
    crashed, mid_run_kills = run_to_end(tmp_path, tmp_path / "crashed", kills=KILLS, seed=5)
    assert mid_run_kills >= 5, mid_run_kills  # the kills really interrupted the work
    for name in OUTPUT_STREAMS:
        assert crashed[name] == reference[name], name

"""A backlog of 10 million events: agent memory, drain rate, restart and `status` while it drains.

What it measures and why (issue 7, promise 5: "memory stays flat under any backlog"):
- Build: a queue database holding `--events` W-ingest events (bench/benchkit.py's
  ~100-byte payload, topic, key), written with sqlite3 straight into the queue's own
  schema (`agent.queue.schema.ensure_schema`, `streams.load_streams`) in transactions
  of 100,000 rows with synchronous=OFF, and the stream's counters set to what the agent
  would have written. Rows, byte accounting and counters are exactly what
  `DurableQueue.append` writes; only the build's own durability differs, which the
  drain does not see. It is several times faster than appending through the queue.
- Baselines in the same run: the wall time of `python -c "import agent.cli.main"`
  (the CLI's start-up floor) and of `edgestream status` against the same agent
  config with an empty queue.
- Drain: a central mosquitto (free port), `edgestream hub` (SQLite store) and
  `edgestream run` (no source; the stream marked for uplink, default uplink and queue
  settings) start over the full database. Every 5 s: the agent's and the hub's VmRSS
  and the uplink cursor (events the hub has acknowledged). Time to first ack after
  the agent's start (does the drain resume, and how soon?), drain rate.
- Responsiveness: in its own thread, `edgestream status -c agent.yaml` (a child
  process, wall time, and whether the daemon answered or the CLI fell back to reading
  the database after its 2 s timeout), then a direct `GET /status` with a 120 s
  timeout, every 5 s. Probes run in every other `--window` (60 s) of the drain, the
  first window (start-up, first ack) without, so the drain rate is measured with and
  without them in the same run: a probe's cost to the drain shows as the difference.
Targets (PERFORMANCE.md): agent RSS <= 40 MiB and flat with a backlog on disk; the
W-backlog drain target (>= 3x the Mosquitto bridge) is measured by uplink_drain.py.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit import (
    REPO,
    Edgestream,
    Mosquitto,
    create_session,
    fmt_int,
    free_port,
    ingest_payload,
    print_machine,
    print_table,
    query_int,
    rss_mib,
    temp_dir,
    wait_until,
    write_yaml,
)

from agent.queue import schema
from agent.queue.records import StreamLimits, event_size
from agent.queue.streams import load_streams, save_counters
from sync.uplink import CONSUMER

STREAM = "sensors"
HUB_ID = "bench10m"
DEVICE = "bench-10m"
TX_ROWS = 100_000
SAMPLE_EVERY = 5.0
RSS_TARGET_MIB = 40.0
MAX_BYTES = 64 * 1024**3


# ------------------------------------------------------------------ build


Row = tuple[int, float, float, str, str, bytes, None]


def rows(count: int, now: float) -> Iterator[Row]:
    """Per event, the columns after stream_id: seq, times, key, topic, payload, headers."""
    for i in range(count):
        topic, payload = ingest_payload(i)
        event_time, ingest_time = 1764201600.0 + i * 0.001, now - (count - i) * 1e-5
        yield (i + 1, event_time, ingest_time, topic.split("/")[1], topic, payload, None)


def build_queue(data_dir: Path, count: int) -> tuple[float, int]:
    """Write `count` events into a fresh queue database; (seconds, file bytes)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "queue.db"
    started = time.perf_counter()
    conn = schema.connect(str(path), "normal")
    conn.execute("PRAGMA synchronous=OFF")
    schema.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    state = load_streams(conn, {STREAM: StreamLimits(MAX_BYTES, 7 * 86400.0)})[STREAM]
    conn.execute("COMMIT")
    batch: list[Row]
    sql = f"INSERT INTO events VALUES ({state.id}, ?, ?, ?, ?, ?, ?, ?)"
    size, batch = 0, []
    for row in rows(count, time.time()):
        batch.append(row)
        if len(batch) == TX_ROWS:
            size += _insert(conn, sql, batch)
            batch = []
    if batch:
        size += _insert(conn, sql, batch)
    state.next_seq, state.bytes = count + 1, size
    conn.execute("BEGIN IMMEDIATE")
    save_counters(conn, [state])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started, path.stat().st_size


def _insert(conn: sqlite3.Connection, sql: str, batch: list[Row]) -> int:
    """One transaction of rows; returns the bytes they count against max_bytes."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(sql, batch)
    conn.execute("COMMIT")
    return sum(event_size(r[5], r[3], r[4], None) for r in batch)


# ------------------------------------------------------------------ configs


def agent_config(tmp: Path, central_url: str) -> dict[str, Any]:
    return {
        "device_id": DEVICE,
        "data_dir": str(tmp / "agent-data"),
        "log_level": "info",
        "streams": {STREAM: {"uplink": True, "max_bytes": MAX_BYTES}},
        "uplink": {"broker": {"url": central_url}},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }


def hub_config(tmp: Path, central_url: str) -> dict[str, Any]:
    return {
        "hub_id": HUB_ID,
        "broker": {"url": central_url},
        "log_level": "warning",
        "store": {"type": "sqlite", "path": str(tmp / "hub-data" / "central.db")},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }


# ------------------------------------------------------------------ status probes


def cli_status(config: Path) -> tuple[float, bool]:
    """Wall time of `edgestream status -c`, and whether the daemon answered it."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "status", "-c", str(config)],
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
    )  # fmt: skip
    live = done.returncode == 0 and "not running" not in done.stdout
    return time.perf_counter() - started, live


def http_status(listen: str) -> float | None:
    """Seconds for the daemon's `GET /status`, or None when it does not answer in 120 s."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://{listen}/status", timeout=120) as answer:
            answer.read()
    except OSError:
        return None
    return time.perf_counter() - started


def import_floor() -> float:
    """Wall time of starting python and importing the CLI: what any `status` pays."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import agent.cli.main"], cwd=REPO, check=True)
    return time.perf_counter() - started


def empty_queue_status(tmp: Path, central_url: str) -> list[float]:
    """`status` wall times against a running agent whose queue is empty (the baseline)."""
    config = write_yaml(tmp / "empty" / "agent.yaml", agent_config(tmp / "empty", central_url))
    listen = agent_config_listen(config)
    with Edgestream("run", config) as agent:
        wait_until(lambda: http_status(listen) is not None, 60, "the empty agent's /status")
        agent.check_alive()
        return [cli_status(config)[0] for _ in range(3)]


def agent_config_listen(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.strip().startswith("listen:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"no metrics listen address in {config}")


# ------------------------------------------------------------------ the drain


@dataclass
class Probe:
    """What the samplers saw while the agent drained."""

    started: float
    window: float
    first_ack: float | None = None
    samples: list[tuple[float, int, float, float]] = field(default_factory=list)
    statuses: list[tuple[float, float, bool, float | None]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def probing(self, at: float) -> bool:
        """Status probes run in every other window, starting with the second one."""
        return int(at // self.window) % 2 == 1


def acked(db: Path) -> int:
    return query_int(db, "SELECT position FROM cursors WHERE consumer = ?", CONSUMER)


def sample_resources(probe: Probe, agent: Edgestream, hub: Edgestream, db: Path, n: int) -> None:
    """Every SAMPLE_EVERY s: time, acknowledged events, agent and hub RSS."""
    next_at = probe.started
    while not probe.done.is_set():
        next_at += SAMPLE_EVERY
        while time.perf_counter() < next_at and not probe.done.is_set():
            position = acked(db)
            if position and probe.first_ack is None:
                probe.first_ack = time.perf_counter() - probe.started
            if position >= n:
                probe.done.set()
            time.sleep(0.05)
        if agent.process is None or agent.process.poll() is not None:
            print(f"(the agent exited; see {agent.log_path})")
            probe.done.set()
            return
        probe.samples.append((time.perf_counter() - probe.started, acked(db),
                              rss_mib(agent.pid), rss_mib(hub.pid)))  # fmt: skip


def sample_status(probe: Probe, config: Path) -> None:
    """`edgestream status`, then `GET /status`, every SAMPLE_EVERY s of a probing window."""
    listen = agent_config_listen(config)
    while not probe.done.is_set():
        at = time.perf_counter() - probe.started
        if probe.probing(at):
            wall, live = cli_status(config)
            probe.statuses.append((at, wall, live, http_status(listen)))
        elapsed = time.perf_counter() - probe.started - at
        probe.done.wait(max(0.0, SAMPLE_EVERY - elapsed))


def drain(tmp: Path, central: Mosquitto, count: int, timeout: float, window: float) -> Probe:
    create_session(central.url, f"edgestream-hub-{HUB_ID}", "edgestream/+/up", 1)
    hub_yaml = write_yaml(tmp / "hub.yaml", hub_config(tmp, central.url))
    agent_yaml = write_yaml(tmp / "agent.yaml", agent_config(tmp, central.url))
    hub_db, db = tmp / "hub-data" / "central.db", tmp / "agent-data" / "queue.db"
    with Edgestream("hub", hub_yaml) as hub:
        wait_until(hub_db.exists, 60, "the hub's store")
        time.sleep(1.0)  # let it connect: the agent's start, not the hub's, is timed
        hub.check_alive()
        with Edgestream("run", agent_yaml) as agent:
            probe = Probe(time.perf_counter(), window)
            threads = [
                threading.Thread(target=sample_resources, args=(probe, agent, hub, db, count),
                                 daemon=True),
                threading.Thread(target=sample_status, args=(probe, agent_yaml), daemon=True),
            ]  # fmt: skip
            try:
                for thread in threads:
                    thread.start()
                probe.done.wait(timeout)
            finally:
                probe.done.set()
                for thread in threads:
                    thread.join(700)
        hub_total = query_int(hub_db, "SELECT count(*) FROM events WHERE stream = ?", STREAM)
    print(f"(hub holds {hub_total:,} of {count:,} events; agent log: {agent.log_path})")
    return probe


# ------------------------------------------------------------------ report


def report(
    count: int, build: tuple[float, int], floor: float, empty: list[float], probe: Probe
) -> None:
    """Print the four tables: build, drain, status summary, then the samples."""
    seconds, size = build
    built = [fmt_int(count), f"{seconds:.1f}", fmt_int(count / seconds), f"{size / 2**30:.2f} GiB"]
    print_table("Build (sqlite3 into the queue schema)", ["events", "s", "ev/s", "file"], [built])
    print_table(
        "Drain of the backlog: `edgestream run` -> mosquitto -> `edgestream hub`",
        ["what", "value"],
        drain_rows(count, probe),
    )
    print_table(
        "`edgestream status` during the drain",
        ["what", "seconds"],
        status_rows(floor, empty, probe),
    )
    print_table(
        "Samples (taken every 5 s; every 30 s shown)",
        ["t (s)", "acked", "ev/s since last", "agent RSS MiB", "hub RSS MiB"],
        sample_rows(probe.samples),
    )
    print_table(
        "Status probes (every 30 s shown, and every slow or unanswered one)",
        ["t (s)", "`edgestream status` s", "daemon answered", "GET /status s"],
        probe_rows(probe.statuses),
    )


def drain_rows(count: int, probe: Probe) -> list[list[str]]:
    samples = probe.samples
    last_t, last_n = samples[-1][0], samples[-1][1]
    first = probe.first_ack or 0.0
    quiet, probed = rates_by_window(probe)
    rss = [s[2] for s in samples]
    steady = rss[len(rss) // 4 :] or rss
    verdict = "meets" if max(steady) <= RSS_TARGET_MIB else "MISSES"
    spread = max(steady) - min(steady)
    return [
        ["events acknowledged by the hub", f"{fmt_int(last_n)} of {fmt_int(count)}"],
        ["time to first ack after the agent's start", f"{first:.1f} s"],
        ["drain rate, first ack to end", f"{fmt_int(last_n / max(last_t - first, 1e-9))} ev/s"],
        ["drain rate per 5 s without status probes: median / min / max", spread_text(quiet)],
        ["drain rate per 5 s while probing status every 5 s: median / min / max",
         spread_text(probed)],
        ["agent RSS: first sample / max / last", f"{rss[0]:.1f} / {max(rss):.1f} / {rss[-1]:.1f}"],
        ["hub RSS: max", f"{max(s[3] for s in samples):.1f} MiB"],
        [f"target: agent RSS <= {RSS_TARGET_MIB:.0f} MiB, flat (after the first quarter)",
         f"{verdict} (max {max(steady):.1f}, spread {spread:.1f} MiB)"],
    ]  # fmt: skip


def rates_by_window(probe: Probe) -> tuple[list[float], list[float]]:
    """Rates of the 5 s intervals after the first ack, split by whether probes ran."""
    quiet: list[float] = []
    probed: list[float] = []
    for (t0, n0, *_), (t1, n1, *_) in itertools.pairwise(probe.samples):
        if n0 == 0 or probe.probing(t0) != probe.probing(t1 - 1e-6):
            continue
        (probed if probe.probing(t0) else quiet).append((n1 - n0) / (t1 - t0))
    return quiet, probed


def spread_text(rates: list[float]) -> str:
    if not rates:
        return "-"
    return " / ".join(fmt_int(r) for r in (statistics.median(rates), min(rates), max(rates)))


def status_rows(floor: float, empty: list[float], probe: Probe) -> list[list[str]]:
    after = probe.statuses
    walls = [s[1] for s in after]
    gets = [s[3] for s in after if s[3] is not None]
    wall = f"{statistics.median(walls):.2f} / {max(walls):.2f}" if walls else "-"
    get = f"{statistics.median(gets):.2f} / {max(gets):.2f}" if gets else "-"
    return [
        ["python -c 'import agent.cli.main' (floor)", f"{floor:.2f}"],
        ["status, agent running, empty queue: median of 3", f"{statistics.median(empty):.2f}"],
        ["during the drain: status wall time, median / max", wall],
        ["during the drain: status answered by the daemon / fell back to the database",
         f"{sum(s[2] for s in after)} / {sum(not s[2] for s in after)}"],
        ["during the drain: GET /status median / max (unanswered in 120 s)",
         f"{get} ({sum(s[3] is None for s in after)})"],
    ]  # fmt: skip


def sample_rows(samples: list[tuple[float, int, float, float]]) -> list[list[str]]:
    rows = []
    for before, (t, n, agent, hub) in zip([None, *samples], samples, strict=False):
        if _shown(t, samples[-1][0]):
            rate = "-" if before is None else fmt_int((n - before[1]) / (t - before[0]))
            rows.append([f"{t:.0f}", fmt_int(n), rate, f"{agent:.1f}", f"{hub:.1f}"])
    return rows


def probe_rows(statuses: list[tuple[float, float, bool, float | None]]) -> list[list[str]]:
    rows = []
    for at, wall, live, get in statuses:
        if _shown(at, statuses[-1][0]) or not live or get is None or wall > 2.0:
            answered = "yes" if live else "NO (database fallback)"
            got = "no answer" if get is None else f"{get:.2f}"
            rows.append([f"{at:.0f}", f"{wall:.2f}", answered, got])
    return rows


def _shown(at: float, last: float) -> bool:
    """Rows of the long tables: every 30 s, the first 10 s and the last."""
    return at < 10 or at == last or int(at) % 30 < SAMPLE_EVERY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--timeout", type=float, default=3600.0, help="longest drain, seconds")
    every_other = "status probes run in every other window of this many seconds"
    parser.add_argument("--window", type=float, default=60.0, help=every_other)
    args = parser.parse_args()
    print_machine()
    with temp_dir("backlog10m") as tmp, Mosquitto(tmp / "central") as central:
        floor = import_floor()
        empty = empty_queue_status(tmp, central.url)
        build = build_queue(tmp / "agent-data", args.events)
        print(f"(built {args.events:,} events in {build[0]:.1f} s)", flush=True)
        probe = drain(tmp, central, args.events, args.timeout, args.window)
    report(args.events, build, floor, empty, probe)


if __name__ == "__main__":
    main()

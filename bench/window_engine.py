"""W-window: the pipeline engine against a hand-written loop and Bytewax, in the same run.

What it measures and why (workload W-window of docs PERFORMANCE.md):
- 1,000,000 events `{"device", "sensor", "ts", "value"}` (100 devices, 1 ms apart,
  `random.Random(7)`), filter `value > 15`, per-device 10 s tumbling event-time window
  aligned to the epoch with count, avg, min, max. Correct output: 10,000 windows,
  counts summing to 952,209, averages summing to 203,153.733. Every contender's
  checksum is verified; a wrong result is an error line, never a figure.
- Contenders, each timed (perf_counter, best of --runs) on events already built in
  memory; the time includes closing the windows still open at the end of input:
  1. plain loop: hand-written Python, a dict of per-key accumulators whose windows
     close as event time passes (the ceiling of pure Python);
  2. Bytewax 0.21.1: `filter` -> `key_on` -> `fold_window` (`TumblingWindower`,
     `EventClock`) through `bytewax.testing.run_main`, a TestingSource in batches of
     --batch; its clock reads a fixed system time so that only event time moves the
     watermark (no event can turn late because the machine paused);
  3. the engine (`compile_pipeline` -> `chain.process`) fed batches of --batch;
  4. the engine fed one event at a time (a trickle must not collapse);
  5. the engine through the durable queue: the events (orjson, event_time = ts,
     key = device) are appended to a real `DurableQueue` before timing, then
     `PipelineRunner.step_once` runs until the input is drained (decode, process,
     commit outputs, state and cursor per batch).
- Each contender runs in its own spawned process, so its memory is its own: "RSS
  ready" is its VmRSS once set up (the first four hold the 1M event dicts, ~330 MiB;
  the queue contender has another process fill the queue, so it never holds them) and
  "peak" its VmHWM during the timed runs (reset when ready, where Linux allows).
- Runs stop early once a contender's timed runs add up to --budget seconds.
Targets: engine >= 1,000,000 ev/s, >= 3.5x Bytewax and >= 1/3 of the plain loop;
one event at a time >= 100,000 ev/s; through the queue >= 150,000 ev/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import math
import multiprocessing
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchkit import fmt_int, print_machine, print_table

EVENTS = 1_000_000
EXPECTED = (10_000, 952_209, 203_153.733)  # windows, sum of counts, sum of averages
BASE_TS = 1764201600.0
WINDOW = 10.0
BYTEWAX_VERSION = "0.21.1"
TARGET_ENGINE = 1_000_000.0
TARGET_VS_BYTEWAX = 3.5
TARGET_VS_LOOP = 1 / 3
TARGET_SINGLE = 100_000.0
TARGET_QUEUE = 150_000.0

AGENT_CONFIG: dict[str, Any] = {
    "device_id": "bench",
    "streams": {"in": {}, "out": {}},
    "pipelines": [{
        "name": "w", "input": "in", "output": "out",
        "steps": [
            {"filter": "value > 15"},
            {"window": {
                "type": "tumbling", "size": "10s", "key": "device",
                "aggregates": {"count": "count()", "avg": "avg(value)", "min": "min(value)",
                               "max": "max(value)"},
            }},
        ],
    }],
}  # fmt: skip

Event = dict[str, Any]
Checksum = tuple[int, int, float]


def build_events(count: int) -> list[Event]:
    """The W-window events, exactly as PERFORMANCE.md defines them."""
    rnd = random.Random(7)
    return [
        {"device": f"pi-{i % 100:03d}", "sensor": "temp", "ts": BASE_TS + i * 0.001,
         "value": rnd.gauss(20, 3)}
        for i in range(count)
    ]  # fmt: skip


def checksum(results: list[Any]) -> Checksum:
    """Windows, sum of counts, sum of averages (3 places) of window result dicts."""
    counts = sum(int(r["count"]) for r in results)
    averages = math.fsum(float(r["avg"]) for r in results)
    return len(results), counts, round(averages, 3)


def fmt_checksum(value: Checksum) -> str:
    return f"{value[0]:,} windows, {value[1]:,} events, avg sum {value[2]:,.3f}"


# ------------------------------------------------------------------ contenders
# Each takes the events and the batch size and returns (seconds, window result dicts).


def plain_loop(events: list[Event], batch: int) -> tuple[float, list[Any]]:
    """Hand-written: one accumulator per device for the current window; when event time
    enters a new window every open one closes (events arrive in time order)."""
    start = time.perf_counter()
    results: list[Any] = []
    emit = results.append
    accs: dict[str, list[float]] = {}
    current = -math.inf
    for e in events:
        value = e["value"]
        if value > 15:
            ts = e["ts"]
            window = ts - ts % WINDOW
            if window != current:
                if window < current:
                    continue  # late: its window has closed
                for key, a in accs.items():
                    emit({"key": key, "window_start": a[0], "window_end": a[0] + WINDOW,
                          "count": a[1], "avg": a[2] / a[1], "min": a[3], "max": a[4]})  # fmt: skip
                accs = {}
                current = window
            device = e["device"]
            acc = accs.get(device)
            if acc is None:
                accs[device] = [window, 1, value, value, value]
            else:
                acc[1] += 1
                acc[2] += value
                if value < acc[3]:
                    acc[3] = value
                elif value > acc[4]:
                    acc[4] = value
    for key, a in accs.items():
        emit({"key": key, "window_start": a[0], "window_end": a[0] + WINDOW,
              "count": a[1], "avg": a[2] / a[1], "min": a[3], "max": a[4]})  # fmt: skip
    return time.perf_counter() - start, results


def bytewax_available() -> str | None:
    """None when Bytewax can be imported, else the reason."""
    try:
        importlib.import_module("bytewax.operators.windowing")
        importlib.import_module("bytewax.testing")
    except ImportError:
        return f"not installed (pip install bytewax=={BYTEWAX_VERSION})"
    return None


def run_bytewax(events: list[Event], batch: int) -> tuple[float, list[Any]]:
    """Bytewax's own windowing; imported dynamically so that it stays optional."""
    dataflow: Any = importlib.import_module("bytewax.dataflow")
    op: Any = importlib.import_module("bytewax.operators")
    win: Any = importlib.import_module("bytewax.operators.windowing")
    testing: Any = importlib.import_module("bytewax.testing")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    fixed_now = datetime(2000, 1, 1, tzinfo=UTC)
    length = timedelta(seconds=WINDOW)

    def fold(acc: list[float], e: Event) -> list[float]:
        value = e["value"]
        acc[0] += 1
        acc[1] += value
        if value < acc[2]:  # noqa: PLR1730 (as fast as the loop's: no min() call)
            acc[2] = value
        if value > acc[3]:  # noqa: PLR1730
            acc[3] = value
        return acc

    def merge(a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3])]

    out: list[tuple[str, tuple[int, list[float]]]] = []
    flow = dataflow.Dataflow("w_window")
    up = op.input("in", flow, testing.TestingSource(events, batch))
    hot = op.filter("filter", up, lambda e: e["value"] > 15)
    keyed = op.key_on("key", hot, lambda e: e["device"])
    clock = win.EventClock(
        ts_getter=lambda e: datetime.fromtimestamp(e["ts"], UTC),
        wait_for_system_duration=timedelta(0),
        now_getter=lambda: fixed_now,
        to_system_utc=lambda _ts: None,
    )
    windower = win.TumblingWindower(length=length, align_to=epoch)
    windows = win.fold_window(
        "window", keyed, clock, windower,
        builder=lambda: [0, 0.0, math.inf, -math.inf], folder=fold, merger=merge,
    )  # fmt: skip
    op.output("out", windows.down, testing.TestingSink(out))
    start = time.perf_counter()
    testing.run_main(flow)
    results = []
    for key, (window_id, a) in out:
        window_start = (epoch + window_id * length).timestamp()
        results.append({"key": key, "window_start": window_start,
                        "window_end": window_start + WINDOW, "count": a[0],
                        "avg": a[1] / a[0], "min": a[2], "max": a[3]})  # fmt: skip
    return time.perf_counter() - start, results


def agent_config() -> Any:
    """The bench pipeline's AgentConfig (the dict, or its YAML text for older parsers)."""
    import json

    from agent.config.load import parse_agent_config

    parse: Callable[[Any], Any] = parse_agent_config
    try:
        return parse(AGENT_CONFIG)
    except (TypeError, AttributeError):  # a parser that takes YAML text: JSON is YAML
        return parse(json.dumps(AGENT_CONFIG))


def compile_bench_pipeline() -> Any:
    """A fresh CompiledPipeline of the bench config (not timed)."""
    from agent.pipeline.build import compile_pipeline

    return compile_pipeline(agent_config().pipelines[0])


def engine_batches(events: list[Event], batch: int) -> tuple[float, list[Any]]:
    """The engine fed batches of `batch` events built in the timed section."""
    from agent.pipeline.batch import Batch
    from agent.pipeline.operator import SideOutputs

    chain = compile_bench_pipeline().chain
    side = SideOutputs()
    results: list[Any] = []
    of_payloads = Batch.of_payloads
    start = time.perf_counter()
    for first in range(0, len(events), batch):
        chunk = events[first : first + batch]
        out = chain.process(of_payloads(chunk, [p["ts"] for p in chunk]), side)
        if len(out):
            results.extend(out.payloads)
    results.extend(chain.flush(side).payloads)
    return time.perf_counter() - start, results


def engine_single(events: list[Event], batch: int) -> tuple[float, list[Any]]:
    """The engine fed one event per batch."""
    from agent.pipeline.batch import Batch
    from agent.pipeline.operator import SideOutputs

    chain = compile_bench_pipeline().chain
    side = SideOutputs()
    results: list[Any] = []
    of_payloads = Batch.of_payloads
    process = chain.process
    start = time.perf_counter()
    for p in events:
        out = process(of_payloads([p], [p["ts"]]), side)
        if len(out):
            results.extend(out.payloads)
    results.extend(chain.flush(side).payloads)
    return time.perf_counter() - start, results


# ------------------------------------------------------------------ through the durable queue
# Kept apart because the runner's API is still moving: a separate process fills a
# template queue once (so neither the events nor the appends weigh on this process's
# RSS); each run copies the template and drains it with PipelineRunner.step_once.


def queue_limits() -> dict[str, Any]:
    """Streams "in" and "out", large enough that retention never drops an event."""
    from agent.queue import StreamLimits

    unbounded = StreamLimits(max_bytes=1 << 40, max_age=100 * 365 * 86400.0)
    return {"in": unbounded, "out": unbounded}


async def open_queue(directory: Path) -> Any:
    """The queue with the agent's default commit settings."""
    from agent.queue import DurableQueue

    settings = agent_config().queue
    return await DurableQueue.open(
        directory, queue_limits(), commit_interval=settings.commit_interval,
        commit_max_events=settings.commit_max_events, synchronous=settings.synchronous,
    )  # fmt: skip


async def fill_queue(directory: Path, events: list[Event], chunk: int = 50_000) -> None:
    """Append the events to stream "in" as a source stores them (JSON, key = device)."""
    import orjson

    from agent.queue import NewEvent

    queue = await open_queue(directory)
    try:
        now = time.time()
        dumps = orjson.dumps
        for first in range(0, len(events), chunk):
            part = events[first : first + chunk]
            await queue.append(
                "in", [NewEvent(e["ts"], now, e["device"], None, dumps(e)) for e in part]
            )
    finally:
        await queue.close()


def fill_template(directory: str, count: int) -> None:
    """Target of the filling process."""
    asyncio.run(fill_queue(Path(directory), build_events(count)))


async def drain_queue(directory: Path, batch: int) -> tuple[float, list[Any]]:
    """Time the runner's own loop (`run`, commits pipelined) until its committed cursor
    reaches the end of the input; then collect the results."""
    import orjson

    from agent.pipeline.operator import SideOutputs
    from agent.pipeline.runner import PipelineRunner

    queue = await open_queue(directory)
    try:
        runner = PipelineRunner(compile_bench_pipeline(), queue, batch)
        end = queue.last_seq("in")
        start = time.perf_counter()
        task = asyncio.ensure_future(runner.run())
        while True:  # the committed cursor, polled: what a restart would resume from
            if await queue.cursor("in", runner.consumer) >= end:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        results: list[Any] = []
        position = 0
        while True:
            read = await queue.read_after("out", position, 10_000, 1 << 26)
            if not read.events:
                break
            results.extend(orjson.loads(e.payload) for e in read.events)
            position = read.upto_seq
        results.extend(runner.chain.flush(SideOutputs()).payloads)  # windows still open
        return elapsed, results
    finally:
        await queue.close()


class QueueContender:
    """Setup (outside the timed part) and one timed run per call."""

    def __init__(self, count: int, batch: int) -> None:
        importlib.import_module("agent.pipeline.runner")  # fail before the slow fill
        self.batch = batch
        self.root = Path(tempfile.mkdtemp(prefix="edgestream-bench-window-"))
        self.template = self.root / "template"
        self.runs = 0
        filler = multiprocessing.get_context("spawn").Process(
            target=fill_template, args=(str(self.template), count)
        )
        filler.start()
        filler.join()
        if filler.exitcode != 0:
            self.close()
            raise RuntimeError(f"filling the queue failed (exit code {filler.exitcode})")

    def __call__(self, events: list[Event], batch: int) -> tuple[float, list[Any]]:
        self.runs += 1
        work = self.root / f"run{self.runs}"
        shutil.copytree(self.template, work)
        try:
            return asyncio.run(drain_queue(work, self.batch))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------ one contender per process


@dataclass(frozen=True, slots=True)
class Contender:
    name: str  # command-line name
    label: str


CONTENDERS = (
    Contender("loop", "plain loop"),
    Contender("bytewax", f"bytewax {BYTEWAX_VERSION}, batches of {{batch}}"),
    Contender("engine", "edgestream engine, batches of {batch}"),
    Contender("single", "edgestream engine, one event at a time"),
    Contender("queue", "edgestream through the durable queue, batches of {batch}"),
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a contender process does (sent to the child; results come back as a dict)."""

    count: int  # events
    runs: int  # at most this many timed runs...
    budget: float  # ...and no new run once the timed runs add up to this many seconds
    batch: int


def _status_kib(field: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mib() -> float:
    hwm = _status_kib("VmHWM")
    if hwm is None:
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return hwm / 1024


def run_contender(name: str, plan: Plan) -> dict[str, Any]:
    """In the child: set up (events, queue), then the timed runs; primitives only."""
    report: dict[str, Any] = {"name": name, "seconds": [], "checksum": None, "error": None}
    if name == "bytewax" and (missing := bytewax_available()) is not None:
        report["error"] = missing
        report["skipped"] = True
        return report
    contender: Callable[[list[Event], int], tuple[float, list[Any]]]
    queue: QueueContender | None = None
    events: list[Event] = []
    started = time.perf_counter()
    try:
        if name == "queue":
            contender = queue = QueueContender(plan.count, plan.batch)
        else:
            events = build_events(plan.count)
            contender = {
                "loop": plain_loop, "bytewax": run_bytewax,
                "engine": engine_batches, "single": engine_single,
            }[name]  # fmt: skip
        report["setup_seconds"] = time.perf_counter() - started
        gc.collect()
        report["rss_ready"] = (_status_kib("VmRSS") or 0) / 1024
        report["peak_is_since_ready"] = _reset_peak()
        while len(report["seconds"]) < plan.runs and sum(report["seconds"]) < plan.budget:
            seconds, results = contender(events, plan.batch)
            report["seconds"].append(seconds)
            report["checksum"] = checksum(results)
            del results
            gc.collect()
        report["rss_peak"] = _peak_mib()
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
    finally:
        if queue is not None:
            queue.close()
    return report


def _child(name: str, plan: Plan, conn: Any) -> None:
    try:
        report = run_contender(name, plan)
    except BaseException as exc:  # even an import error must reach the parent
        error = f"{type(exc).__name__}: {exc}"
        report = {"name": name, "seconds": [], "checksum": None, "error": error,
                  "traceback": traceback.format_exc()}  # fmt: skip
    conn.send(report)
    conn.close()


def spawn_contender(name: str, plan: Plan, timeout: float) -> dict[str, Any]:
    """Run one contender in a fresh spawned interpreter; its report, or an error."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    # Not a daemon: the queue contender starts a process of its own to fill the queue.
    process = ctx.Process(target=_child, args=(name, plan, sender))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise TimeoutError(f"no result after {timeout:.0f} s")
        report: dict[str, Any] = receiver.recv()
    except (EOFError, OSError, TimeoutError) as exc:
        detail = "the process died" if isinstance(exc, EOFError) else str(exc)
        report = {"name": name, "seconds": [], "checksum": None, "error": detail}
    finally:
        receiver.close()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(10)
    if process.exitcode not in (0, None) and report.get("error") is None:
        report["error"] = f"exit code {process.exitcode}"
    return report


# ------------------------------------------------------------------ report


@dataclass(slots=True)
class Outcome:
    label: str
    report: dict[str, Any]
    rate: float | None  # best events/s, None when it did not run or gave a wrong result
    check: str


def judge(label: str, report: dict[str, Any], count: int, reference: Checksum | None) -> Outcome:
    """Verify the checksum; the rate counts only when the result is right."""
    if report.get("error"):
        return Outcome(label, report, None, "-")
    got = tuple(report["checksum"]) if report["checksum"] else None
    best = min(report["seconds"]) if report["seconds"] else None
    rate = count / best if best else None
    if got is None:
        return Outcome(label, report, None, "no result")
    if count == EVENTS:
        if got == EXPECTED:
            return Outcome(label, report, rate, "ok")
        report["error"] = f"WRONG RESULT: {fmt_checksum(got)}; expected {fmt_checksum(EXPECTED)}"
        return Outcome(label, report, None, "MISMATCH")
    note = f"not checked ({count:,} events, not {EVENTS:,})"
    if reference is not None and label != "plain loop":
        note += "; same as plain loop" if got == reference else "; DIFFERS from plain loop"
    return Outcome(label, report, rate, note)


def _row(outcome: Outcome) -> list[str]:
    r = outcome.report
    rss = (
        f"{r['rss_ready']:.0f} / {r['rss_peak']:.0f}"
        if "rss_ready" in r and "rss_peak" in r
        else "-"
    )
    if r.get("error"):
        return [outcome.label, r["error"], "-", "-", outcome.check, rss]
    seconds = r["seconds"]
    runs = ", ".join(f"{s:.3f}" for s in seconds)
    rate = fmt_int(outcome.rate) if outcome.rate else "-"
    return [outcome.label, rate, runs, fmt_checksum(tuple(r["checksum"])), outcome.check, rss]


def _verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a (no valid figure)"
    return "met" if value >= target else "MISSED"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report_targets(outcomes: dict[str, Outcome]) -> None:
    def rate(name: str) -> float | None:
        return outcomes[name].rate if name in outcomes else None

    engine, loop, bw = rate("engine"), rate("loop"), rate("bytewax")
    vs_bytewax, vs_loop = _ratio(engine, bw), _ratio(engine, loop)

    def show(value: float | None, unit: str) -> str:
        if value is None:
            return "-"
        return fmt_int(value) + " ev/s" if unit == "rate" else f"{value:.2f}x"

    rows = [
        ["engine, batches", f">= {fmt_int(TARGET_ENGINE)} ev/s", show(engine, "rate"),
         _verdict(engine, TARGET_ENGINE)],
        ["engine vs bytewax", f">= {TARGET_VS_BYTEWAX}x", show(vs_bytewax, "x"),
         _verdict(vs_bytewax, TARGET_VS_BYTEWAX)],
        ["engine vs plain loop", ">= 0.33x (1/3)", show(vs_loop, "x"),
         _verdict(vs_loop, TARGET_VS_LOOP)],
        ["engine, one event at a time", f">= {fmt_int(TARGET_SINGLE)} ev/s",
         show(rate("single"), "rate"), _verdict(rate("single"), TARGET_SINGLE)],
        ["through the durable queue", f">= {fmt_int(TARGET_QUEUE)} ev/s",
         show(rate("queue"), "rate"), _verdict(rate("queue"), TARGET_QUEUE)],
    ]  # fmt: skip
    print_table("W-window targets (PERFORMANCE.md)", ["metric", "target", "measured", "verdict"],
                rows)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [c.name for c in CONTENDERS]
    parser.add_argument("--events", type=int, default=EVENTS,
                        help=f"events to run (checksum checked only at {EVENTS:,})")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="runs per contender; best counts")
    parser.add_argument("--batch", type=int, default=1000,
                        help="batch size: engine, Bytewax source, queue reads")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one run per contender")
    parser.add_argument("--only", nargs="+", choices=names, default=names, metavar="NAME",
                        help=f"contenders to run, among {', '.join(names)}")  # fmt: skip
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="no further run of a contender once its runs took this long (s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=500.0,
        help="seconds allowed per contender process, setup included",
    )
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    if args.events < 1 or runs < 1 or args.batch < 1:
        parser.error("--events, --runs and --batch must be positive")
    plan = Plan(args.events, runs, args.budget, args.batch)
    print_machine()
    bytewax_version = "-"
    if bytewax_available() is None:
        from importlib.metadata import version

        bytewax_version = version("bytewax")
    print_table(
        "Setup",
        ["what", "value"],
        [
            ["events", f"{args.events:,}"],
            [
                "runs per contender (best counts)",
                f"{runs} (fewer once the runs took {args.budget:.0f} s)",
            ],
            ["batch size", args.batch],
            ["bytewax", bytewax_version],
            ["each contender", "its own spawned process; events built (or queued) before timing"],
        ],
    )

    outcomes: dict[str, Outcome] = {}
    reference: Checksum | None = None
    for contender in CONTENDERS:
        if contender.name not in args.only:
            continue
        label = contender.label.format(batch=args.batch)
        print(f"running: {label} ...", file=sys.stderr, flush=True)
        report = spawn_contender(contender.name, plan, args.timeout)
        if report.get("traceback"):
            print(report["traceback"], file=sys.stderr, flush=True)
        if contender.name == "loop" and report.get("checksum") and not report.get("error"):
            reference = tuple(report["checksum"])
        outcomes[contender.name] = judge(label, report, args.events, reference)

    print_table(
        f"W-window, {args.events:,} events (best of up to {runs} runs)",
        ["contender", "events/s", "runs (s)", "checksum", "check", "RSS ready / peak (MiB)"],
        [_row(o) for o in outcomes.values()],
    )
    report_targets(outcomes)
    failed = [o.label for o in outcomes.values() if o.report.get("error") and
              not o.report.get("skipped")]  # fmt: skip
    if failed:
        print(f"\nFailed or wrong: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The agent's metrics: its components' stats objects, read when Prometheus scrapes.

Nothing here runs per event. Sources, pipelines and the uplink already count what
they do; the durable queue keeps depth, bytes, ages and its persistent counters
(drops, dead letters and gaps by reason) in SQLite, read on its reader thread. A
scrape turns these into families; every name is documented in docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent.config.model import AgentConfig
from agent.queue import DEADLETTER_STREAM, DurableQueue, StreamStats
from agent.queue.streams import DEADLETTER_LIMITS
from agent.reload import ReloadStats
from agent.sources.file import FileSource
from agent.sources.http import HttpSource
from agent.sources.mqtt import MqttSource
from agent.sources.polling import PollingSource
from sync.metrics import Family, Registry, counter, gauge, process_families
from sync.uplink import Uplink

if TYPE_CHECKING:
    from agent.daemon import Components, RunningSource

_COUNTER_FAMILIES = {
    "dropped": "edgestream_stream_dropped_events_total",
    "dead_lettered": "edgestream_stream_dead_lettered_events_total",
}


def agent_registry(
    config: AgentConfig, queue: DurableQueue, parts: Components, reloads: ReloadStats | None = None
) -> Registry:
    """The registry of one running agent (built again after each applied reload)."""
    registry = Registry()

    async def info() -> list[Family]:
        family = Family("edgestream_agent_info", "gauge", "Always 1; labels name the device.")
        family.add(1, device_id=config.device_id)
        aside = Family(
            "edgestream_queue_set_aside", "gauge",
            "1 when a corrupt queue database was moved aside at start (label: where).",
        )  # fmt: skip
        moved = queue.set_aside
        aside.add(0 if moved is None else 1, path="" if moved is None else str(moved))
        return [family, aside]

    async def streams() -> list[Family]:
        return stream_families(await queue.stats(), _max_bytes(config), time.time())

    async def components() -> list[Family]:
        families = source_families(parts.sources) + pipeline_families(parts)
        return families + ([] if parts.uplink is None else uplink_families(parts.uplink))

    async def reload() -> list[Family]:
        return [] if reloads is None else reload_families(reloads)

    for collector in (info, streams, components, reload, process_families):
        registry.register(collector)
    return registry


def reload_families(stats: ReloadStats) -> list[Family]:
    """Reloads by result and whether the last one was applied (as Prometheus names it)."""
    total = counter("edgestream_config_reloads_total", "Config reloads by result.")
    total.add(stats.applied, result="applied")
    total.add(stats.refused, result="refused")
    last_ok = gauge(
        "edgestream_config_last_reload_successful",
        "1 when the last reload was applied (or none was asked for), 0 when it was refused.",
    )
    last_ok.add(1 if stats.last_ok else 0)
    families = [total, last_ok]
    if stats.last_at is not None:
        when = gauge(
            "edgestream_config_last_reload_timestamp_seconds", "When the last reload was asked for."
        )
        when.add(stats.last_at)
        families.append(when)
    return families


def _max_bytes(config: AgentConfig) -> dict[str, int]:
    limits = {name: stream.max_bytes for name, stream in config.streams.items()}
    limits[DEADLETTER_STREAM] = DEADLETTER_LIMITS.max_bytes
    return limits


# ------------------------------------------------------------------------- streams


def stream_families(
    stats: Iterable[StreamStats], max_bytes: dict[str, int], now: float
) -> list[Family]:
    """Depth, size, budget, ages, consumer lag and counters by reason, per stream."""
    depth = gauge("edgestream_stream_depth_events", "Events stored in the stream.")
    size = gauge("edgestream_stream_bytes", "Bytes the stream's events take in the queue.")
    budget = gauge("edgestream_stream_max_bytes", "Retention limit of the stream in bytes.")
    unsent = gauge(
        "edgestream_stream_oldest_unsent_age_seconds",
        "Age of the oldest event some consumer has not taken yet; 0 when none waits.",
    )
    last = gauge("edgestream_stream_last_seq", "Sequence number of the newest event.")
    lag = gauge("edgestream_stream_consumer_lag_events", "Events a consumer has yet to read.")
    by_reason = {
        "dropped": counter(_COUNTER_FAMILIES["dropped"], "Events dropped by retention, by reason."),
        "dead_lettered": counter(
            _COUNTER_FAMILIES["dead_lettered"], "Events dead-lettered on intake, by reason."
        ),
        "other": counter("edgestream_stream_incidents_total", "Other per-stream counters."),
    }
    for s in stats:
        depth.add(s.depth, stream=s.name)
        size.add(s.bytes, stream=s.name)
        budget.add(max_bytes.get(s.name), stream=s.name)
        unsent.add(_age(s.oldest_unsent_time, now), stream=s.name)
        last.add(s.last_seq, stream=s.name)
        for c in s.cursors:
            lag.add(max(0, s.last_seq - c.position), stream=s.name, consumer=c.consumer)
        _add_counters(by_reason, s)
    return [depth, size, budget, unsent, last, lag, *by_reason.values()]


def _age(since: float | None, now: float) -> float:
    return 0.0 if since is None else max(0.0, now - since)


def _add_counters(families: dict[str, Family], stats: StreamStats) -> None:
    """`dropped.<reason>` and `dead_lettered.<reason>` by reason; the rest by name."""
    for name, value in sorted(stats.counters.items()):
        kind, _, reason = name.partition(".")
        if kind in _COUNTER_FAMILIES and reason:
            families[kind].add(value, stream=stats.name, reason=reason)
        else:
            families["other"].add(value, stream=stats.name, counter=name)


# ------------------------------------------------------------------------- sources


def source_families(sources: Iterable[RunningSource]) -> list[Family]:
    """Per source: events received, stored, dead-lettered, errors; MQTT connection."""
    received = counter("edgestream_source_received_total", "Messages, lines or polls taken in.")
    stored = counter("edgestream_source_events_stored_total", "Events committed to the queue.")
    dead = counter("edgestream_source_dead_lettered_total", "Events sent to the dead letters.")
    errors = counter("edgestream_source_errors_total", "Failed reads, polls or requests.")
    dropped = counter("edgestream_source_dropped_total", "Events not stored, by reason.")
    skipped = counter("edgestream_source_skipped_polls_total", "Poll slots missed (running late).")
    connected = gauge("edgestream_source_connected", "1 while an MQTT source is connected.")
    for source in sources:
        labels = {"source": source.name, "stream": _stream(source)}
        stored.add(source.stats.stored, **labels)
        if isinstance(source, MqttSource):
            received.add(source.stats.received, **labels)
            dead.add(source.stats.dead_lettered, **labels)
            dropped.add(source.stats.rate_limited, **labels, reason="rate_limited")
            connected.add(int(source.connection.is_connected), source=source.name)
        elif isinstance(source, FileSource):
            received.add(source.stats.lines, **labels)
            dead.add(source.stats.dead_lettered, **labels)
            errors.add(source.stats.errors, **labels)
        elif isinstance(source, HttpSource):
            received.add(source.stats.requests, **labels)
            dropped.add(source.stats.dropped, **labels, reason="stream_full")
            for reason, count in sorted(source.stats.rejected.items()):
                errors.add(count, **labels, reason=reason)
        elif isinstance(source, PollingSource):
            received.add(source.stats.polls, **labels)
            errors.add(source.stats.errors, **labels)
            skipped.add(source.stats.skipped_slots, **labels)
    return [received, stored, dead, errors, dropped, skipped, connected]


def _stream(source: RunningSource) -> str:
    return source.stream if isinstance(source, PollingSource) else source.config.stream


# ----------------------------------------------------------------------- pipelines


def pipeline_families(parts: Components) -> list[Family]:
    """Per pipeline: events in and out, errors, and the size of its window state."""
    events_in = counter("edgestream_pipeline_events_in_total", "Events read by the pipeline.")
    events_out = counter("edgestream_pipeline_events_out_total", "Events written to its output.")
    side = counter("edgestream_pipeline_side_events_total", "Events written to side outputs.")
    errors = counter("edgestream_pipeline_errors_total", "Events whose processing failed.")
    state = gauge("edgestream_pipeline_state_bytes", "Size of the last committed step state.")
    for runner in parts.pipelines:
        stats, name = runner.stats, runner.name
        events_in.add(stats.events_in, pipeline=name)
        events_out.add(stats.events_out, pipeline=name)
        side.add(stats.side_out, pipeline=name)
        errors.add(stats.errors, pipeline=name)
        state.add(stats.state_bytes, pipeline=name)
    return [events_in, events_out, side, errors, state]


# -------------------------------------------------------------------------- uplink


def uplink_families(uplink: Uplink) -> list[Family]:
    """Connection, last ack, what was sent, compression, retries and bandwidth waits."""
    s = uplink.stats
    ratio = s.raw_bytes / s.bytes_sent if s.bytes_sent else None
    batch_size = gauge("edgestream_uplink_batch_size_events", "Current adaptive batch size.")
    for stream, size in sorted(s.batch_sizes.items()):
        batch_size.add(size, stream=stream)
    return [
        gauge("edgestream_uplink_connected", "1 while connected to the hub's broker.",
              int(uplink.connection.is_connected)),
        gauge("edgestream_uplink_last_ack_timestamp_seconds",
              "Unix time of the hub's last acknowledgement.", s.last_ack_at),
        counter("edgestream_uplink_batches_total", "Batches acknowledged by the hub.", s.batches),
        counter("edgestream_uplink_events_total", "Events acknowledged by the hub.", s.events),
        counter("edgestream_uplink_gaps_total", "Gaps reported to the hub.", s.gaps),
        counter("edgestream_uplink_bytes_sent_total",
                "Encoded bytes of acknowledged batches, each once.", s.bytes_sent),
        counter("edgestream_uplink_raw_bytes_total",
                "Uncompressed bytes of acknowledged batches.", s.raw_bytes),
        counter("edgestream_uplink_bytes_published_total",
                "Encoded bytes of every publish, retries included.", s.bytes_published),
        gauge("edgestream_uplink_compression_ratio",
              "Raw bytes over sent bytes since start.", ratio),
        counter("edgestream_uplink_retries_total", "Batches sent again.", s.retries),
        counter("edgestream_uplink_throttled_seconds_total",
                "Time spent waiting for the bandwidth cap.", s.throttled_seconds),
        gauge("edgestream_uplink_budget_spent_today_bytes",
              "Bytes of the daily budget spent today.", s.budget_spent_today),
        counter("edgestream_uplink_budget_stops_total",
                "Days the daily budget ran out.", s.budget_stops),
        batch_size,
    ]  # fmt: skip

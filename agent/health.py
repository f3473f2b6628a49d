"""Why the agent is not ready: its brokers, its disk and its queue database.

The agent keeps collecting while its uplink is down (that is what the durable queue
is for), so "not ready" is not "broken": it tells an operator's probe which promise
is at risk -- data not leaving the device, data about to be dropped for lack of
room, or data no longer stored at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.queue import DurableQueue
from agent.sources.mqtt import MqttSource
from sync.health import DownTimer, connection_reason, disk_reason, writable_reason
from sync.metrics_config import MetricsConfig
from sync.metrics_server import Readiness

if TYPE_CHECKING:
    from agent.daemon import Components


def agent_readiness(
    config: MetricsConfig, data_dir: str, queue: DurableQueue, parts: Components
) -> Readiness:
    """The readiness check of one running agent, each reason a sentence."""
    timers: dict[str, DownTimer] = {}  # created on first use, keyed by what they watch
    started = DownTimer()  # never up: a connection not reached yet counts from here

    def connection(what: str, up: bool) -> str | None:
        timer = timers.setdefault(what, started.copy())
        return connection_reason(what, timer, up, config.disconnected_grace)

    async def reasons() -> list[str]:
        found = [
            connection(f"MQTT source {s.name} broker {s.config.broker.url}",
                       s.connection.is_connected)
            for s in parts.sources
            if isinstance(s, MqttSource)
        ]  # fmt: skip
        if parts.uplink is not None:
            url = parts.uplink.config.broker.url
            found.append(connection(f"uplink broker {url}", parts.uplink.connection.is_connected))
        found.append(disk_reason(data_dir, config.min_free_disk))
        found.append(writable_reason(queue.path, "queue database"))
        return [reason for reason in found if reason is not None]

    return reasons

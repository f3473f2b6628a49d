"""SIGTERM under load (issue 6): intake stops, what was received is committed, the process
exits 0 within a bounded time, and every message the broker acknowledged to the publisher
is in the queue exactly once after the restarts.

The broker (tests/brokers.py) persists sessions and queues up to 1,000,000 messages per
client, so nothing is dropped on its side. The agent's source keeps a persistent session
(`clean_session: false`, the default, with its default client id), so what the broker
acknowledged to the publisher while the agent was stopping or down is delivered after
the restart, and what the agent had received but not acknowledged is delivered again.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import MosquittoBroker
from tests.e2e.harness import (
    EdgestreamProcess,
    Publisher,
    agent_config,
    query,
    queue_last_seq,
    reading,
    wait_until,
    write_yaml,
)

pytestmark = pytest.mark.slow

ROUNDS = 5
EXIT_WITHIN = 15.0
INGESTED_PER_ROUND = 2_000
FEED_LIMIT = 1_000_000  # a safety bound; the feed is stopped after the last SIGTERM
CHUNK = 500
SOURCE_CLIENT_ID = "edgestream-pi-test-plant"  # edgestream-<device_id>-<source name>
CLEAN_CLOSE = "queue closed cleanly"


class NumberedFeed:
    """Publishes reading 0, 1, 2, ... at QoS 1 at full speed from a thread until stopped.

    `acked` counts the readings the broker has PUBACKed, all of them below it: each
    chunk is waited for before the next is sent, so the acknowledged set is a prefix.
    """

    def __init__(self, url: str) -> None:
        self.publisher = Publisher(url, client_id="sigterm-feed")
        self.acked = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sigterm-feed", daemon=True)

    def start(self) -> NumberedFeed:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self.acked < FEED_LIMIT:
                self._publish_chunk(self.acked, self.acked + CHUNK)
                self.acked += CHUNK
        except BaseException as error:  # reported by stop()
            self.error = error

    def _publish_chunk(self, start: int, stop: int) -> None:
        infos = [
            self.publisher.client.publish(f"plant/{r['device']}", orjson.dumps(r), qos=1)
            for r in map(reading, range(start, stop))
        ]
        for info in infos:
            info.wait_for_publish(60)
            if not info.is_published():
                raise TimeoutError(f"no PUBACK within 60 s for a reading in {start}..{stop}")

    def stop(self) -> int:
        """Stop after the chunk in flight; the number of readings acknowledged (0..n-1)."""
        self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "the feed did not stop"
        if self.error is not None:
            raise self.error
        return self.acked

    def send_last(self, i: int) -> None:
        """One more reading on the same connection: the broker delivers it after the rest."""
        self._publish_chunk(i, i + 1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(120)
        self.publisher.close()


def create_session(url: str, client_id: str, topic: str) -> None:
    """Create the source's persistent session and subscription before the feed starts.

    From then on the broker queues every matching message for the agent, even one
    published before the agent's first connection, so the feed can start at once.
    """
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, int(port))
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "no SUBACK for the source's session"
    finally:
        client.disconnect()
        client.loop_stop()


def sigterm_config(tmp: Path, url: str) -> dict[str, Any]:
    """One MQTT source at QoS 1, persistent session, no uplink: the queue keeps everything."""
    config = agent_config(tmp, url, url, uplink_raw=False)
    del config["uplink"]
    config["sources"][0]["clean_session"] = False
    config["metrics"] = {"enabled": False}
    return config


def stop_and_check(agent: EdgestreamProcess, queue_db: Path, stops: int) -> float:
    """SIGTERM; it must exit 0 in time, log a clean close and leave no WAL content."""
    assert agent.process is not None and agent.alive, agent.log_tail()
    started = time.monotonic()
    agent.process.send_signal(signal.SIGTERM)
    try:
        code = agent.process.wait(EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        pytest.fail(f"agent still running {EXIT_WITHIN}s after SIGTERM\n{agent.log_tail()}")
    took = time.monotonic() - started
    assert code == 0, f"exit code {code} after SIGTERM\n{agent.log_tail()}"
    log = agent.log_path.read_text(errors="replace")
    assert log.count(CLEAN_CLOSE) == stops, agent.log_tail()
    wal = queue_db.with_name(queue_db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, f"{wal} holds {wal.stat().st_size} B"
    return took


def stored_past(agent: EdgestreamProcess, queue_db: Path, seq: int) -> bool:
    """Whether the queue reached `seq`; fails at once if the agent exited meanwhile."""
    if not agent.alive:
        pytest.fail(f"the agent exited on its own\n{agent.log_tail()}")
    return queue_last_seq(queue_db) >= seq


def stored_readings(queue_db: Path) -> list[tuple[int, int]]:
    """(seq, reading i) of every event of the sensors stream, in seq order."""
    rows = query(
        queue_db,
        "SELECT e.seq, e.payload FROM events e JOIN streams s ON s.id = e.stream_id"
        " WHERE s.name = 'sensors' ORDER BY e.seq",
    )
    return [(seq, orjson.loads(payload)["i"]) for seq, payload in rows]


def drained(agent: EdgestreamProcess, queue_db: Path, last: int) -> bool:
    """Whether reading `last` was stored; fails at once if the agent exited meanwhile."""
    if not agent.alive:
        pytest.fail(f"the agent exited on its own\n{agent.log_tail()}")
    return last_reading(queue_db) == last


def last_reading(queue_db: Path) -> int | None:
    rows = query(
        queue_db,
        "SELECT e.payload FROM events e JOIN streams s ON s.id = e.stream_id"
        " WHERE s.name = 'sensors' ORDER BY e.seq DESC LIMIT 1",
    )
    return int(orjson.loads(rows[0][0])["i"]) if rows else None


@pytest.mark.timeout(600)  # five rounds of at most 60 s and a drain of at most 180 s
def test_sigterm_under_load_exits_cleanly_and_keeps_every_acknowledged_message_once(
    tmp_path: Path, mosquitto: MosquittoBroker, processes: list[EdgestreamProcess]
) -> None:
    """Five SIGTERMs while a QoS 1 feed runs at full speed: each exit is clean and quick,
    and after the last restart the queue holds every acknowledged reading exactly once."""
    config_path = write_yaml(tmp_path / "run.yaml", sigterm_config(tmp_path, mosquitto.url))
    queue_db = tmp_path / "agent-data" / "queue.db"
    create_session(mosquitto.url, SOURCE_CLIENT_ID, "plant/#")
    feed = NumberedFeed(mosquitto.url).start()
    try:
        exits, backlogs = [], []
        for stops in range(1, ROUNDS + 1):
            agent = EdgestreamProcess("run", config_path, tmp_path / "run.log").start()
            processes.append(agent)
            target = queue_last_seq(queue_db) + INGESTED_PER_ROUND
            wait_until(lambda: stored_past(agent, queue_db, target), 60, "ingest", agent)  # noqa: B023
            assert feed.running, f"the feed ended before SIGTERM {stops}: {feed.error!r}"
            backlogs.append(feed.acked - queue_last_seq(queue_db))
            exits.append(stop_and_check(agent, queue_db, stops))
        total = feed.stop()
        feed.send_last(total)  # a marker: once stored, everything before it was delivered

        agent = EdgestreamProcess("run", config_path, tmp_path / "run.log").start()
        processes.append(agent)
        wait_until(lambda: drained(agent, queue_db, total), 180, "the drain", agent)
        exits.append(stop_and_check(agent, queue_db, ROUNDS + 1))
    finally:
        feed.close()

    rows = stored_readings(queue_db)
    readings = sorted(i for _, i in rows)
    missing = sorted(set(range(total + 1)) - set(readings))
    assert not missing, f"{len(missing)} acknowledged readings lost, first {missing[:10]}"
    assert len(readings) == len(set(readings)), f"{len(readings) - total - 1} stored twice"
    assert readings == list(range(total + 1))
    assert [seq for seq, _ in rows] == list(range(1, total + 2))
    assert query(queue_db, "SELECT count(*) FROM gaps") == [(0,)]
    assert queue_last_seq(queue_db, "_deadletter") == 0
    assert total >= ROUNDS * INGESTED_PER_ROUND
    assert max(backlogs) > 0, "no SIGTERM left acknowledged readings waiting at the broker"
    took = ", ".join(f"{s:.2f}" for s in exits)
    print(
        f"\n{total + 1} readings stored once; at each SIGTERM the broker held {backlogs}"
        f" acknowledged readings the queue did not; exits took {took} s"
    )

"""MqttConnection against a real Mosquitto: QoS, manual ack, backpressure, reconnects."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from sync import condition_log
from sync.backoff import Backoff
from sync.mqtt.config import MqttConnectionConfig, TlsConfig
from sync.mqtt.connection import MqttConnection
from sync.mqtt.errors import MqttConnectionClosed, MqttConnectionLost
from sync.mqtt.message import MqttMessage, Outbox, Window
from tests.brokers import (
    BrokerFactory,
    BrokerPki,
    MosquittoBroker,
    free_port,
    make_test_pki,
    unique_topic,
)

pytestmark = pytest.mark.timeout(120)

LOGGER = "sync.mqtt.connection"


def broker_config(url: str, **overrides: Any) -> MqttConnectionConfig:
    """Fast retries so reconnect tests finish in seconds."""
    settings: dict[str, Any] = {
        "url": url,
        "keepalive": 10.0,
        "connect_timeout": 5.0,
        "backoff_initial": 0.1,
        "backoff_max": 0.5,
    }
    settings.update(overrides)
    return MqttConnectionConfig(**settings)


class Collector:
    """on_message target: keeps messages and lets a test wait for a count."""

    def __init__(self) -> None:
        self.messages: list[MqttMessage] = []
        self._changed = asyncio.Event()
        self.hook: Callable[[MqttMessage], None] | None = None

    def __call__(self, message: MqttMessage) -> None:
        self.messages.append(message)
        if self.hook is not None:
            self.hook(message)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[MqttMessage]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages

    @property
    def payloads(self) -> list[bytes]:
        return [message.payload for message in self.messages]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition the connection offers no event for."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(connection: MqttConnection, *, connected: bool = True) -> AsyncIterator[None]:
    """Run a connection for the body of a ``with``, then cancel it and wait for its end."""
    task = asyncio.create_task(connection.run(), name="test-connection")
    try:
        if connected:
            assert await connection.wait_connected(10), "connection did not come up"
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    return unique_topic(request)


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_round_trip_keeps_order_at_each_qos(
    mosquitto: MosquittoBroker, topic: str, qos: int
) -> None:
    """Messages published at QoS 0/1/2 arrive once each, in order, with their QoS."""
    config = broker_config(mosquitto.url)
    inbox = Collector()
    subscriber = MqttConnection(
        config, client_id="sub", subscriptions=[(topic, qos)], on_message=inbox
    )
    publisher = MqttConnection(config, client_id="pub")
    async with running(subscriber), running(publisher):
        for index in range(50):
            await publisher.publish(topic, b"%d" % index, qos=qos)
        await inbox.wait_for(50)
    assert inbox.payloads == [b"%d" % index for index in range(50)]
    assert {message.qos for message in inbox.messages} == {qos}
    assert all(message.topic == topic and not message.dup for message in inbox.messages)


async def test_publish_before_connect_waits_for_connection(
    mosquitto: MosquittoBroker, topic: str
) -> None:
    """A publish issued before run() starts completes once the connection is up."""
    publisher = MqttConnection(broker_config(mosquitto.url), client_id="early")
    pending = asyncio.create_task(publisher.publish(topic, b"early", qos=1))
    await asyncio.sleep(0.1)
    assert not pending.done()
    async with running(publisher, connected=False):
        await asyncio.wait_for(pending, 10)


async def test_publish_after_shutdown_raises_closed(mosquitto: MosquittoBroker, topic: str) -> None:
    """Once run() has ended, publish() fails fast instead of waiting forever."""
    publisher = MqttConnection(broker_config(mosquitto.url), client_id="closing")
    async with running(publisher):
        pass
    assert not publisher.is_connected
    with pytest.raises(MqttConnectionClosed):
        await publisher.publish(topic, b"late")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_unacked_message_is_redelivered_after_restart_and_acked_one_is_not(
    mosquitto: MosquittoBroker, topic: str, protocol: str
) -> None:
    """With manual ack and a persistent session, only the message never acked comes back."""
    config = broker_config(mosquitto.url, protocol=protocol)
    first = Collector()
    consumer = MqttConnection(
        config,
        client_id="durable",
        clean_session=False,
        manual_ack=True,
        subscriptions=[(topic, 1)],
        on_message=first,
    )
    publisher = MqttConnection(config, client_id="pub")
    async with running(consumer), running(publisher):
        await publisher.publish(topic, b"acked", qos=1)
        await publisher.publish(topic, b"not acked", qos=1)
        acked, _ = await first.wait_for(2)
        consumer.ack(acked.mid, acked.qos)
        await asyncio.sleep(0.2)  # let the PUBACK reach the broker before we disconnect

    second = Collector()
    restarted = MqttConnection(
        config,
        client_id="durable",
        clean_session=False,
        manual_ack=True,
        subscriptions=[(topic, 1)],
        on_message=second,
    )
    async with running(restarted):
        (redelivered,) = await second.wait_for(1)
        restarted.ack(redelivered.mid, redelivered.qos)
        await asyncio.sleep(0.5)  # an acked message would have arrived by now
    assert second.payloads == [b"not acked"]
    assert redelivered.dup


async def test_ack_after_connection_loss_is_a_noop_and_broker_redelivers(
    mosquitto: MosquittoBroker, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An ack that finds the connection gone is dropped quietly; the broker redelivers."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    config = broker_config(mosquitto.url)
    inbox = Collector()
    consumer = MqttConnection(
        config,
        client_id="durable",
        clean_session=False,
        manual_ack=True,
        subscriptions=[(topic, 1)],
        on_message=inbox,
    )
    publisher = MqttConnection(config, client_id="pub")
    async with running(consumer), running(publisher):
        await publisher.publish(topic, b"once", qos=1)
        (first,) = await inbox.wait_for(1)
        mosquitto.stop()
        await until(lambda: not consumer.is_connected)
        consumer.ack(first.mid, first.qos)
        assert any("while disconnected" in r.getMessage() for r in caplog.records)
        mosquitto.start()
        _, again = await inbox.wait_for(2, timeout=15)
        consumer.ack(again.mid, again.qos)
    assert again.payload == b"once"
    assert again.dup


async def test_pause_holds_messages_and_resume_delivers_all_in_order(
    mosquitto: MosquittoBroker, topic: str
) -> None:
    """While paused nothing is delivered; after resume every message arrives in order."""
    config = broker_config(mosquitto.url)
    inbox = Collector()
    consumer = MqttConnection(
        config, client_id="slow", subscriptions=[(topic, 1)], on_message=inbox
    )
    publisher = MqttConnection(config, client_id="pub")
    async with running(consumer), running(publisher):
        await publisher.publish(topic, b"0", qos=1)
        await inbox.wait_for(1)
        consumer.pause_reading()
        for index in range(1, 201):
            await publisher.publish(topic, b"%d" % index, qos=1)
        await asyncio.sleep(0.5)
        assert inbox.payloads == [b"0"]
        consumer.resume_reading()
        await inbox.wait_for(201)
    assert inbox.payloads == [b"%d" % index for index in range(201)]


async def test_pause_from_inside_handler_stops_delivery_at_once(
    mosquitto: MosquittoBroker, topic: str
) -> None:
    """A handler that pauses gets no further message until resume, even within one read burst."""
    config = broker_config(mosquitto.url)
    inbox = Collector()
    consumer = MqttConnection(
        config, client_id="bursty", subscriptions=[(topic, 1)], on_message=inbox
    )
    inbox.hook = lambda message: consumer.pause_reading() if message.payload == b"5" else None
    publisher = MqttConnection(config, client_id="pub")
    async with running(consumer), running(publisher):
        await asyncio.gather(*(publisher.publish(topic, b"%d" % i, qos=1) for i in range(100)))
        await inbox.wait_for(6)
        await asyncio.sleep(0.3)
        assert inbox.payloads == [b"%d" % i for i in range(6)]
        consumer.resume_reading()
        await inbox.wait_for(100)
    assert inbox.payloads == [b"%d" % i for i in range(100)]


async def test_reconnects_after_broker_restart_and_completes_publishes_issued_while_down(
    mosquitto: MosquittoBroker, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Broker stopped mid-stream: publishes wait, then complete after the automatic reconnect."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    config = broker_config(mosquitto.url)
    inbox = Collector()
    consumer = MqttConnection(
        config,
        client_id="durable",
        clean_session=False,
        subscriptions=[(topic, 1)],
        on_message=inbox,
    )
    publisher = MqttConnection(config, client_id="pub")
    async with running(consumer), running(publisher):
        for index in range(20):
            await publisher.publish(topic, b"%d" % index, qos=1)
        await inbox.wait_for(20)
        mosquitto.stop()
        await until(lambda: not publisher.is_connected)
        during = [
            asyncio.create_task(publisher.publish(topic, b"%d" % index, qos=1))
            for index in range(20, 40)
        ]
        await asyncio.sleep(0.5)
        assert not any(task.done() for task in during)
        mosquitto.start()
        await asyncio.wait_for(asyncio.gather(*during), 15)
        await inbox.wait_for(40, timeout=15)
    assert set(inbox.payloads) == {b"%d" % index for index in range(40)}
    assert any("reconnected" in record.getMessage() for record in caplog.records)


async def test_20000_qos1_publishes_complete_without_queue_full(
    mosquitto: MosquittoBroker, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """20,000 concurrent QoS 1 publishes all complete; paho never reports QUEUE_SIZE."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    count = 20_000
    config = broker_config(mosquitto.url)
    publisher = MqttConnection(config, client_id="bulk-pub")
    async with running(publisher):
        started = time.perf_counter()
        await asyncio.gather(*(publisher.publish(topic, b"x" * 100, qos=1) for _ in range(count)))
        elapsed = time.perf_counter() - started
    logging.getLogger(__name__).info("%d QoS 1 publishes in %.2fs", count, elapsed)
    assert not [record for record in caplog.records if "QUEUE_SIZE" in record.getMessage()]


async def test_mqtt5_publishes_stay_within_broker_receive_maximum(
    mosquitto_factory: BrokerFactory, topic: str
) -> None:
    """paho ignores Receive Maximum; our window honours it, so no "Quota exceeded"."""
    broker = mosquitto_factory(max_inflight=20)
    publisher = MqttConnection(broker_config(broker.url, protocol="5"), client_id="v5-pub")
    async with running(publisher):
        await asyncio.gather(
            *(publisher.publish(topic, b"x", qos=qos) for _ in range(1000) for qos in (1, 2))
        )


async def test_pause_longer_than_keepalive_loses_no_message_of_a_persistent_session(
    mosquitto: MosquittoBroker, topic: str
) -> None:
    """paho drops a connection whose PINGRESP it cannot read; the session brings all back."""
    config = broker_config(mosquitto.url, keepalive=1.0)
    inbox = Collector()
    consumer = MqttConnection(
        config,
        client_id="sleepy",
        clean_session=False,
        subscriptions=[(topic, 1)],
        on_message=inbox,
    )
    publisher = MqttConnection(config, client_id="pub")
    async with running(consumer), running(publisher):
        consumer.pause_reading()
        for index in range(100):
            await publisher.publish(topic, b"%d" % index, qos=1)
        await asyncio.sleep(4.0)
        assert inbox.messages == []
        consumer.resume_reading()
        await inbox.wait_for(100)
        await asyncio.sleep(0.2)
    assert set(inbox.payloads) == {b"%d" % index for index in range(100)}


async def test_20000_qos1_messages_received_with_manual_ack(
    mosquitto: MosquittoBroker, topic: str
) -> None:
    """A backlog of 20,000 QoS 1 messages is drained in order when each is acked on receipt."""
    count = 20_000
    config = broker_config(mosquitto.url)
    inbox = Collector()
    consumer = MqttConnection(
        config,
        client_id="bulk-sub",
        clean_session=False,
        manual_ack=True,
        subscriptions=[(topic, 1)],
        on_message=inbox,
    )
    inbox.hook = lambda message: consumer.ack(message.mid, message.qos)
    async with running(consumer):
        pass  # creates the persistent session and its subscription
    publisher = MqttConnection(config, client_id="bulk-pub")
    async with running(publisher):
        await asyncio.gather(*(publisher.publish(topic, b"%d" % i, qos=1) for i in range(count)))
    restarted = MqttConnection(
        config,
        client_id="bulk-sub",
        clean_session=False,
        manual_ack=True,
        subscriptions=[(topic, 1)],
        on_message=inbox,
    )
    inbox.hook = lambda message: restarted.ack(message.mid, message.qos)
    async with running(restarted, connected=False):
        await inbox.wait_for(count, timeout=60)
    assert inbox.payloads == [b"%d" % i for i in range(count)]


async def test_bad_credentials_are_logged_as_error_and_retried_without_raising(
    mosquitto_factory: BrokerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused login is an error in the log, repeated rarely, and run() keeps retrying."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    broker = mosquitto_factory(users={"device": "right"})
    config = broker_config(
        broker.url, username="device", password="wrong", backoff_initial=0.02, backoff_max=0.05
    )
    connection = MqttConnection(config, client_id="intruder")
    async with running(connection, connected=False):
        await asyncio.sleep(1.5)
        assert not connection.is_connected
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "bad credentials were not logged"
    assert "not authori" in errors[0].getMessage().lower()
    attempts = int(broker.log_tail(10_000).count("not authorised"))
    assert attempts >= 5
    assert len(errors) <= 1 + attempts // 10


async def test_connection_refused_is_logged_once_per_condition_then_reconnect_is_reported(
    mosquitto_factory: BrokerFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused connects log once, then a summary per interval; the success reports the count."""
    monkeypatch.setattr(condition_log, "_summary_interval", 0.3)
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = free_port()
    config = broker_config(f"mqtt://127.0.0.1:{port}", backoff_initial=0.01, backoff_max=0.02)
    connection = MqttConnection(config, client_id="patient")
    async with running(connection, connected=False):
        await asyncio.sleep(1.0)
        mosquitto_factory(port=port)
        assert await connection.wait_connected(10)
    messages = [record.getMessage() for record in caplog.records]
    first = [m for m in messages if "cannot connect" in m and "still" not in m]
    repeats = [m for m in messages if "still cannot connect" in m]
    (reconnected,) = [m for m in messages if "reconnected" in m]
    failures = int(reconnected.split(" after ")[1].split()[0].replace(",", ""))
    assert len(first) == 1
    assert "connection refused" in first[0]
    assert 1 <= len(repeats) <= 1.0 / 0.3 + 1 + 10 / 0.3  # one per interval, not per attempt
    assert failures >= 10
    assert failures > 2 * len(repeats)


@pytest.mark.parametrize("topic_filter", ["a/#/b", "a#", "a/b+", ""])
def test_invalid_subscription_is_refused_at_construction(topic_filter: str) -> None:
    """paho would raise from inside run() on every connect; we refuse at once instead."""
    with pytest.raises(ValueError, match="Invalid subscription"):
        MqttConnection(
            broker_config("mqtt://127.0.0.1:1"), client_id="x", subscriptions=[(topic_filter, 1)]
        )


async def test_window_hands_slots_out_in_order_and_follows_resize() -> None:
    """Waiters get slots first come first served; a cancelled waiter does not leak a slot."""
    window = Window(1)
    order: list[int] = []

    async def user(index: int) -> None:
        async with window:
            order.append(index)
            await asyncio.sleep(0.01)

    await window.__aenter__()
    users = [asyncio.create_task(user(index)) for index in range(5)]
    await asyncio.sleep(0)
    users[2].cancel()
    await window.__aexit__()
    await asyncio.gather(*users, return_exceptions=True)
    assert order == [0, 1, 3, 4]
    window.resize(0)
    blocked = asyncio.create_task(user(9))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    window.resize(2)
    await asyncio.wait_for(blocked, 1)


async def test_outbox_makes_dropped_qos0_publishes_retry_and_keeps_qos1_waiting() -> None:
    """On connection loss only QoS 0 waiters fail (paho re-sends QoS 1/2 itself)."""
    outbox = Outbox(10)
    qos0 = asyncio.create_task(outbox.wait(MQTTMessageInfo(1), 0))
    qos1 = asyncio.create_task(outbox.wait(MQTTMessageInfo(2), 1))
    await asyncio.sleep(0)
    outbox.connection_lost()
    with pytest.raises(MqttConnectionLost):
        await qos0
    assert not qos1.done()
    outbox.published(2, ReasonCode(PacketTypes.PUBACK))
    assert await qos1 == ReasonCode(PacketTypes.PUBACK)


@pytest.fixture
def pki(tmp_path: Path) -> BrokerPki:
    return make_test_pki(tmp_path / "pki")


async def test_tls_round_trip_verifies_broker_with_ca_file(
    mosquitto_factory: BrokerFactory, pki: BrokerPki, topic: str
) -> None:
    """mqtts:// with the CA file connects, and every message of a burst arrives over TLS."""
    broker = mosquitto_factory(tls=pki)
    tls = TlsConfig(ca_file=str(pki.ca_file))
    config = broker_config(f"mqtts://localhost:{broker.port}", tls=tls)
    inbox = Collector()
    consumer = MqttConnection(
        config, client_id="tls-sub", subscriptions=[(topic, 1)], on_message=inbox
    )
    publisher = MqttConnection(config, client_id="tls-pub")
    async with running(consumer), running(publisher):
        await asyncio.gather(*(publisher.publish(topic, b"%d" % i, qos=1) for i in range(500)))
        await inbox.wait_for(500)
    assert inbox.payloads == [b"%d" % i for i in range(500)]


async def test_tls_unknown_ca_is_logged_and_retried_without_raising(
    mosquitto_factory: BrokerFactory, pki: BrokerPki, caplog: pytest.LogCaptureFixture
) -> None:
    """Verification is on by default: the system CAs do not know our test CA."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    broker = mosquitto_factory(tls=pki)
    config = broker_config(f"mqtts://localhost:{broker.port}", backoff_initial=0.05)
    connection = MqttConnection(config, client_id="tls-untrusting")
    async with running(connection, connected=False):
        await asyncio.sleep(0.5)
        assert not connection.is_connected
    (failure,) = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert "certificate verification failed" in failure


@pytest.mark.parametrize("insecure", [False, True])
async def test_tls_host_name_is_checked_unless_insecure(
    mosquitto_factory: BrokerFactory,
    pki: BrokerPki,
    insecure: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The certificate names localhost, not 127.0.0.1: only insecure: true accepts it."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    broker = mosquitto_factory(tls=pki)
    tls = TlsConfig(ca_file=str(pki.ca_file), insecure=insecure)
    config = broker_config(broker.url, tls=tls, backoff_initial=0.05)
    connection = MqttConnection(config, client_id="tls-by-address")
    async with running(connection, connected=False):
        assert await connection.wait_connected(1.0) is insecure
    messages = [record.getMessage() for record in caplog.records]
    if insecure:
        assert sum("does not check the broker host name" in m for m in messages) == 1
    else:
        assert any("certificate verification failed" in m for m in messages)


def test_backoff_delays_grow_bounded_and_jittered() -> None:
    """Delays double up to the maximum, each shortened by up to half, reproducibly per seed."""
    backoff = Backoff(1.0, 30.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(50)]
    bases = [min(30.0, 2.0**n) for n in range(50)]
    assert all(base / 2 <= delay <= base for delay, base in zip(delays, bases, strict=True))
    assert len({round(delay, 6) for delay in delays[10:]}) > 30  # jitter even at the cap
    again = Backoff(1.0, 30.0, rng=random.Random(7))
    assert [again.next_delay() for _ in range(50)] == delays
    again.reset()
    assert 0.5 <= again.next_delay() <= 1.0


def test_backoff_refuses_nonsense_bounds() -> None:
    """An initial delay above the maximum is a programming error, reported at once."""
    with pytest.raises(ValueError, match="initial <= maximum"):
        Backoff(10.0, 1.0)

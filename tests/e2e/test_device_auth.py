"""Devices prove who they are: client certificates on the link, one topic per device.

The central broker requires a client certificate and takes its CN as the username;
its ACL lets a device write only `edgestream/<its CN>/up`. A device's real uplink
gets through; a client holding pi-a's certificate cannot publish on pi-b's topic (the
broker drops it), a batch claiming to be pi-b on pi-a's own topic is refused by the
hub and counted against pi-a, so is an unsigned batch on pi-a's topic (the hub checks
each batch's HMAC with pi-a's key, which pi-a's real uplink signs with), and a client
without a certificate cannot connect. Nothing forged ever reaches the store.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from sync.outbox import StoredEvent
from sync.wire import Batch, encode
from tests.brokers import BrokerFactory, BrokerPki, ClientCert, make_client_cert, make_test_pki
from tests.e2e.harness import EdgestreamProcess, query, wait_until, write_yaml

pytestmark = pytest.mark.slow

PI_A_KEY = "5a" * 32
ACL = """\
pattern write edgestream/%u/up
pattern read edgestream/%u/ack
user hub
topic read edgestream/+/up
topic write edgestream/+/ack
"""


def tls(pki: BrokerPki, cert: ClientCert) -> dict[str, str]:
    return {"ca_file": str(pki.ca_file), "cert_file": str(cert.cert_file),
            "key_file": str(cert.key_file)}  # fmt: skip


def forged(device: str) -> bytes:
    event = StoredEvent(1, time.time(), time.time(), None, "x", b'{"forged": true}')
    return encode(Batch(device, "evil-epoch", "sensors", [event], [], 1))


def client(port: int, pki: BrokerPki, cert: ClientCert | None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rogue-{time.monotonic_ns()}")
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert.cert_file), str(cert.key_file))
    c.tls_set_context(context)
    return c


def test_certificates_and_topics_keep_each_device_to_its_own_data(
    tmp_path: Path, mosquitto_factory: BrokerFactory, processes: list[EdgestreamProcess]
) -> None:
    pki = make_test_pki(tmp_path / "pki")
    hub_cert, pi_a = make_client_cert(pki, "hub"), make_client_cert(pki, "pi-a")
    (tmp_path / "acl").write_text(ACL)
    broker = mosquitto_factory(
        tls=pki,
        extra_config=(
            "require_certificate true",
            "use_identity_as_username true",
            f"acl_file {tmp_path / 'acl'}",
        ),
    )
    url = f"mqtts://localhost:{broker.port}"
    hub_db = tmp_path / "hub" / "central.db"
    (tmp_path / "device-keys").write_text(f"pi-a {PI_A_KEY}\n")
    (tmp_path / "pi-a.key").write_text(PI_A_KEY + "\n")
    hub: dict[str, Any] = {
        "broker": {"url": url, "tls": tls(pki, hub_cert), "backoff_max": "1s"},
        "store": {"type": "sqlite", "path": str(hub_db)},
        "device_keys_file": str(tmp_path / "device-keys"),
    }
    agent: dict[str, Any] = {
        "device_id": "pi-a",
        "data_dir": str(tmp_path / "pi-a"),
        "streams": {"sensors": {"uplink": True}},
        "sources": [{"type": "simulated", "name": "sim", "stream": "sensors", "interval": "50ms",
                     "signals": [{"name": "t"}]}],
        "uplink": {"broker": {"url": url, "tls": tls(pki, pi_a), "backoff_max": "1s"},
                   "batch_max_delay": "100ms", "hmac_key_file": str(tmp_path / "pi-a.key")},
    }  # fmt: skip
    for command, config in (("hub", hub), ("run", agent)):
        path = write_yaml(tmp_path / f"{command}.yaml", config)
        processes.append(EdgestreamProcess(command, path, tmp_path / f"{command}.log").start())

    def stored(device: str) -> int:
        rows = query(hub_db, "SELECT count(*) FROM events WHERE device = ?", device)
        return int(rows[0][0]) if rows else 0

    wait_until(lambda: stored("pi-a") >= 10, 30, "pi-a's events at the hub", *processes)

    rogue = client(broker.port, pki, pi_a)  # pi-a's own certificate, misused
    rogue.connect("localhost", broker.port)
    rogue.loop_start()
    rogue.publish("edgestream/pi-b/up", forged("pi-b"), qos=1).wait_for_publish(5)
    rogue.publish("edgestream/pi-a/up", forged("pi-b"), qos=1).wait_for_publish(5)
    rogue.publish("edgestream/pi-a/up", forged("pi-a"), qos=1).wait_for_publish(5)  # unsigned
    rogue.loop_stop()
    rogue.disconnect()

    def refused() -> bool:
        rows = query(hub_db, "SELECT rejected FROM devices WHERE device = 'pi-a'")
        return bool(rows) and rows[0][0] >= 2

    wait_until(refused, 15, "the hub to count the forged batch", *processes)
    time.sleep(1.0)  # anything the broker wrongly let through would have arrived by now
    assert stored("pi-b") == 0
    assert query(hub_db, "SELECT count(*) FROM devices WHERE device = 'pi-b'") == [(0,)]
    assert query(hub_db, "SELECT count(*) FROM events WHERE epoch = 'evil-epoch'") == [(0,)]

    anonymous = client(broker.port, pki, None)
    with pytest.raises((ssl.SSLError, OSError)):
        anonymous.connect("localhost", broker.port)
        anonymous.loop_start()
        for _ in range(20):  # TLS 1.3 reports a missing client certificate after the handshake
            anonymous.publish("edgestream/pi-c/up", forged("pi-c"), qos=0)
            time.sleep(0.1)
            if not anonymous.is_connected():
                raise OSError("the broker closed the connection")
    anonymous.loop_stop()
    assert stored("pi-c") == 0

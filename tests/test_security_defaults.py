"""The safe defaults docs/security.md promises, checked against real brokers and processes.

What is already proven elsewhere is only referenced in docs/security.md, not repeated
here: TLS verification with the system CAs and the host name check
(tests/mqtt/test_connection.py), redaction in logs (tests/test_logging.py), signatures
and per-device topics (tests/hub/test_signatures.py, tests/e2e/test_device_auth.py),
the systemd sandbox (tests/test_packaging.py). This file adds what had no test: that
`insecure` never turns chain verification off, that every shipped config keeps its
endpoints on loopback, that network endpoints are refused at load with their key path,
and that no secret of a running agent shows in its status output, its HTTP endpoints or
`edgestream validate`. Three gaps found while writing it are closed and tested here: a
password in a broker url (shown by readiness and by the hub's systemd status) is refused
at load, and a device that signs its batches accepts only acks signed with its key.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config.http_source import HttpSourceConfig, is_loopback
from agent.config.load import load_agent_config, parse_agent_config
from sync.config.errors import ConfigError
from sync.hub.config import HubConfig, load_hub_config
from sync.metrics_config import MetricsConfig
from sync.mqtt.config import MqttConnectionConfig, TlsConfig
from sync.mqtt.connection import MqttConnection
from sync.wire import Ack, decode
from tests.brokers import BrokerFactory, free_port, make_test_pki
from tests.e2e.harness import EdgestreamProcess, query, wait_until, write_yaml

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
MQTT_PASSWORD = "Mqtt-Pa55word-q7Rz"
UPLINK_PASSWORD = "Upl1nk-Pa55-from-a-file-Kx3"
HTTP_TOKEN = "Http-T0ken-9fJw2LqZ"
HMAC_KEY = "c3" * 32
URL_PASSWORD = "Url-Pa55word-Zq81"
MINIMAL_AGENT = "device_id: pi-1\ndata_dir: /tmp/unused\nstreams: {s: {}}\n"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`edgestream <args>` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET on loopback; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def answers(port: int, path: str) -> Callable[[], bool]:
    return lambda: http_get(port, path)[0] != 0


# --- TLS -------------------------------------------------------------------------------


def test_tls_defaults_verify_the_broker() -> None:
    """An mqtts:// url with no tls section trusts the system CAs and checks the host name."""
    config = MqttConnectionConfig(url="mqtts://hub.example.net")
    assert config.use_tls and config.port == 8883
    assert config.tls == TlsConfig(ca_file=None, cert_file=None, key_file=None, insecure=False)


async def test_insecure_skips_the_host_name_but_never_the_certificate_chain(
    mosquitto_factory: BrokerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker whose CA the client does not trust is refused even with `insecure: true`.

    The test broker's certificate names `localhost` and is signed by a throw-away CA
    the system bundle does not hold, so the connection to 127.0.0.1 fails twice over;
    `insecure` forgives only the name, and the chain still refuses it.
    """
    caplog.set_level(logging.WARNING, logger="sync.mqtt.connection")
    broker = mosquitto_factory(tls=make_test_pki(tmp_path / "pki"))
    config = MqttConnectionConfig(
        url=broker.url, tls=TlsConfig(insecure=True), backoff_initial=0.05, backoff_max=0.2
    )
    connection = MqttConnection(config, client_id="insecure-but-untrusting")
    task = asyncio.create_task(connection.run())
    try:
        assert not await connection.wait_connected(2.0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    messages = [record.getMessage() for record in caplog.records]
    assert any("certificate verification failed" in m for m in messages), messages
    assert any("does not check the broker host name" in m for m in messages)


def test_tls_settings_on_a_plain_url_are_refused() -> None:
    """`tls:` (insecure included) on mqtt:// is a mistake said at load, not silently ignored."""
    text = MINIMAL_AGENT + "uplink: {broker: {url: 'mqtt://hub:1883', tls: {insecure: true}}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text, "agent.yaml")
    assert "agent.yaml:4: uplink.broker.tls: needs an mqtts:// url" in str(caught.value)


# --- endpoints on loopback -------------------------------------------------------------


def shipped_configs() -> list[Path]:
    return sorted([*ROOT.glob("configs/*.yaml"), *ROOT.glob("packaging/*.example.yaml")])


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_keep_every_endpoint_on_loopback(path: Path, tmp_path: Path) -> None:
    """Every example config, as an operator copies it, listens on loopback only."""
    text = path.read_text(encoding="utf-8").replace("@DEVICE_ID@", "pi-1")  # what install.sh does
    copy = tmp_path / path.name
    copy.write_text(text, encoding="utf-8")
    if "hub" in path.name:
        hub = load_hub_config(copy, env={})
        metrics = (hub.metrics.host, hub.metrics.allow_remote)
        listeners: list[HttpSourceConfig] = []
        brokers = [hub.broker]
    else:
        agent = load_agent_config(copy, env={})
        metrics = (agent.metrics.host, agent.metrics.allow_remote)
        listeners = [s for s in agent.sources if isinstance(s, HttpSourceConfig)]
        brokers = [agent.uplink.broker] if agent.uplink is not None else []
    assert metrics in (("127.0.0.1", False), ("::1", False))
    for source in listeners:
        assert is_loopback(source.address[0]) and not source.allow_remote
    for broker in brokers:
        assert not broker.tls.insecure


def test_defaults_listen_on_loopback() -> None:
    """No `metrics:` section and an http source without `listen`: loopback, nothing remote."""
    agent = parse_agent_config(
        MINIMAL_AGENT + "sources: [{type: http, name: web, stream: s}]\n", "agent.yaml"
    )
    assert (agent.metrics.listen, agent.metrics.allow_remote) == ("127.0.0.1:9108", False)
    [source] = agent.sources
    assert isinstance(source, HttpSourceConfig)
    assert source.address == ("127.0.0.1", 8787) and source.token is None
    hub = HubConfig(broker=MqttConnectionConfig(url="mqtts://hub.example.net"))
    assert (hub.metrics.listen, hub.metrics.allow_remote) == ("127.0.0.1:9109", False)
    assert MetricsConfig().enabled


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "sources: [{type: http, name: web, stream: s, listen: '0.0.0.0:8787'}]",
            "agent.yaml:4: sources[0].listen: 0.0.0.0 is not a loopback address",
        ),
        (
            "sources: [{type: http, name: web, stream: s, listen: '0.0.0.0:8787', "
            "allow_remote: true}]",
            "agent.yaml:4: sources[0].token: is required when listening on 0.0.0.0",
        ),
        (
            "sources: [{type: http, name: web, stream: s, listen: '192.168.1.5:8787', "
            "token: abcdefgh}]",
            "agent.yaml:4: sources[0].listen: 192.168.1.5 is not a loopback address",
        ),
        (
            "metrics: {listen: '0.0.0.0:9108'}",
            'agent.yaml:4: metrics.listen: "0.0.0.0" is not a loopback address',
        ),
    ],
    ids=["http-no-allow-remote", "http-no-token", "http-lan-no-allow-remote", "metrics"],
)
def test_network_endpoints_are_refused_at_load_with_their_key_path(
    snippet: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(f"{MINIMAL_AGENT}{snippet}\n", "agent.yaml")
    assert expected in str(caught.value)


# --- no secrets in what an operator or a scraper sees ----------------------------------


def secret_config(tmp_path: Path, broker_port: int, metrics_port: int, http_port: int) -> Path:
    """An agent with every kind of secret: MQTT password, password file, token, HMAC key."""
    (tmp_path / "uplink-password").write_text(UPLINK_PASSWORD + "\n")
    (tmp_path / "device.key").write_text(HMAC_KEY + "\n")
    url = f"mqtt://127.0.0.1:{broker_port}"
    fast = {"backoff_initial": "200ms", "backoff_max": "1s"}
    return write_yaml(tmp_path / "agent.yaml", {
        "device_id": "pi-secret",
        "data_dir": str(tmp_path / "data"),
        "streams": {"readings": {"uplink": True}},
        "sources": [
            {"type": "mqtt", "name": "plant", "stream": "readings", "topics": ["plant/#"],
             "broker": {"url": url, "username": "edge", "password": MQTT_PASSWORD, **fast}},
            {"type": "http", "name": "web", "stream": "readings",
             "listen": f"127.0.0.1:{http_port}", "token": HTTP_TOKEN},
        ],
        "uplink": {"broker": {"url": url, "username": "uplink",
                              "password_file": str(tmp_path / "uplink-password"), **fast},
                   "hmac_key_file": str(tmp_path / "device.key")},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}", "disconnected_grace": "0s"},
    })  # fmt: skip


def post_with_token(port: int) -> int:
    """POST one event to the http source with the configured token; the answer's status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/events", data=b'{"t": 1}', method="POST",
        headers={"Authorization": f"Bearer {HTTP_TOKEN}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(answer.status)


def connected(port: int) -> bool:
    """Ready with no grace: both MQTT connections (source and uplink) are up right now."""
    status, body = http_get(port, "/status")
    if status != 200:
        return False
    families: dict[str, list[dict[str, Any]]] = json.loads(body)["families"]
    uplink = families.get("edgestream_uplink_connected", [])
    return not json.loads(body)["not_ready"] and bool(uplink) and uplink[0]["value"] == 1


def assert_no_secret(where: str, text: str, *secrets: str) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"{where} shows {leaked}:\n{text[:2000]}"


@pytest.mark.slow
def test_status_endpoints_validate_and_log_never_show_a_secret(
    tmp_path: Path, mosquitto_factory: BrokerFactory, processes: list[EdgestreamProcess]
) -> None:
    """A real agent logged in with a password: nothing it shows carries a secret.

    The broker accepts only these passwords and the http source only this token, so
    the agent being connected and the POST accepted prove the secrets are in use;
    then `status`, `status --json`, the four HTTP endpoints, `validate` and the
    agent's own log are searched for each of them.
    """
    broker = mosquitto_factory(users={"edge": MQTT_PASSWORD, "uplink": UPLINK_PASSWORD})
    port, http_port = free_port(), free_port()
    config = secret_config(tmp_path, broker.port, port, http_port)
    agent = EdgestreamProcess("run", config, tmp_path / "run.log").start()
    processes.append(agent)
    wait_until(lambda: connected(port), 60, "the agent's source and uplink to log in", agent)
    wait_until(answers(http_port, "/health"), 30, "the http source to listen", agent)
    assert post_with_token(http_port) == 200

    secrets = (MQTT_PASSWORD, UPLINK_PASSWORD, HTTP_TOKEN, HMAC_KEY)
    for args in (("status", "-c", str(config)), ("status", "--json", "-c", str(config))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert "pi-secret" in result.stdout or "readings" in result.stdout
        assert_no_secret(" ".join(args[:2]), result.stdout + result.stderr, *secrets)
    for path in ("/status", "/metrics", "/readyz", "/healthz"):
        status, body = http_get(port, path)
        assert status == 200, (path, body)
        assert_no_secret(path, body, *secrets)
    validated = cli("validate", str(config))
    assert validated.returncode == 0 and "valid agent configuration" in validated.stdout
    assert_no_secret("validate", validated.stdout + validated.stderr, *secrets)
    assert agent.terminate() == 0
    assert_no_secret("the agent's log", agent.log_path.read_text(errors="replace"), *secrets)


@pytest.mark.parametrize("kind", ["agent", "hub"])
def test_a_broker_url_with_credentials_is_refused_without_echoing_them(
    tmp_path: Path, kind: str
) -> None:
    """Readiness, status and systemd's STATUS show broker urls: none may hold a password."""
    url = f"mqtt://edge:{URL_PASSWORD}@127.0.0.1:{free_port()}"
    if kind == "agent":
        data: dict[str, Any] = {
            "device_id": "pi-url",
            "streams": {"readings": {}},
            "sources": [{"type": "mqtt", "name": "plant", "stream": "readings",
                         "topics": ["plant/#"], "broker": {"url": url}}],
        }  # fmt: skip
        key = "sources[0].broker.url"
    else:
        data = {"broker": {"url": url}, "store": {"type": "sqlite", "path": "central.db"}}
        key = "broker.url"
    config = write_yaml(tmp_path / f"{kind}.yaml", data)
    for command in (("validate", str(config)), ("run" if kind == "agent" else "hub", "-c",
                                                 str(config))):  # fmt: skip
        result = cli(*command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{key}: must not hold credentials" in result.stderr
        assert_no_secret(command[0], result.stdout + result.stderr, URL_PASSWORD)


# --- a rogue broker's acks -------------------------------------------------------------


class RogueAcker:
    """What a broker that is not to be trusted can do: answer every batch `ok` itself.

    It reads the batch id from the batch (in clear to the broker: TLS ends there) and
    publishes the ack the hub would have sent; no hub runs at all.
    """

    def __init__(self, port: int) -> None:
        self.acked = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue-broker")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("edgestream/+/up", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: Any) -> None:
        batch = decode(message.payload)  # no key needed to read a signed batch
        ack = Ack(batch.batch_id, batch.stream, batch.epoch, batch.upto_seq, "ok",
                  committed=len(batch.events))  # fmt: skip
        device = message.topic.split("/")[1]
        client.publish(f"edgestream/{device}/ack", ack.to_bytes(), qos=1)
        self.acked += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.slow
def test_an_ack_no_hub_sent_does_not_move_the_cursor(
    tmp_path: Path, mosquitto_factory: BrokerFactory, processes: list[EdgestreamProcess]
) -> None:
    broker = mosquitto_factory()
    (tmp_path / "device.key").write_text(HMAC_KEY + "\n")
    config = write_yaml(tmp_path / "agent.yaml", {
        "device_id": "pi-acked",
        "data_dir": str(tmp_path / "data"),
        "streams": {"readings": {"uplink": True}},
        "sources": [{"type": "simulated", "name": "sim", "stream": "readings",
                     "interval": "50ms", "signals": [{"name": "t"}]}],
        "uplink": {"broker": {"url": broker.url, "backoff_max": "1s"},
                   "batch_max_delay": "100ms", "hmac_key_file": str(tmp_path / "device.key")},
        "metrics": {"enabled": False},
    })  # fmt: skip
    rogue = RogueAcker(broker.port)
    try:
        agent = EdgestreamProcess("run", config, tmp_path / "run.log").start()
        processes.append(agent)
        wait_until(lambda: rogue.acked >= 3, 60, "the rogue broker to ack 3 batches", agent)
        queue_db = tmp_path / "data" / "queue.db"

        def cursor() -> int:
            rows = query(queue_db, "SELECT max(position) FROM cursors WHERE consumer = 'uplink'")
            return int(rows[0][0] or 0) if rows else 0

        deadline = time.monotonic() + 5  # the agent commits its cursor every 100 ms
        while time.monotonic() < deadline and cursor() == 0:
            time.sleep(0.1)
        assert cursor() == 0, f"events up to seq {cursor()} acknowledged, and no hub runs"
    finally:
        rogue.close()


# --- the threat model names real tests -------------------------------------------------


def test_every_test_docs_security_names_exists() -> None:
    """Each `tests/<file>.py::<test>` (and each `::<test>` after it) in docs/security.md."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    named: set[tuple[str, str]] = set()
    current = ""
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)(?:\[[^\]]*\])?`", text):
        current = path or current
        assert current, f"`::{name}` in docs/security.md follows no file"
        named.add((current, name))
    assert len(named) >= 40
    missing = []
    for path, name in sorted(named):
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        defined = {
            n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name not in defined:
            missing.append(f"{path}::{name}")
    assert not missing, missing

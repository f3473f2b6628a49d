"""Real Mosquitto brokers for tests, each on its own free loopback port.

Tests never touch the broker that may already run on 1883: every broker here
gets a temporary directory (config, persistence, log) and a port picked by
the kernel. Fixtures stop every broker they started by PID, even when the
test failed, so no mosquitto outlives the test session.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

MOSQUITTO = os.environ.get("EDGESTREAM_MOSQUITTO", "/usr/sbin/mosquitto")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic no other test (or earlier run against a persistent broker) uses."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    return f"edgestream-test/{name}/{secrets.token_hex(4)}"


@dataclasses.dataclass(frozen=True)
class BrokerPki:
    """A throw-away CA and a server certificate for ``localhost`` (not for 127.0.0.1)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_test_pki(directory: Path) -> BrokerPki:
    """Create the CA and server certificate with the openssl command line tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_file = directory / "ca.key", directory / "ca.pem"
    key_file, csr, cert_file = (
        directory / "server.key",
        directory / "server.csr",
        directory / "server.pem",
    )
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        openssl,
        "req",
        "-x509",
        *ec,
        "-keyout",
        ca_key,
        "-out",
        ca_file,
        "-days",
        "2",
        "-subj",
        "/CN=edgestream test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _run(openssl, "req", *ec, "-keyout", key_file, "-out", csr, "-subj", "/CN=localhost")
    _run(
        openssl,
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_file,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert_file,
        "-days",
        "2",
        "-extfile",
        extensions,
    )
    return BrokerPki(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


@dataclasses.dataclass(frozen=True)
class ClientCert:
    """A client certificate signed by the test CA; its CN is the MQTT identity."""

    cert_file: Path
    key_file: Path


def make_client_cert(pki: BrokerPki, common_name: str) -> ClientCert:
    """Issue a client certificate for `common_name` from the test CA (needs the CA key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory = pki.ca_file.parent
    key_file, csr = directory / f"{common_name}.key", directory / f"{common_name}.csr"
    cert_file = directory / f"{common_name}.pem"
    extensions = directory / f"{common_name}.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(openssl, "req", *ec, "-keyout", key_file, "-out", csr, "-subj", f"/CN={common_name}")
    _run(
        openssl, "x509", "-req", "-in", csr, "-CA", pki.ca_file,
        "-CAkey", directory / "ca.key", "-CAcreateserial", "-out", cert_file,
        "-days", "2", "-extfile", extensions,
    )  # fmt: skip
    return ClientCert(cert_file, key_file)


def _run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], check=True, capture_output=True)


class MosquittoBroker:
    """One mosquitto process with its own config, persistence file and log.

    The port stays the same across ``stop()``/``start()``, so a client sees a
    broker restart, and persistence (saved on SIGTERM) keeps sessions and
    queued messages across it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        max_inflight: int = 0,
        tls: BrokerPki | None = None,
        extra_config: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.users = dict(users or {})
        self.max_inflight = max_inflight  # per client; MQTT 5 clients see it as Receive Maximum
        self.tls = tls
        self.extra_config = extra_config
        self.log_path = directory / "mosquitto.log"
        self.config_path = directory / "mosquitto.conf"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start mosquitto and wait until its port accepts connections."""
        if self.is_running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config_text())
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_listening()

    def stop(self) -> None:
        """SIGTERM and wait, so mosquitto writes its persistence file."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved since the last autosave."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log written)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop by PID, escalating to SIGKILL if SIGTERM is not enough."""
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, signum: int) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signum)
        process.wait(timeout=STOP_TIMEOUT)

    def _config_text(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.directory}/",
            "autosave_interval 1",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            f"max_inflight_messages {self.max_inflight}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to "mosquitto" and cannot write here
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        lines += self._auth_lines()
        return "\n".join([*lines, *self.extra_config, ""])

    def _auth_lines(self) -> list[str]:
        if not self.users:
            return ["allow_anonymous true"]
        password_file = self.directory / "passwords"
        password_file.write_text("")
        for user, password in self.users.items():
            subprocess.run(
                [_mosquitto_passwd(), "-b", str(password_file), user, password],
                check=True,
                capture_output=True,
            )
        password_file.chmod(0o600)
        return ["allow_anonymous false", f"password_file {password_file}"]

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        msg = f"mosquitto did not listen on port {self.port}; log tail:\n{self.log_tail()}"
        raise RuntimeError(msg)


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd")
    if found is None:
        pytest.skip("mosquitto_passwd is not installed")
    return found


BrokerFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Start brokers on demand (``factory(users=..., port=...)``); all stopped at teardown."""
    if not Path(MOSQUITTO).exists():
        pytest.skip(f"mosquitto not found at {MOSQUITTO}")
    brokers: list[MosquittoBroker] = []

    def start(**options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        broker.start()
        return broker

    try:
        yield start
    finally:
        for broker in brokers:
            broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: BrokerFactory) -> MosquittoBroker:
    """A started broker for one test."""
    return mosquitto_factory()

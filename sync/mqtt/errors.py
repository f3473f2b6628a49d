"""Exceptions raised by the MQTT connection, and how connect failures are described and logged."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

_LOG = logging.getLogger("sync.mqtt.connection")
_LOG_EVERY = 10  # a repeated connect failure is logged again every this many attempts

# MQTT 5 CONNACK reason codes that mean "your credentials are wrong"; paho maps the
# MQTT 3.1.1 return codes 4 and 5 onto the same two values.
_AUTH_REASON_CODES = frozenset({0x86, 0x87})


class MqttError(Exception):
    """Base class of every error raised by ``sync.mqtt``."""


class MqttConnectError(MqttError):
    """The broker answered CONNECT with a refusal (CONNACK reason code >= 0x80)."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(f"Broker refused the connection: {reason} (code {code})")
        self.reason = reason
        self.code = code

    @property
    def is_auth_failure(self) -> bool:
        """True for bad user name or password and not authorised: retrying will not fix it."""
        return self.code in _AUTH_REASON_CODES


class MqttPublishError(MqttError):
    """The broker refused a QoS 1/2 publish (MQTT 5 PUBACK/PUBREC reason code >= 0x80)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        super().__init__(f"Broker refused publish to {topic}: {reason} (code {code})")
        self.topic = topic
        self.reason = reason
        self.code = code


class MqttConnectionLost(MqttError):
    """The socket closed while a QoS 0 packet was still queued, so paho dropped it."""


class MqttConnectionClosed(MqttError):
    """The connection was shut down (``run()`` ended) before the operation completed."""


def describe_connect_failure(exc: BaseException, timeout: float) -> str:
    """Say in a few words why a connect attempt failed, for the rate-limited log line."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    for kind, describe in _DESCRIPTIONS:
        if isinstance(exc, kind):
            return describe(exc)
    return f"{type(exc).__name__}: {exc}"


# Most specific first: every entry after MqttConnectError is an OSError subclass.
_DESCRIPTIONS: tuple[tuple[type[BaseException], Callable[[Any], str]], ...] = (
    (MqttConnectError, str),
    (socket.gaierror, lambda exc: f"cannot resolve host name ({exc.strerror})"),
    (
        ssl.SSLCertVerificationError,
        lambda exc: f"TLS certificate verification failed ({exc.verify_message})",
    ),
    (ssl.SSLError, lambda exc: f"TLS handshake failed ({exc.reason})"),
    (ConnectionRefusedError, lambda _exc: "connection refused"),
    (OSError, lambda exc: exc.strerror or f"{type(exc).__name__}: {exc}"),
)


class ConnectFailureLog:
    """Logs connect failures once per change of condition, not once per retry.

    A device whose broker is down for a day would otherwise write a line per
    attempt; here the first failure is logged, then every tenth with a count,
    and the success that ends the streak says how many attempts failed.
    """

    def __init__(self, name: str, url: str) -> None:
        self._name = name
        self._url = url
        self._failures = 0
        self._condition: str | None = None
        self._repeats = 0
        self._ever_connected = False

    def failed(self, condition: str, *, auth: bool) -> None:
        """Record one failed attempt; bad credentials log as an error, the rest as warnings."""
        self._failures += 1
        level = logging.ERROR if auth else logging.WARNING
        if condition != self._condition:
            self._condition, self._repeats = condition, 1
            _LOG.log(level, "MQTT %s cannot connect to %s: %s", self._name, self._url, condition)
            return
        self._repeats += 1
        if self._repeats % _LOG_EVERY == 0:
            _LOG.log(
                level,
                "MQTT %s still cannot connect to %s after %d attempts: %s",
                self._name,
                self._url,
                self._failures,
                condition,
            )

    def connected(self) -> None:
        """Log the success that ends a streak of failures (or the first connect)."""
        if self._failures:
            _LOG.info(
                "MQTT %s reconnected to %s after %d failures", self._name, self._url, self._failures
            )
        else:
            verb = "reconnected" if self._ever_connected else "connected"
            _LOG.info("MQTT %s %s to %s", self._name, verb, self._url)
        self._failures, self._condition, self._repeats = 0, None, 0
        self._ever_connected = True

    def lost(self, reason: str) -> None:
        """Log a connection that was up and went down."""
        _LOG.warning("MQTT %s lost the connection to %s: %s", self._name, self._url, reason)

"""An asyncio MQTT connection that drives paho-mqtt from the event loop.

paho's network thread is never started. Its socket callbacks become event-loop
watchers instead: ``on_socket_open`` adds a reader that calls ``loop_read``,
``on_socket_register_write`` adds a writer that calls ``loop_write``, and a
ticker task calls ``loop_misc`` every second for keepalive. Only the blocking
``connect()`` (DNS, TCP, TLS handshake) runs in a worker thread, and the two
callbacks paho makes from there are sent back with ``call_soon_threadsafe``.
Every other paho callback therefore runs on the loop thread, which is what
lets ``on_message`` and ``ack`` touch the client without locks.

``run()`` owns the connection for its whole life: it connects, subscribes,
waits until the socket closes and reconnects with jittered backoff, so no
caller writes its own retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from paho.mqtt.client import (
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTMessage,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sync.backoff import Backoff
from sync.mqtt.errors import (
    ConnectFailureLog,
    MqttConnectError,
    MqttConnectionClosed,
    MqttConnectionLost,
    MqttPublishError,
    describe_connect_failure,
)
from sync.mqtt.message import Inbox, MqttMessage, Outbox

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

    from sync.mqtt.config import MqttConnectionConfig, TlsConfig

_LOG = logging.getLogger(__name__)

_SESSION_EXPIRY = 7 * 24 * 3600  # MQTT 5: how long the broker keeps a persistent session
_MISC_INTERVAL = 1.0  # how often paho gets to send PINGREQ and notice a silent broker
_QUEUE_FULL_RETRY = 0.01  # pause before retrying a publish paho refused or dropped
_CLOSE_TIMEOUT = 2.0  # how long a clean shutdown waits for DISCONNECT to be written

MessageCallback = Callable[[MqttMessage], None]


class _ClosingSSLSocket(ssl.SSLSocket):
    """paho does not close the socket when the TLS handshake fails; this class does."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class MqttConnection:
    """One MQTT client session kept alive by ``run()``, used by sources, outputs, uplink and hub.

    Args:
        config: broker address, credentials, TLS, timeouts and backoff.
        client_id: the MQTT client identifier; a persistent session is keyed by it.
        clean_session: False keeps the session (subscriptions, queued QoS 1/2
            messages) at the broker while we are away; MQTT 5 uses clean start
            False with a session expiry of 7 days.
        manual_ack: received QoS 1/2 messages are acknowledged only by ``ack()``.
        subscriptions: (topic filter, QoS) pairs, subscribed again on every connect.
        on_message: called on the loop thread for each received message.
        name: names the log lines and tasks (``edgestream[<name>].mqtt-misc``).
        max_inflight: cap on unacknowledged QoS 1/2 publishes (at most 65,535 ids exist).
    """

    def __init__(
        self,
        config: MqttConnectionConfig,
        *,
        client_id: str,
        clean_session: bool = True,
        manual_ack: bool = False,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: MessageCallback | None = None,
        name: str = "mqtt",
        max_inflight: int = 1000,
    ) -> None:
        self._config = config
        self._clean_session = clean_session
        self._manual_ack = manual_ack
        self._subscriptions = _checked_subscriptions(
            subscriptions, manual_ack=manual_ack, name=name
        )
        self._inbox = Inbox(on_message, manual_ack=manual_ack, name=name)
        self._name = name
        self._client = self._make_client(client_id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._running = False
        self._sock: SocketLike | None = None
        self._reading = False
        self._connected = asyncio.Event()
        self._connected_since: float | None = None
        self._closed = asyncio.Event()
        self._connack: asyncio.Future[bool] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._suback: tuple[int, asyncio.Future[list[ReasonCode]]] | None = None
        self._disconnect_reason = "connection closed"
        self._wakeup: asyncio.Future[None] | None = None
        self._outbox = Outbox(max_inflight)
        self._failures = ConnectFailureLog(name, config.url)

    # ----------------------------------------------------------------- public API

    @property
    def connected_for(self) -> float:
        """Seconds the current connection has been up (0 when not connected)."""
        since = self._connected_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def is_connected(self) -> bool:
        """True between a successful CONNACK (and SUBACK) and the socket closing."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected and subscribed; False if ``timeout`` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Connect, serve and reconnect until cancelled; then disconnect cleanly.

        Connection failures are logged (rate-limited) and retried, never raised.
        """
        self._claim_loop()
        backoff = Backoff(self._config.backoff_initial, self._config.backoff_max)
        try:
            while True:
                lost = await self._connect()
                if lost is not None:
                    backoff.reset()
                    await self._serve(lost)
                await asyncio.sleep(backoff.next_delay())
        finally:
            await self._shut_down()

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Publish and return once the broker has it.

        QoS 1 returns on PUBACK, QoS 2 on PUBCOMP, QoS 0 once the packet is
        written to the socket. Waits for a connection first; a QoS 1/2 message
        whose connection drops is re-sent by paho after the reconnect.
        `user_properties` go out with MQTT 5 only (3.1.1 has no place for them).

        Raises:
            MqttPublishError: an MQTT 5 broker refused the message.
            MqttConnectionClosed: ``run()`` ended before the message was sent.
        """
        properties = self._publish_properties(user_properties)
        if qos == 0:
            await self._send(topic, payload, qos, retain, properties)
            return
        async with self._outbox.window:
            reason = await self._send(topic, payload, qos, retain, properties)
        if reason is not None and reason.is_failure:
            raise MqttPublishError(topic, str(reason), reason.value)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received QoS 1/2 message (``manual_ack=True``); loop thread only.

        After a lost connection a QoS 1 ack is dropped: the broker redelivers
        the message. A QoS 2 ack is kept and sent after the reconnect, because
        the broker then only repeats PUBREL, never the message.
        """
        if self._inbox.take_ack(mid, qos, connected=self._client.is_connected()):
            self._client.ack(mid, qos)

    def pause_reading(self) -> None:
        """Stop reading the socket so the broker holds further messages (backpressure).

        Writes and keepalive continue. paho cannot read the PINGRESP while
        paused, so a pause longer than about the keepalive ends the connection;
        that is acceptable, the broker keeps the session.
        """
        self._inbox.paused = True
        self._sync_reader()

    def resume_reading(self) -> None:
        """Deliver messages held since the pause, then read the socket again if connected."""
        self._inbox.paused = False
        self._inbox.release_held()
        if self._inbox.paused:
            return
        self._sync_reader()
        if self._reading and _has_buffered_tls(self._sock):
            self._require_loop().call_soon(self._on_readable)

    # ----------------------------------------------------------- paho client set-up

    def _make_client(self, client_id: str) -> Client:
        """Build the paho client once: its unacked publishes must survive reconnects."""
        v5 = self._config.protocol == "5"
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else self._clean_session,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            # paho would otherwise reconnect() (a blocking call) from inside loop_read
            # when a 3.1.1 broker refuses the protocol version.
            reconnect_on_failure=False,
            manual_ack=self._manual_ack,
        )
        # 0 = unlimited for both: our Outbox window is the one limit. paho's default of 20 would
        # queue the rest inside paho, and any limit > 0 makes paho scan every unacked
        # message on each PUBACK (_update_inflight), quadratic at 1,000 in flight.
        client.max_inflight_messages = 0
        client.max_queued_messages = 0
        client.connect_timeout = self._config.connect_timeout
        client.enable_logger(logging.getLogger("sync.mqtt.paho"))
        if self._config.use_tls:
            client.tls_set_context(self._tls_context(self._config.tls))
        self._install_callbacks(client)
        return client

    def _tls_context(self, tls: TlsConfig) -> ssl.SSLContext:
        """Verify the broker by default (CA file or system CAs); insecure skips the host name."""
        context = ssl.create_default_context(cafile=tls.ca_file)
        context.sslsocket_class = _ClosingSSLSocket
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.insecure:
            context.check_hostname = False
            _LOG.warning(
                "MQTT %s does not check the broker host name (tls.insecure is set)", self._name
            )
        return context

    def _install_callbacks(self, client: Client) -> None:
        """Socket callbacks replace paho's network thread; the rest feed our futures."""
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_paho_message

    def _claim_loop(self) -> None:
        """Remember the loop and its thread: paho callbacks from elsewhere must hop to it."""
        if self._running:
            msg = f"MQTT connection {self._name}: run() was already called"
            raise RuntimeError(msg)
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            msg = f"MQTT connection {self._name} is not running"
            raise RuntimeError(msg)
        return self._loop

    def _in_loop(self, callback: Callable[[], object]) -> None:
        """paho calls on_socket_open/register_write from the connect thread: hop to the loop."""
        loop = self._require_loop()
        if threading.get_ident() == self._loop_thread:
            callback()
        else:
            loop.call_soon_threadsafe(callback)

    # ------------------------------------------------------------ connection cycle

    async def _connect(self) -> asyncio.Future[None] | None:
        """One attempt: DNS, TCP and TLS in a thread, then CONNECT/CONNACK.

        Returns the future that completes when this connection's socket closes,
        or None after logging why the attempt failed.
        """
        loop = self._require_loop()
        self._connack = loop.create_future()
        self._lost = lost = loop.create_future()
        timeout = self._config.connect_timeout
        try:
            await self._open_socket()
            async with asyncio.timeout(timeout):
                session_present = await self._connack
        except (OSError, ValueError, MqttConnectError) as exc:
            self._drop_socket()
            auth = isinstance(exc, MqttConnectError) and exc.is_auth_failure
            self._failures.failed(describe_connect_failure(exc, timeout), auth=auth)
            return None
        _LOG.debug("MQTT %s session present: %s", self._name, session_present)
        self._failures.connected()
        return lost

    async def _open_socket(self) -> None:
        """Resolve first (bounded here: paho's connect_timeout only covers TCP and TLS)."""
        host, port = self._config.host, self._config.port
        async with asyncio.timeout(self._config.connect_timeout):
            await self._require_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        self._client.username_pw_set(self._config.username, self._config.resolved_password())
        keepalive = max(1, round(self._config.keepalive)) if self._config.keepalive > 0 else 0
        connect = functools.partial(
            self._client.connect, host, port, keepalive, **self._connect_options()
        )
        await self._in_thread(connect)

    def _connect_options(self) -> dict[str, Any]:
        """MQTT 5 expresses a persistent session as clean start off plus a session expiry."""
        if self._config.protocol != "5":
            return {}
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if not self._clean_session:
            properties.SessionExpiryInterval = _SESSION_EXPIRY
        return {"clean_start": self._clean_session, "properties": properties}

    async def _in_thread(self, func: Callable[[], object]) -> None:
        """Run paho's blocking connect; if cancelled, still let it finish (bounded by
        connect_timeout) so that no thread touches the client after ``run()`` returns."""
        future = self._require_loop().run_in_executor(None, func)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await future
            raise

    async def _serve(self, lost: asyncio.Future[None]) -> None:
        """Subscribe, then keep paho's keepalive ticking until the socket closes."""
        async with asyncio.TaskGroup() as tasks:
            ticker = tasks.create_task(self._tick(), name=f"edgestream[{self._name}].mqtt-misc")
            try:
                await self._subscribe(lost)
                if not lost.done():
                    self._connected.set()
                    self._connected_since = time.monotonic()
                    self._wake_publishers()
                    # shielded: a cancelled run() must still see the socket close in _shut_down
                    await asyncio.shield(lost)
            finally:
                ticker.cancel()
        self._failures.lost(self._disconnect_reason)

    async def _tick(self) -> None:
        """paho sends PINGREQ and notices a silent broker only when loop_misc runs."""
        while True:
            await asyncio.sleep(_MISC_INTERVAL)
            self._client.loop_misc()

    async def _subscribe(self, lost: asyncio.Future[None]) -> None:
        """(Re)subscribe on every connect and log each filter the broker refuses."""
        if not self._subscriptions:
            return
        rc, mid = self._client.subscribe(list(self._subscriptions))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return
        suback: asyncio.Future[list[ReasonCode]] = self._require_loop().create_future()
        self._suback = (mid, suback)
        either: set[asyncio.Future[Any]] = {suback, lost}
        try:
            await asyncio.wait(
                either,
                timeout=self._config.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            self._suback = None
            suback.cancel()
        if not suback.done() or suback.cancelled():
            if not lost.done():
                _LOG.warning("MQTT %s got no SUBACK in time", self._name)
            return
        self._log_refused(suback.result())

    def _log_refused(self, codes: list[ReasonCode]) -> None:
        """A refused filter is logged, not fatal: the other subscriptions still work."""
        for (topic, qos), code in zip(self._subscriptions, codes, strict=False):
            if code.is_failure:
                _LOG.error(
                    "MQTT %s: broker refused subscription to %s (QoS %d): %s",
                    self._name,
                    topic,
                    qos,
                    code,
                )

    async def _shut_down(self) -> None:
        """Fail waiting publishes, send DISCONNECT and wait briefly for it to be written."""
        self._closed.set()
        self._connected.clear()
        self._connected_since = None
        self._wake_publishers()
        self._outbox.close(MqttConnectionClosed(f"MQTT connection {self._name} is closed"))
        lost = self._lost
        if self._client.socket() is not None and lost is not None and not lost.done():
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await asyncio.shield(lost)
        self._drop_socket()
        _LOG.info("MQTT %s disconnected from %s", self._name, self._config.url)

    def _drop_socket(self) -> None:
        """Close without DISCONNECT: paho has no public call for that (disconnect() sends one)."""
        if self._client.socket() is not None:
            self._client._sock_close()

    # ------------------------------------------------------------------- publishing

    def _publish_properties(self, pairs: Sequence[tuple[str, str]]) -> Properties | None:
        if not pairs or self._config.protocol != "5":
            return None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = list(pairs)
        return properties

    async def _send(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> ReasonCode | None:
        """Hand the message to paho, retrying where paho dropped or refused it."""
        while True:
            await self._wait_usable()
            info = self._client.publish(topic, payload, qos, retain, properties)
            # QUEUE_SIZE: the mid paho generated is still in flight (ids wrapped), nothing
            # was queued. Any other failure at QoS 0 means paho dropped the packet; at
            # QoS 1/2 (NO_CONN) paho keeps the message and sends it after the reconnect.
            refused = info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
            if refused or (qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS):
                await asyncio.sleep(_QUEUE_FULL_RETRY)
                continue
            try:
                return await self._outbox.wait(info, qos)
            except MqttConnectionLost:
                continue

    async def _wait_usable(self) -> None:
        """Wait for a connection; ``run()`` ending turns the wait into MqttConnectionClosed."""
        while not (self._connected.is_set() or self._closed.is_set()):
            if self._wakeup is None:
                self._wakeup = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._wakeup)  # shared: one cancelled publish must not wake all
        if self._closed.is_set():
            msg = f"MQTT connection {self._name} is closed"
            raise MqttConnectionClosed(msg)

    def _wake_publishers(self) -> None:
        """Release every publish waiting in _wait_usable (connected, or closed for good)."""
        _settle(self._wakeup, result=None)
        self._wakeup = None

    # --------------------------------------------------------------- socket watchers

    def _on_socket_open(self, client: Client, userdata: object, sock: SocketLike) -> None:
        """Called from the connect thread, inside paho's connect()."""
        self._in_loop(functools.partial(self._watch_socket, sock))

    def _watch_socket(self, sock: SocketLike) -> None:
        _no_delay(sock)
        self._sock = sock
        self._sync_reader()

    def _on_socket_close(self, client: Client, userdata: object, sock: SocketLike) -> None:
        self._in_loop(functools.partial(self._forget_socket, sock))

    def _forget_socket(self, sock: SocketLike) -> None:
        """paho calls this just before closing: unwatch, fail dropped QoS 0 sends, report loss."""
        loop = self._require_loop()
        loop.remove_reader(sock)
        loop.remove_writer(sock)
        if sock is not self._sock:
            return
        self._sock = None
        self._reading = False
        self._connected.clear()
        self._connected_since = None
        self._outbox.connection_lost()
        _settle(self._connack, error=ConnectionResetError("connection closed before CONNACK"))
        _settle(self._lost, result=None)

    def _on_socket_register_write(self, client: Client, userdata: object, sock: SocketLike) -> None:
        self._in_loop(functools.partial(self._watch_writes, sock))

    def _watch_writes(self, sock: SocketLike) -> None:
        """A late call from the connect thread must not watch a socket closed meanwhile."""
        if sock is self._sock:
            self._require_loop().add_writer(sock, self._client.loop_write)

    def _on_socket_unregister_write(
        self, client: Client, userdata: object, sock: SocketLike
    ) -> None:
        self._in_loop(functools.partial(self._require_loop().remove_writer, sock))

    def _sync_reader(self) -> None:
        """Read unless paused; while paused, still read until CONNACK so a reconnect completes."""
        sock = self._sock
        want = sock is not None and not (self._inbox.paused and self._client.is_connected())
        if sock is None or want == self._reading:
            return
        if want:
            self._require_loop().add_reader(sock, self._on_readable)
        else:
            self._require_loop().remove_reader(sock)
        self._reading = want

    def _on_readable(self) -> None:
        """loop_read handles one packet per call when nothing is in flight; a TLS socket
        may hold further decrypted records that the selector cannot see, so drain those."""
        sock = self._sock
        if sock is None or not self._reading:
            return
        self._client.loop_read()
        for _ in range(_READS_PER_WAKEUP):
            if not (self._reading and self._sock is sock and _more_to_read(sock)):
                break
            self._client.loop_read()

    # ---------------------------------------------------------- protocol callbacks

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Settle the CONNACK wait; a new session voids the ack bookkeeping of the old one."""
        if reason.is_failure:
            _settle(self._connack, error=MqttConnectError(str(reason), reason.value))
            return
        for mid in self._inbox.session_started(flags.session_present):
            self._client.ack(mid, 2)
        self._outbox.limit_to(getattr(properties, "ReceiveMaximum", None))
        self._sync_reader()
        _settle(self._connack, result=flags.session_present)

    def _on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Remember why, for the "lost the connection" line once the socket is gone."""
        if flags.is_disconnect_packet_from_server:
            self._disconnect_reason = f"broker sent DISCONNECT ({reason})"
        elif reason.value == 0x80:  # paho's rendering of MQTT_ERR_CONN_LOST
            self._disconnect_reason = "socket closed (broker stopped or network failure)"
        else:
            self._disconnect_reason = str(reason)

    def _on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        """Only the SUBACK of our latest SUBSCRIBE counts."""
        if self._suback is not None and self._suback[0] == mid:
            _settle(self._suback[1], result=codes)

    def _on_publish(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        """PUBACK/PUBCOMP (QoS 1/2) or the socket write (QoS 0) of message ``mid``."""
        self._outbox.published(mid, reason)

    def _on_paho_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        """A topic that is not UTF-8 cannot be delivered: ack it, or it comes back forever."""
        try:
            received = MqttMessage.from_paho(message)
        except UnicodeDecodeError:
            _LOG.warning("MQTT %s drops a message whose topic is not UTF-8", self._name)
            self._client.ack(message.mid, message.qos)
            return
        self._inbox.receive(received)


def _checked_subscriptions(
    subscriptions: Sequence[tuple[str, int]], *, manual_ack: bool, name: str
) -> tuple[tuple[str, int], ...]:
    """Refuse bad filters now: paho would raise ValueError from inside run() on every connect."""
    for topic_filter, qos in subscriptions:
        levels = topic_filter.split("/")
        misplaced_hash = "#" in topic_filter and (levels[-1] != "#" or "#" in "".join(levels[:-1]))
        partial_plus = any("+" in level and level != "+" for level in levels)
        if not topic_filter or misplaced_hash or partial_plus or qos not in (0, 1, 2):
            msg = f"Invalid subscription {topic_filter!r} at QoS {qos}"
            raise ValueError(msg)
        if manual_ack and qos == 2:
            _LOG.warning(
                "MQTT %s subscribes to %s at QoS 2 with manual ack: paho hands the message over "
                "at PUBREL and cannot get it again after a restart; use QoS 1 for at-least-once",
                name,
                topic_filter,
            )
    return tuple(subscriptions)


def _settle(
    future: asyncio.Future[Any] | None,
    *,
    result: object = None,
    error: BaseException | None = None,
) -> None:
    """Complete a future unless it is gone or already done (paho may report twice)."""
    if future is None or future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_READS_PER_WAKEUP = 256


def _more_to_read(sock: SocketLike) -> bool:
    """True when another packet can be read without blocking.

    paho reads one packet per `loop_read` call, so under load one event-loop wakeup
    per message was the ingest bottleneck; a zero-timeout poll is far cheaper.
    """
    if _has_buffered_tls(sock):
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError, TypeError):
        return False
    return bool(readable)


def _has_buffered_tls(sock: SocketLike | None) -> bool:
    """Decrypted bytes waiting inside the SSL object, invisible to the selector."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def _no_delay(sock: SocketLike) -> None:
    """Send small packets (PUBACKs, acks) at once instead of waiting on Nagle's algorithm.

    Without it every request/response round trip (a batch and its ack) waited ~40 ms
    for delayed ACKs: the uplink drained 5x slower (docs/benchmarks.md).
    """
    setsockopt = getattr(sock, "setsockopt", None)  # a websocket wrapper may lack it
    if setsockopt is not None:
        with contextlib.suppress(OSError):
            setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

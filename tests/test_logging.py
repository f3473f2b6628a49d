"""Logging: conditions logged without storms, JSON lines, and no secrets anywhere."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import orjson
import pytest

from agent.config.load import load_agent_config
from agent.logs import JsonFormatter, RedactingFilter, Redactor, config_secrets, setup_logging
from sync import condition_log
from sync.condition_log import ConditionLog
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from tests.brokers import BrokerFactory, free_port

pytestmark = pytest.mark.timeout(120)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def conditions(clock: FakeClock) -> ConditionLog:
    return ConditionLog("probe", logger=logging.getLogger("test.cond"), clock=clock, max_keys=3)


def test_a_repeating_condition_logs_start_summaries_with_counts_and_clear(
    conditions: ConditionLog, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.cond")
    for _ in range(1235):  # one every 0.2s: 247s, under the 5 min interval
        conditions.failed("sensor missing")
        clock.now += 0.2
    assert lines(caplog) == [(logging.WARNING, "probe: sensor missing")]
    clock.now += 60
    conditions.failed("sensor missing")
    assert lines(caplog)[-1] == (
        logging.WARNING,
        "probe: still sensor missing: 1,235 more times in the last 5.1 min",
    )
    clock.now += 30
    conditions.failed("sensor missing")
    assert len(caplog.records) == 2
    clock.now += 10
    assert conditions.cleared()
    assert lines(caplog)[-1] == (
        logging.INFO,
        "probe: cleared after 1,237 failure(s) in 5.8 min: sensor missing",
    )
    assert not conditions.cleared()
    assert len(caplog.records) == 3


def test_a_change_of_condition_is_logged_at_once_and_the_same_one_is_not(
    conditions: ConditionLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.cond")
    conditions.failed("refused at 10:01", kind="refused")
    conditions.failed("refused at 10:02", kind="refused")
    conditions.failed("bad password", kind="auth", level=logging.ERROR)
    conditions.failed("bad password", kind="auth", level=logging.ERROR)
    assert lines(caplog) == [
        (logging.WARNING, "probe: refused at 10:01"),
        (logging.ERROR, "probe: bad password"),
    ]


def test_keys_are_separate_conditions_and_bounded(
    conditions: ConditionLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.cond")
    for device in ("a", "b", "c", "a", "b", "c"):
        conditions.failed(f"bad batch from {device}", key=device, kind="format")
    assert len(caplog.records) == 3 and len(conditions) == 3
    conditions.failed("bad batch from d", key="d", kind="format")
    assert len(conditions) == 3 and conditions.evictions == 1
    assert "a" not in conditions and "d" in conditions  # the least recently failing went
    assert conditions.cleared("b")
    assert conditions.cleared_where(lambda key: key in ("c", "d")) == 2
    assert len(conditions) == 0


def test_structured_fields_of_a_condition_reach_the_record(
    conditions: ConditionLog, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.cond")
    conditions.failed("down")
    conditions.failed("down")
    clock.now += 301
    conditions.failed("down")
    started, still = caplog.records
    assert (started.condition, still.condition, still.count) == ("started", "still", 2)  # type: ignore[attr-defined]


# ----------------------------------------------------------------- real broker


def connection_config(url: str, **overrides: object) -> MqttConnectionConfig:
    settings: dict[str, object] = {
        "url": url,
        "keepalive": 10.0,
        "connect_timeout": 5.0,
        "backoff_initial": 0.02,
        "backoff_max": 0.05,
    }
    settings.update(overrides)
    return MqttConnectionConfig(**settings)  # type: ignore[arg-type]


@asynccontextmanager
async def running(connection: MqttConnection) -> AsyncIterator[MqttConnection]:
    task = asyncio.create_task(connection.run())
    try:
        yield connection
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_broker_outage_is_one_line_then_summaries_then_one_line_back(
    mosquitto_factory: BrokerFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(condition_log, "_summary_interval", 0.5)
    caplog.set_level(logging.INFO, logger="sync.mqtt.connection")
    broker = mosquitto_factory()
    connection = MqttConnection(connection_config(broker.url), client_id="outage")
    async with running(connection):
        assert await connection.wait_connected(15)
        broker.stop()
        await wait_until(lambda: not connection.is_connected)
        outage_start = time.monotonic()
        await asyncio.sleep(2.0)  # the outage itself: dozens of retries at 20-50 ms
        broker.start()
        assert await connection.wait_connected(15)
        outage = time.monotonic() - outage_start
    messages = [r.getMessage() for r in caplog.records]
    down = [m for m in messages if "lost the connection" in m or m.count("cannot connect") == 1]
    still = [m for m in messages if "still cannot connect" in m]
    (back,) = [m for m in messages if "reconnected to" in m]
    assert len(down) == 1, messages
    assert 1 <= len(still) <= outage / 0.5 + 1, messages
    counts = [int(m.split("connect: ")[1].split()[0].replace(",", "")) for m in still]
    attempts = int(back.split(" after ")[1].split()[0].replace(",", ""))
    assert all(count >= 1 for count in counts)
    assert attempts >= 10 and attempts > 3 * len(still)  # not one line per retry
    assert "it was down for" in back


# ----------------------------------------------------------------- JSON lines


def json_logger(stream: io.StringIO, secrets: tuple[str, ...] = ()) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.json.{id(stream)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    return logger


def test_json_lines_parse_and_keep_exceptions_and_extra_fields_on_one_line() -> None:
    stream = io.StringIO()
    logger = json_logger(stream)
    logger.info("Stored %d events", 3, extra={"device": "pi-7", "stream": "s"})
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        logger.exception("Step failed for %s", "pi-7")
    entries = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert len(entries) == 2
    info, error = entries
    assert {k: info[k] for k in ("level", "logger", "msg", "device", "stream")} == {
        "level": "info",
        "logger": logger.name,
        "msg": "Stored 3 events",
        "device": "pi-7",
        "stream": "s",
    }
    assert abs(info["ts"] - time.time()) < 60
    assert error["level"] == "error" and error["msg"] == "Step failed for pi-7"
    assert "Traceback" in error["exc"] and "second line" in error["exc"]


# ----------------------------------------------------------------- no secrets


def test_redaction_masks_url_passwords_bearer_tokens_and_known_values() -> None:
    stream = io.StringIO()
    logger = json_logger(stream, secrets=("hunter2-long", "ab"))
    logger.warning("Cannot reach %s", "mqtt://gw:p4ss%40word@broker:1883")
    logger.warning("Header Authorization: Bearer tok.en-123 refused about it")
    logger.warning("Login with %s failed", "hunter2-long", extra={"why": "hunter2-long"})
    try:
        raise OSError("password=hunter2-long rejected")
    except OSError:
        logger.exception("Connect failed")
    text = stream.getvalue()
    assert "p4ss" not in text and "mqtt://gw:***@broker:1883" in text
    assert "tok.en-123" not in text and "Bearer ***" in text
    assert "hunter2-long" not in text
    assert "refused about it" in text  # "ab" is too short to be redacted by value


def write_config(tmp_path: Path, broker_url: str, password: str, token: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"""
device_id: pi-secret
data_dir: {tmp_path / "data"}
log_format: json
metrics: {{enabled: false}}
streams:
  s: {{}}
sources:
  - name: local
    type: mqtt
    stream: s
    broker:
      url: {broker_url}
      username: device
      password: "{password}"
    topics: [sensors/#]
  - name: posts
    type: http
    stream: s
    listen: 127.0.0.1:{free_port()}
    token: "{token}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_a_refused_password_never_reaches_the_log(
    tmp_path: Path,
    mosquitto_factory: BrokerFactory,
    monkeypatch: pytest.MonkeyPatch,
    restore_root_logging: None,
) -> None:
    """The loaded config's secrets go to setup_logging; the log of a failed login has none."""
    password, token = "Wr0ng-Passw0rd-xyz", "Http-T0ken-abcdef"
    broker = mosquitto_factory(users={"device": "right-one"})
    url = f"mqtt://127.0.0.1:{broker.port}"  # credentials in a url are refused at load
    config = load_agent_config(write_config(tmp_path, url, password, token))
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("debug", config.log_format, secrets=config_secrets(config))
    source_broker = config.sources[0].broker  # type: ignore[union-attr]
    connection = MqttConnection(source_broker, client_id="intruder", name="local")
    logging.getLogger("test.secret").info("Config: %r", config)
    async with running(connection):
        await wait_until(lambda: "not authori" in stream.getvalue().lower())
    text = stream.getvalue()
    entries = [orjson.loads(line) for line in text.splitlines()]
    assert any(e["level"] == "error" and "cannot connect" in e["msg"] for e in entries)
    for secret in (password, token):
        assert secret not in text


def test_validate_never_prints_a_password(tmp_path: Path) -> None:
    """A refused config echoes what it refuses, but never a password, token or URL secret."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        """
device_id: pi-1
streams:
  s: {}
sources:
  - name: local
    type: mqtt
    stream: s
    broker:
      url: mqtt://device:Url-Secret-99@127.0.0.1:1/extra
      password: 918273645
    topics: [a/#]
  - name: posts
    type: http
    stream: s
    token: 5647382910
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "broker.password: expected a string, got *** (put it in quotes)" in result.stderr
    assert "sources[1].token" in result.stderr
    for secret in ("918273645", "5647382910", "Url-Secret-99"):
        assert secret not in result.stderr + result.stdout

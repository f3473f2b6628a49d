"""The fleet page in a real browser: Debian's headless Chromium loads it from a running
hub, its scripts fill the table and draw the chart, and a screenshot is kept.

A real hub (real Mosquitto, real SQLite store) commits one device's batch and refuses
another batch of it; the store also holds an hour of history written through the
store API (tests/hub/test_fleet_page.py `fill_store`). Chromium's `--dump-dom` gives
the DOM after the scripts ran; the screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import html.parser
import os
import shutil
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.cli.hub import hub_metrics_server
from sync.hub.config import HubConfig
from sync.hub.fleet import device_row, read_only
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.metrics_config import HubMetricsConfig
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.outbox import StoredEvent
from sync.wire import Batch, encode
from tests.brokers import MosquittoBroker
from tests.hub.test_fleet_page import HOSTILE, ODD, PER_MINUTE, fill_store

CHROMIUM = os.environ.get("EDGESTREAM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
BROWSER_TIMEOUT = 120.0

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"headless Chromium not found at {CHROMIUM}: apt-get install chromium "
    "(.ci/run installs it) or set EDGESTREAM_CHROMIUM",
)


class _Dom(html.parser.HTMLParser):
    """The parts of a dumped DOM the tests read: table cells by row, bars, tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.bars: list[int] = []
        self.tags: set[str] = set()
        self.text_of: dict[str, str] = {}
        self._row: str | None = None
        self._cell: str | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.add(tag)
        if tag == "tr" and found.get("data-device") is not None:
            self._row = found["data-device"]
            self.rows[self._row or ""] = {}
        elif tag == "td" and self._row is not None:
            self._cell = found.get("data-col")
        elif tag == "rect" and found.get("class") == "bar":
            self.bars.append(int(found.get("data-count") or 0))
        if found.get("id"):
            self._id = found["id"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None
        self._id = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None:
            row = self.rows[self._row]
            row[self._cell] = row.get(self._cell, "") + data
        if self._id is not None:
            self.text_of[self._id] = self.text_of.get(self._id, "") + data


async def chromium(*args: str, profile: Path) -> bytes:
    """Run headless Chromium to the end; its stdout. The page's console must stay
    silent: a script error or a Content-Security-Policy refusal is logged there."""
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=4000", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), BROWSER_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    console = [line for line in err.decode(errors="replace").splitlines() if ":CONSOLE" in line]
    assert not console, "the page logged:\n" + "\n".join(console)
    return out


async def rendered(url: str, profile: Path, ready: str) -> _Dom:
    """The DOM after the page's scripts ran; loaded again (up to 3 times) until the
    element `ready` has content, as a loaded machine may cut the first run short."""
    dom = _Dom()
    for _ in range(3):
        dom = _Dom()
        dom.feed((await chromium("--dump-dom", url, profile=profile)).decode())
        if dom.text_of.get(ready, "").strip():
            return dom
    raise AssertionError(f"{url}: #{ready} stayed empty; DOM text: {dom.text_of}")


async def screenshot(url: str, name: str, profile: Path) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    await chromium(f"--screenshot={path}", "--window-size=1280,800", url, profile=profile)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    print(f"screenshot kept: {path}")
    return path


def live_batch() -> bytes:
    now = time.time()
    events = [StoredEvent(s, now - 5 + s, now - 10 + s, None, "t", b"%d" % s) for s in (1, 2, 3)]
    return encode(Batch("pi-live", "e", "s", events, [], 3, sent_at=now))


@contextlib.asynccontextmanager
async def running_hub(store_path: Path, url: str) -> AsyncIterator[tuple[Hub, int]]:
    """A real hub on the broker, with its metrics endpoint (and page) on a free port."""
    broker = MqttConnectionConfig(url=url, backoff_initial=0.2, backoff_max=1.0)
    store = SqliteCentralStore(store_path)
    hub = Hub(HubConfig(broker=broker, metrics=HubMetricsConfig(listen="127.0.0.1:0")), store)
    server = hub_metrics_server(hub)
    assert await server.start()
    task = asyncio.create_task(hub.run())
    try:
        assert await hub.connection.wait_connected(15)
        yield hub, server.port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()
        await store.close()


async def until_stored(store_path: Path, device: str, events: int, rejected: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with read_only(store_path) as conn:
            row = device_row(conn, device)
        if row is not None and (row.events, row.rejected) == (events, rejected):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{device} never had {events} events and {rejected} refusals stored")


async def test_the_fleet_page_shows_the_fleet_in_a_real_browser(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    store_path = tmp_path / "central.db"
    fill_store(store_path, time.time())
    async with running_hub(store_path, mosquitto.url) as (hub, port):
        device = MqttConnection(
            MqttConnectionConfig(url=mosquitto.url), client_id="pi-live", name="pi-live"
        )
        sender = asyncio.create_task(device.run())
        try:
            assert await device.wait_connected(15)
            await asyncio.sleep(0.3)  # the hub's subscription is in place
            for payload in (live_batch(), b"not a batch at all"):
                await device.publish("edgestream/pi-live/up", payload, qos=1)
            await until_stored(store_path, "pi-live", 3, 1)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        base = f"http://127.0.0.1:{port}"
        table = await rendered(f"{base}/", tmp_path / "profile", ready="count")
        await screenshot(f"{base}/", "fleet_page.png", tmp_path / "profile")
        detail = await rendered(f"{base}/device?id=pi-1", tmp_path / "profile", ready="summary")
        await screenshot(f"{base}/device?id=pi-1", "fleet_device_page.png", tmp_path / "profile")
        hostile_url = f"{base}/device?id={urllib.parse.quote(HOSTILE, safe='')}"
        hostile = await rendered(hostile_url, tmp_path / "profile", ready="summary")
    assert hub.stats.rejected_by == {"format": 1}

    rows = table.rows
    assert set(rows) == {"pi-1", "pi-2", "pi-live", HOSTILE, ODD}
    assert rows[HOSTILE]["device"] == HOSTILE  # shown as text, never as markup
    assert "img" not in table.tags | hostile.tags
    assert rows["pi-1"]["gaps"] == "1 (6)" and rows["pi-1"]["backlog_age"] == "40s"
    assert (rows["pi-1"]["events"], rows["pi-1"]["duplicates"]) == ("27", "14")
    assert (rows["pi-2"]["rejected"], rows["pi-live"]["rejected"]) == ("1", "1")
    seen = rows["pi-live"]["last_seen"]
    assert rows["pi-live"]["events"] == "3" and (seen == "now" or seen.endswith("s ago"))
    assert "unsupported wire version" in rows["pi-live"]["last_rejection"]
    assert table.text_of["count"] == "5 devices."
    assert "1 batches refused (format 1)" in table.text_of["hub"]

    assert len(detail.bars) == 60  # one bar per minute of the last hour
    assert sorted(n for n in detail.bars if n) == sorted(PER_MINUTE.values())
    assert hostile.text_of["title"] == HOSTILE

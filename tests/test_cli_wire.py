"""`edgestream wire train`: a dictionary trained on a real queue, usable by the hub."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from agent.cli.main import main
from agent.queue import DurableQueue, NewEvent, StreamLimits
from sync.outbox import StoredEvent
from sync.wire import Batch, decode, dictionary_id, encode


async def fill(data_dir: Path, count: int) -> None:
    queue = await DurableQueue.open(data_dir, {"sensors": StreamLimits(1 << 30, 1e9)})
    now = time.time()
    events = [
        NewEvent(now + i, now + i, f"pi-{i % 7}", f"plant/pi-{i % 7}/temp",
                 orjson.dumps({"device": f"pi-{i % 7}", "temp": 20 + i % 13 / 10}))
        for i in range(count)
    ]  # fmt: skip
    await queue.append("sensors", events)
    await queue.close()


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: pi-x\ndata_dir: {tmp_path / 'data'}\nstreams: {{sensors: {{}}}}\n"
    )
    return config


def test_a_dictionary_trained_on_the_queue_shrinks_small_batches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(fill(tmp_path / "data", 3000))
    out = tmp_path / "wire.dict"
    args = ["wire", "train", "-c", str(write_config(tmp_path)), "--stream", "sensors"]
    assert main([*args, "--out", str(out), "--size", "8192"]) == 0
    dictionary = out.read_bytes()
    assert dictionary_id(dictionary).hex() in capsys.readouterr().out
    now = time.time()
    small = Batch("pi-x", "e", "sensors", [
        StoredEvent(s, now, now, "pi-3", "plant/pi-3/temp", b'{"device":"pi-3","temp":20.4}')
        for s in range(1, 11)
    ], [], 10)  # fmt: skip
    with_dict = encode(small, dictionary=dictionary)
    assert len(with_dict) < len(encode(small))
    hub_side = decode(with_dict, dictionaries={dictionary_id(dictionary): dictionary})
    assert hub_side.events == small.events


def test_too_few_events_to_train_is_said_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(fill(tmp_path / "data", 50))
    args = ["wire", "train", "-c", str(write_config(tmp_path)), "--stream", "sensors"]
    assert main([*args, "--out", str(tmp_path / "d")]) == 1
    assert "at least 20 are needed" in capsys.readouterr().err

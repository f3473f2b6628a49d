"""The power-cut judges see a torn state when there is one (their negative controls).

A campaign that passes proves little if its checks could not fail. Each judge is given
a sound database written by its real writer (it must find nothing), then the same
database with one transaction torn by hand (it must object).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from tests.chaos import test_hub_powercut, test_pipeline_powercut, test_queue_powercut, writers
from tests.chaos.campaign import Judge, Run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


def written(tmp: Path, kind: str, seconds: float) -> tuple[Path, Run]:
    """Run a writer in this process for a moment; its data dir and its full log."""
    data, log_path = tmp / "data", tmp / "acks.log"
    data.mkdir()
    rnd, until = random.Random(1), time.monotonic() + seconds
    with open(log_path, "w", encoding="utf-8") as log:
        if kind == "queue":
            asyncio.run(writers.write_queue(data, log, "normal", rnd, until))
        elif kind == "pipeline":
            asyncio.run(writers.write_pipeline(data, log, "normal", rnd, until))
        else:
            writers.write_hub(data, log, "normal", rnd, until)
    return data, Run([], log_path.read_text(encoding="utf-8").splitlines())


def verdicts(tmp: Path, data: Path, db_name: str, judge: Judge, tamper: str) -> list[str]:
    """Problems the judge finds in a copy with `tamper` (SQL) applied; "" = untouched."""
    copy = tmp / f"copy-{len(list(tmp.glob('copy-*')))}"
    shutil.copytree(data, copy)
    if tamper:
        with closing(sqlite3.connect(copy / db_name)) as conn:
            conn.executescript(tamper)
    outcome = judge(copy / db_name)
    return [*outcome.problems, *([] if outcome.integrity else ["integrity"])]


def check_judge(
    tmp: Path, kind: str, db_name: str, judge_for: Callable[[Run, Path], Judge],
    tampers: list[str], seconds: float = 0.5,
) -> None:  # fmt: skip
    data, run = written(tmp, kind, seconds)
    if kind == "pipeline":  # more input arrives after the restart: open windows must close
        total = test_pipeline_powercut.acked_input(run.final_acks)
        run.final_acks.append(f"{total + 1} {total + 500}")
    judge = judge_for(run, tmp)
    assert verdicts(tmp, data, db_name, judge, "") == []
    for tamper in tampers:
        assert verdicts(tmp, data, db_name, judge, tamper), f"judge missed: {tamper}"


def test_queue_judge_sees_a_torn_transaction(tmp_path: Path) -> None:
    check_judge(tmp_path, "queue", "queue.db", test_queue_powercut.judge_for, [
        "DELETE FROM events WHERE seq = (SELECT max(seq) FROM events);",
        "UPDATE streams SET next_seq = next_seq - 1 WHERE name = 'chaos';"
        "DELETE FROM events WHERE seq = (SELECT max(seq) FROM events);",
        "UPDATE cursors SET position = position - 1;",
        "UPDATE events SET payload = CAST('{\"t\":1,\"i\":0,\"n\":1}' AS BLOB)"
        " WHERE seq = (SELECT max(seq) FROM events);",
    ])  # fmt: skip


def test_pipeline_judge_sees_state_from_another_transaction(tmp_path: Path) -> None:
    check_judge(tmp_path, "pipeline", "queue.db", test_pipeline_powercut.judge_for, [
        "DELETE FROM state;",
        "UPDATE cursors SET position = position - 50 WHERE consumer = 'pipeline:win';",
        "DELETE FROM events WHERE stream_id = (SELECT id FROM streams WHERE name = 'out')"
        " AND seq = (SELECT max(seq) FROM events WHERE stream_id ="
        " (SELECT id FROM streams WHERE name = 'out'));",
    ], seconds=1.5)  # fmt: skip


def test_hub_judge_sees_a_torn_group(tmp_path: Path) -> None:
    check_judge(tmp_path, "hub", "hub.db", test_hub_powercut.judge_for, [
        "DELETE FROM events WHERE device = 'd0' AND seq = (SELECT max(seq) FROM events"
        " WHERE device = 'd0'); UPDATE positions SET upto_seq = upto_seq - 1,"
        " events = events - 1 WHERE device = 'd0';",
        "UPDATE positions SET upto_seq = upto_seq + 1 WHERE device = 'd1';",
        "UPDATE events SET payload = X'00' WHERE device = 'd2' AND seq = 1;",
    ])  # fmt: skip

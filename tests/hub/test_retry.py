"""The one retry helper: retries until done, with rate-limited failure logs."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from sync import condition_log
from sync.backoff import Backoff, retry_until_done


async def test_retries_until_success_with_rate_limited_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure is logged when it starts, summarised per interval, and when it clears."""
    monkeypatch.setattr(condition_log, "_summary_interval", 0.05)
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= 12:
            await asyncio.sleep(0.01)
            raise OSError("disk full")
        return "done"

    log = logging.getLogger("test.retry")
    backoff = Backoff(0.001, 0.002, rng=random.Random(1))
    with caplog.at_level(logging.INFO, logger="test.retry"):
        result = await retry_until_done(
            flaky, what="Writing", errors=(OSError,), logger=log, backoff=backoff
        )
    assert result == "done" and attempts == 13
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("Writing failed (disk full; retrying in")
    summaries = messages[1:-1]
    assert 1 <= len(summaries) < 11, messages  # ~0.13s of failures, one line per 0.05s
    assert all(m.startswith("Writing still failing: ") for m in summaries)
    assert sum(int(m.split(": ")[1].split()[0]) for m in summaries) <= 11
    assert messages[-1].startswith("Writing succeeded after 12 failures in ")


async def test_other_errors_are_not_retried() -> None:
    async def broken() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await retry_until_done(broken, what="x", errors=(OSError,), logger=logging.getLogger("t"))

"""The one retry helper: retries until done, with rate-limited failure logs."""

from __future__ import annotations

import logging
import random

import pytest

from sync.backoff import Backoff, retry_until_done


async def test_retries_until_success_with_rate_limited_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= 12:
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
    assert len(messages) == 3  # failure 1, failure 10, recovery
    assert messages[0].startswith("Writing failed (disk full)") and "(failure 1)" in messages[0]
    assert "(failure 10)" in messages[1]
    assert messages[2] == "Writing succeeded after 12 failures"


async def test_other_errors_are_not_retried() -> None:
    async def broken() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await retry_until_done(broken, what="x", errors=(OSError,), logger=logging.getLogger("t"))

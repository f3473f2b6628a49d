"""The `command` source: run a program on an interval, parse its stdout into readings.

The program runs without a shell unless asked, in its own session, so a timeout kills
it with every child it started. A non-zero exit, a timeout, output over 1 MiB or output
that does not parse makes the read fail with the reason (counted, logged by condition
by the polling framework) and nothing is stored for that run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shlex
import signal
from typing import Any

import orjson

from agent.config.command_source import CommandSourceConfig
from agent.sources.polling import Reading

MAX_OUTPUT = 1024 * 1024


async def run_command(argv: list[str], timeout: float) -> str:
    """The stdout of a command; raises on a timeout, a non-zero exit or huge output."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancel
            stdout, stderr = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise TimeoutError(f"{argv[0]} timed out after {timeout:g} s (killed)") from None
    if process.returncode != 0:
        detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{argv[0]} exited with status {process.returncode}: {detail[0]}")
    if len(stdout) > MAX_OUTPUT:
        raise ValueError(f"{argv[0]} printed {len(stdout)} bytes, more than {MAX_OUTPUT}")
    return stdout.decode(errors="replace")


def parse_output(text: str, form: str, field: str) -> list[dict[str, Any]]:
    """The events in a command's output; raises ValueError saying why it does not parse."""
    parsers = {"json": _json, "number": _number, "keyvalue": _key_values}
    if form != "auto":
        return parsers[form](text, field)
    for parser in (_json, _number, _key_values):
        with contextlib.suppress(ValueError):
            return parser(text, field)
    raise ValueError(f"output is not JSON, a number or key=value lines: {text[:80]!r}")


def _json(text: str, field: str) -> list[dict[str, Any]]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"output is not JSON: {exc}") from None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [{field: value}]
    raise ValueError("JSON output must be an object, an array of objects or a number")


def _number(text: str, field: str) -> list[dict[str, Any]]:
    return [{field: _scalar(text.strip(), strict=True)}]


def _key_values(text: str, field: str) -> list[dict[str, Any]]:
    fields: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"not a key=value line: {line[:80]!r}")
        fields[name.strip()] = _scalar(value.strip(), strict=False)
    if not fields:
        raise ValueError("no key=value lines in the output")
    return [fields]


def _scalar(text: str, strict: bool) -> Any:
    """An int or float when the text is one; else the text (or an error when strict)."""
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if not math.isfinite(number):  # "nan" and "inf" parse as floats: keep them text
            break
        return number
    if strict:
        raise ValueError(f"output is not a number: {text[:80]!r}")
    return text


class CommandReader:
    """The `read` of a command source."""

    def __init__(self, config: CommandSourceConfig) -> None:
        self.config = config
        words = shlex.split(config.command)
        self.argv = ["/bin/sh", "-c", config.command] if config.shell else words

    async def read(self) -> list[Reading]:
        """Run once; every parsed object becomes a reading."""
        cfg = self.config
        text = await run_command(self.argv, cfg.timeout)
        return [Reading(cfg.key, fields) for fields in parse_output(text, cfg.format, cfg.field)]

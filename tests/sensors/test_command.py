"""The command source: real processes, every output format, timeouts and failures."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from agent.config.command_source import CommandSourceConfig
from agent.sources.command import CommandReader, parse_output


def reader(command: str, **settings: object) -> CommandReader:
    options: dict[str, object] = {"name": "cmd", "stream": "s", "command": command, **settings}
    return CommandReader(CommandSourceConfig(**options))  # type: ignore[arg-type]


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "probe.py"
    path.write_text(body)
    return f"{sys.executable} {path}"


async def test_json_number_and_key_value_outputs(tmp_path: Path) -> None:
    json_out = script(tmp_path, 'print(\'{"temp": 21.5, "ok": true}\')')
    assert [r.fields for r in await reader(json_out, key="probe").read()] == [
        {"temp": 21.5, "ok": True}
    ]
    assert (await reader(json_out, key="probe").read())[0].key == "probe"
    assert [r.fields for r in await reader("echo 42.5", field="level").read()] == [{"level": 42.5}]
    kv = await reader("printf 'a=1\\n# note\\nb = 2.5\\nc=on\\nd=nan\\n'", shell=True).read()
    assert [r.fields for r in kv] == [{"a": 1, "b": 2.5, "c": "on", "d": "nan"}]


def test_parse_rules() -> None:
    assert parse_output('[{"a": 1}, {"a": 2}]', "auto", "v") == [{"a": 1}, {"a": 2}]
    assert parse_output("7\n", "auto", "v") == [{"v": 7}]
    with pytest.raises(ValueError, match="not a number"):
        parse_output("seven", "number", "v")
    with pytest.raises(ValueError, match="must be an object"):
        parse_output('"text"', "json", "v")
    with pytest.raises(ValueError, match="not JSON, a number or key=value"):
        parse_output("hello world", "auto", "v")


async def test_no_shell_unless_asked() -> None:
    out = await reader("echo a=$HOME", format="keyvalue").read()
    assert out[0].fields == {"a": "$HOME"}  # no expansion without a shell


async def test_non_zero_exit_is_an_error_with_stderr(tmp_path: Path) -> None:
    failing = script(
        tmp_path, "import sys\nprint('sensor not found', file=sys.stderr)\nsys.exit(3)"
    )
    with pytest.raises(RuntimeError, match="exited with status 3: sensor not found"):
        await reader(failing).read()


async def test_a_hung_command_and_its_children_are_killed() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after 0\.3 s"):
        await reader("sleep 30 & sleep 30; wait", shell=True, timeout=0.3).read()
    assert time.monotonic() - started < 5

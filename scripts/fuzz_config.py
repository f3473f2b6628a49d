#!/usr/bin/env python3
"""Coverage-guided fuzzing of the config loaders with atheris (by hand, not in CI).

`parse_agent_config` and the hub's loader promise a ConfigError listing the problems,
never another exception (tests/fuzz/test_fuzz_config.py checks this on every CI run).
Seeds are the example configs in configs/.

    python3 -m pip install atheris          # not a project dependency (Linux, x86_64)
    python3 scripts/fuzz_config.py -atheris_runs=100000 -timeout=5
    python3 scripts/fuzz_config.py corpus/ -max_total_time=600 -timeout=5

Known bugs (tests/fuzz/test_fuzz_config.py, marked xfail) would stop every run at
once, so by default they are let through: an explicit `!tag` (or a plain `=`, which
PyYAML tags !!value) whose construction fails, and RecursionError on deep nesting.
Set EDGESTREAM_FUZZ_KNOWN=fail to stop on them too (to check a fix). A YAML alias
bomb shows up as a libFuzzer timeout (-timeout).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["sync.config", "agent.config"]):
    import yaml

    from agent.config.load import parse_agent_config
    from sync.config.errors import ConfigError
    from sync.config.spec import load_config
    from sync.hub.config import HubConfig

LET_KNOWN_PASS = os.environ.get("EDGESTREAM_FUZZ_KNOWN", "pass") != "fail"


def known_bug(text: str, exc: Exception) -> bool:
    """True for the failures already reported (explicit tags, deep nesting)."""
    if not LET_KNOWN_PASS:
        return False
    if isinstance(exc, RecursionError):
        return True
    tagged = isinstance(exc, yaml.YAMLError | ValueError | AttributeError | TypeError)
    return tagged and ("!" in text or "2002:value" in str(exc))  # `=` is tagged !!value


def test_one_input(data: bytes) -> None:
    """Load `data` as an agent config and as a hub config; only ConfigError may come out."""
    provider = atheris.FuzzedDataProvider(data)
    text = provider.ConsumeUnicodeNoSurrogates(len(data))
    for load in (
        lambda: parse_agent_config(text, "<fuzz>", {}),
        lambda: load_config(HubConfig, text, "<fuzz>", {}),
    ):
        try:
            load()
        except ConfigError as error:
            if not error.issues:
                raise AssertionError("a ConfigError without issues") from error
        except Exception as exc:
            if not known_bug(text, exc):
                raise


def seed_corpus(argv: list[str]) -> list[str]:
    """When the first argument is an empty folder, fill it with the example configs."""
    folders = [Path(a) for a in argv[1:] if not a.startswith("-")]
    for folder in folders[:1]:
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.iterdir()):
            for config in (ROOT / "configs").glob("*.yaml"):
                # ConsumeUnicodeNoSurrogates reads a first byte: odd means ASCII.
                (folder / config.name).write_bytes(b"\x01" + config.read_bytes())
    return argv


def main() -> None:
    """Run libFuzzer over `test_one_input` with the command line's options."""
    atheris.Setup(seed_corpus(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

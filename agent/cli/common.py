"""Helpers shared by the subcommands: config loading with errors printed, signals."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path
from typing import Any

from agent.config.load import load_agent_config
from agent.config.model import AgentConfig
from agent.logs import MASK, redact
from sync.config.errors import ConfigError, ConfigIssue

EXIT_CONFIG = 2

_SECRET_KEYS = frozenset({"password", "token"})
_GOT_VALUE = re.compile(r'(, got )("(?:[^"\\]|\\.)*"|(?!a mapping|a list)[^\s(]+)')


def print_config_error(error: ConfigError) -> None:
    """Every issue on its own line on stderr, as `file:line: path: message`.

    Messages echo the value they refuse ("got ..."); for a password or token key that
    value is masked, and a password inside a URL is masked wherever it appears.
    """
    print("\n".join(_shown(issue, error.source) for issue in error.issues), file=sys.stderr)
    count = len(error.issues)
    print(
        f"{count} configuration error{'s' if count != 1 else ''}; nothing was started",
        file=sys.stderr,
    )


def _shown(issue: ConfigIssue, source: str) -> str:
    """One issue as printed, with the secret it may quote masked."""
    key = re.sub(r"\[\d+\]$", "", issue.path.rsplit(".", 1)[-1])
    line = issue.format(source)
    if key in _SECRET_KEYS:
        line = _GOT_VALUE.sub(rf"\g<1>{MASK}", line)
    return redact(line)


def agent_config_or_report(path: str | Path) -> AgentConfig | None:
    """The agent config at `path`, or None after printing every problem it has."""
    try:
        return load_agent_config(path)
    except ConfigError as error:
        print_config_error(error)
        return None


def looks_like_hub_config(path: str | Path) -> bool:
    """Guess the kind of a config file from its top-level keys (for `validate`)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return any(line.startswith(("hub_id:", "store:")) for line in text.splitlines())


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop`; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(*_: Any) -> None:
        if stop.is_set():
            sys.exit(130)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

"""`edgestream reload -c FILE`: check a changed config, then have the running agent apply it.

The file is validated here first, so a typo is shown at once with its key path and
the daemon is not even asked. Otherwise the agent of the config's data folder gets
SIGHUP (what `systemctl reload edgestream` sends too) and this command waits for its
metrics endpoint to count the reload, to tell applied from refused.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from agent.cli.common import EXIT_CONFIG, agent_config_or_report
from agent.cli.status import ask_daemon
from agent.config.model import AgentConfig
from agent.pidfile import pid_path, running_pid

WAIT_SECONDS = 30.0
EXIT_NOT_RUNNING = 3
EXIT_REFUSED = 1


def register(commands: Any) -> None:
    """Add the `reload` subcommand."""
    parser = commands.add_parser("reload", help="validate a changed config and apply it live")
    parser.add_argument("-c", "--config", required=True, help="agent YAML file")
    parser.add_argument(
        "--no-wait", action="store_true", help="send the signal and return without waiting"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Validate, signal, then report what the agent did."""
    config = agent_config_or_report(args.config)
    if config is None:
        print("the running agent was not asked to reload and keeps its config", file=sys.stderr)
        return EXIT_CONFIG
    pid = running_pid(config.data_dir)
    if pid is None:
        print(f"no running agent found for {config.data_dir} (no live PID in "
              f"{pid_path(config.data_dir)}); start it with `edgestream run`",
              file=sys.stderr)  # fmt: skip
        return EXIT_NOT_RUNNING
    before = _reload_counts(config)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"agent {pid} exited before it could be asked to reload", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except PermissionError:
        print(f"not allowed to signal agent {pid}: run this as its user (sudo -u edgestream) "
              "or use `systemctl reload edgestream`", file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED
    if args.no_wait or before is None:
        print(f"asked agent {pid} to reload; its log says whether it applied the config")
        return 0
    return _wait_for_result(config, pid, before)


def _wait_for_result(config: AgentConfig, pid: int, before: tuple[float, float]) -> int:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.2)
        after = _reload_counts(config)
        if after is None or after == before:
            continue
        if after[0] > before[0]:
            print(f"agent {pid} applied the new config")
            return 0
        print(f"agent {pid} refused the new config and keeps running the previous one; "
              "its log says why (journalctl -u edgestream)", file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED
    print(f"agent {pid} did not report the reload within {WAIT_SECONDS:.0f}s; see its log",
          file=sys.stderr)  # fmt: skip
    return EXIT_REFUSED


def _reload_counts(config: AgentConfig) -> tuple[float, float] | None:
    """(applied, refused) reloads as the daemon counts them, or None when it does not answer."""
    status = ask_daemon(config)
    if status is None:
        return None
    counts = {"applied": 0.0, "refused": 0.0}
    for sample in status.get("families", {}).get("edgestream_config_reloads_total", []):
        counts[sample["labels"].get("result", "")] = sample["value"]
    return counts["applied"], counts["refused"]

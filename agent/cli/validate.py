"""`edgestream validate FILE`: check a config completely without running anything."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli.common import EXIT_CONFIG, looks_like_hub_config, print_config_error
from agent.config.load import load_agent_config
from sync.config.errors import ConfigError
from sync.hub.config import load_hub_config


def register(commands: Any) -> None:
    """Add the `validate` subcommand."""
    parser = commands.add_parser("validate", help="check a config file and exit")
    parser.add_argument("file", help="agent or hub YAML file")
    parser.add_argument(
        "--kind", choices=("auto", "agent", "hub"), default="auto",
        help="which schema to check against (auto: a file with hub_id or store is a hub)",
    )  # fmt: skip
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Exit 0 and say so when valid; print every error and exit 2 otherwise."""
    kind = args.kind
    try:
        if kind == "auto":
            kind = "hub" if looks_like_hub_config(args.file) else "agent"
        if kind == "hub":
            load_hub_config(args.file)
        else:
            load_agent_config(args.file)
    except ConfigError as error:
        print_config_error(error)
        return EXIT_CONFIG
    except OSError as error:
        print(f"{args.file}: cannot read: {error.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.file}: valid {kind} configuration")
    return 0

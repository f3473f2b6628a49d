"""`edgestream`: the command line. One module per subcommand, wired here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent.cli import demo, hub, queue, reload, run, status, validate, wire

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="edgestream",
        description="Edge event streaming with store-and-forward sync to a central hub.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, reload, hub, validate, queue, status, demo, wire):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the chosen subcommand; returns the exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

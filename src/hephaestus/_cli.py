"""The ``hephaestus`` command line.

Plain argparse for now; commands import what they need lazily, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from hephaestus import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["build_parser", "main"]


def _demo(args: argparse.Namespace) -> int:
    from hephaestus._demo import run_demo

    return asyncio.run(run_demo(fast=args.fast))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per command."""
    parser = argparse.ArgumentParser(
        prog="hephaestus", description="Hephaestus: durable, DAG-based workflows for Python."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="run an order workflow live on in-memory storage",
        description=(
            "Run an order workflow on the embedded defaults (in-memory storage, local runner, "
            "real clock), showing branching, fan-out/fan-in, a retry, a timer and an external "
            "event. Exits 0 when every run ends as expected."
        ),
    )
    demo.add_argument("--fast", action="store_true", help="shorten the timer (for tests)")
    demo.set_defaults(handler=_demo)
    return parser


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for usage errors, as argparse does)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits after --help, --version and usage errors
        return _exit_code(exc.code)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

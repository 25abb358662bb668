"""The ``hephaestus`` command line (click; tables and colour with rich).

Commands import what they need when they run, so ``hephaestus --help`` stays fast. Shell
completion is click's: ``eval "$(_HEPHAESTUS_COMPLETE=bash_source hephaestus)"``.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hephaestus import __version__
from hephaestus._cli._check import check
from hephaestus._cli._common import USAGE, CliError, Settings, console, redact, settings
from hephaestus._cli._graph import graph
from hephaestus._cli._instances import instances

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["cli", "main"]

_LAZY = {
    "db": (
        "hephaestus._cli._db",
        "db",
        "Database schema (PostgreSQL or SQLite): install, migrate, status, SQL.",
    ),
    "worker": (
        "hephaestus._cli._worker",
        "worker",
        "Run a worker node of the Oban runner (steps as jobs).",
    ),
}
"""Commands in optional modules: (module, attribute, short help). Imported when invoked."""


class _RootGroup(click.Group):
    """Lists the optional commands without importing them (their drivers may be missing)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _LAZY or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module_name, attribute, short_help = _LAZY[cmd_name]
        try:
            command = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            return _unavailable(cmd_name, short_help, exc)
        if not isinstance(command, click.Command):
            return _unavailable(cmd_name, short_help, TypeError(f"{attribute} is not a command"))
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY and name not in self.commands:
                rows.append((name, _LAZY[name][2]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_EXTRAS = {"db": ("PostgreSQL support", "postgres"), "worker": ("the Oban runner", "oban")}
"""What a command that fails to import lacks (``db`` only imports PostgreSQL when asked to)."""


def _unavailable(name: str, short_help: str, exc: BaseException) -> click.Command:
    what, extra = _EXTRAS.get(name, ("an optional extra", "postgres"))

    def explain() -> None:
        raise CliError(
            f"`hephaestus {name}` needs {what}: "
            f"pip install 'hephaestus-workflow[{extra}]' ({type(exc).__name__}: {exc})"
        )

    return click.Command(
        name,
        callback=explain,
        help=short_help,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(
    cls=_RootGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="hephaestus")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read settings from this TOML file (default: hephaestus.toml or pyproject.toml's "
    "[tool.hephaestus], nearest to the current directory).",
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Force colour on or off (default: on a terminal, unless NO_COLOR is set).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, color: bool | None) -> None:
    """Hephaestus: durable, DAG-based workflows for Python.

    Settings come from hephaestus.toml or [tool.hephaestus] in pyproject.toml, then
    HEPHAESTUS_* environment variables, then flags. See `hephaestus config`.
    """
    ctx.obj = Settings(config_file=config_file, color=color)


@cli.command()
@click.option("--fast", is_flag=True, help="Shorten the timer (for tests).")
@click.option(
    "--durable",
    metavar="[PATH]",
    is_flag=False,
    flag_value="hephaestus-demo.db",
    default=None,
    help="Keep the runs in this SQLite file (default: hephaestus-demo.db). Interrupt the demo "
    "(Ctrl-C, kill -9) and run it again: it finishes the runs left in the file.",
)
def demo(fast: bool, durable: str | None) -> int:
    """Run an order workflow live on in-memory storage (or a SQLite file).

    Runs it on the embedded defaults (in-memory storage, local runner, real clock), showing
    branching, fan-out/fan-in, a retry, a timer and an external event. Exits 0 when every run
    ends as expected. With --durable the runs live in a SQLite file and survive an
    interruption: the next invocation on the file finishes them (exit 130 on Ctrl-C, 143 on
    SIGTERM).
    """
    from hephaestus._demo import run_demo

    return asyncio.run(run_demo(fast=fast, durable=durable))


@cli.command("config")
def show_config() -> int:
    """Show the effective settings and where each comes from."""
    from rich.table import Table

    config = settings().config
    table = Table("setting", "value", "from", box=None, pad_edge=False)
    for name in ("app", "dsn", "schema", "imports", "color", "graph_format"):
        value = getattr(config, name)
        if name == "dsn" and value:
            value = redact(value)  # never print a password
        shown = ", ".join(value) if isinstance(value, tuple) else "" if value is None else value
        table.add_row(name, shown, config.sources.get(name, "default"))
    console().print(table)
    return 0


cli.add_command(graph)
cli.add_command(check)
cli.add_command(instances)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for usage errors)."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="hephaestus",
            standalone_mode=False,
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # shell completion exits after printing
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else USAGE
    return result if isinstance(result, int) else 0

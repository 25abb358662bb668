"""``hephaestus worker``: run a worker node of the Oban runner until SIGTERM or Ctrl-C.

The command wiring only: the node is an app opened with ``ObanRunner(mode="worker")``.
Importing this module imports ``oban``, so the root group loads it lazily and explains a
missing ``oban`` extra instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

import click

from hephaestus._cli._common import (
    CliError,
    CliUsageError,
    _build_app,
    _summary,
    connection_config,
    connection_options,
    database_of,
    import_modules,
    where_stored,
)
from hephaestus._config import SQLiteDatabase
from hephaestus.runners.oban import ObanRunner

if TYPE_CHECKING:
    from hephaestus._app import Hephaestus

__all__ = ["worker"]


def _queues(values: tuple[str, ...], concurrency: int) -> dict[str, int]:
    queues: dict[str, int] = {}
    for value in values:
        name, sep, limit = value.partition("=")
        if not name.strip():
            raise click.BadParameter(f"{value!r}: expected NAME or NAME=N", param_hint="--queue")
        try:
            queues[name.strip()] = int(limit) if sep else concurrency
        except ValueError:
            raise click.BadParameter(
                f"{value!r}: N must be a whole number", param_hint="--queue"
            ) from None
        if queues[name.strip()] < 1:
            raise click.BadParameter(f"{value!r}: N must be >= 1", param_hint="--queue")
    return queues


@click.command()
@connection_options
@click.option(
    "--queue",
    "queue_specs",
    multiple=True,
    metavar="NAME[=N]",
    help="A queue to execute, N jobs at once (repeatable; default: hephaestus).",
)
@click.option(
    "--concurrency", default=10, show_default=True, help="Jobs at once for a queue without =N."
)
@click.option("--node", default=None, help="This node's name (default: host.pid).")
@click.option(
    "--rescue-after",
    type=float,
    default=None,
    help="Seconds before a job left executing by a silent node runs again (default 300).",
)
@click.option(
    "--stage-interval",
    type=float,
    default=None,
    help="Seconds between stagings of scheduled jobs: the timers' precision (default 1).",
)
@click.option(
    "--shutdown-timeout",
    type=float,
    default=None,
    help="Seconds running steps get to finish on SIGTERM before their jobs go back (default 15).",
)
def worker(
    *,
    app: str | None,
    dsn: str | None,
    schema: str | None,
    imports: tuple[str, ...],
    queue_specs: tuple[str, ...],
    concurrency: int,
    node: str | None,
    rescue_after: float | None,
    stage_interval: float | None,
    shutdown_timeout: float | None,
) -> None:
    """Run a worker node of the Oban runner: execute the steps of runs as jobs.

    With --database (and --import for the workflows' modules) the node is built here; with --app,
    the app's runner must be an ObanRunner, and the flags given override its settings. Stops
    on SIGTERM or Ctrl-C: running steps get --shutdown-timeout to finish, then their jobs go
    back to the queue for other nodes.
    """
    config = connection_config(app, dsn, schema, imports)
    if config.storage_target() == "dsn":
        database = database_of(config)
        if isinstance(database, SQLiteDatabase):
            raise CliUsageError(
                f"{database.url} is SQLite: a worker node runs the Oban runner, which needs "
                "PostgreSQL (--database postgresql://...). On SQLite runs execute in your app's "
                "own process, on the local runner"
            )
    import_modules(config.imports)
    built = _build_app(config)
    runner = built.runner
    if config.storage_target() == "app" and config.app:
        if not isinstance(runner, ObanRunner):
            raise CliUsageError(
                f"--app {config.app} runs on {type(runner).__name__}: a worker node needs "
                "Hephaestus(runner=ObanRunner(...)), or pass --database to build one here"
            )
    else:
        runner = ObanRunner()
        built.runner = runner
    if runner.mode != "worker":
        raise CliUsageError(f"the app's ObanRunner has mode={runner.mode!r}; a node needs 'worker'")
    if queue_specs:
        runner.queues = _queues(queue_specs, concurrency)
    if node:
        runner.node = node
    if rescue_after is not None:
        runner.rescue_after = rescue_after
    if stage_interval is not None:
        runner.stage_interval = stage_interval
    if shutdown_timeout is not None:
        runner.shutdown_timeout = shutdown_timeout
    where = where_stored(config)
    asyncio.run(_serve(built, runner, where or ""))


async def _serve(app: Hephaestus, runner: ObanRunner, where: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await app.open()
    except Exception as exc:
        raise CliError(f"cannot start a worker node on {where}: {_summary(exc)}") from exc
    queues = ", ".join(f"{name}={limit}" for name, limit in runner.queues.items())
    click.echo(
        f"worker {runner.node} on {where} (schema {getattr(app.storage, 'schema', '?')}): "
        f"queues {queues}; SIGTERM or Ctrl-C stops it",
        err=True,
    )
    try:
        await stop.wait()
    finally:
        click.echo(f"worker {runner.node} stopping", err=True)
        with contextlib.suppress(Exception):
            await app.close()
        click.echo(f"worker {runner.node} stopped", err=True)

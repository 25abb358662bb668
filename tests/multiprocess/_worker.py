"""One app process of the multiprocess tests: the local runner on PostgreSQL, driven by stdin.

Usage: ``python -m tests.multiprocess._worker DSN NAME [RUNNER]``, RUNNER one of ``local``
(the default), ``oban`` (an Oban worker node, tuned for tests: timers staged every 0.1 s,
jobs of a silent node rescued after 3 s) or ``oban-client`` (starts and resumes, executes
nothing). The storage connects with
``application_name=NAME`` (so a test can terminate exactly this worker's backends), the step
recorder with ``application_name=rec-NAME``. Prints ``ready PID`` once open. Commands, one per
line, each handled concurrently:

- ``start ID WORKFLOW VALUE``, ``resume ID WORKFLOW VALUE EVENT`` and
  ``cancel ID WORKFLOW VALUE``: answered with ``ok ID``, or ``error ID <exception>`` if the
  call raised;
- ``quit`` (or end of input): close the app and exit.

SIGTERM closes the app as ``quit`` does. ``closed`` is printed once the app has closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

from hephaestus import Hephaestus, Workflow
from hephaestus.runners import LocalRunner, Runner
from hephaestus.storage.postgres import PostgresStorage
from tests.multiprocess._flows import FLOWS, close_recorder, open_recorder

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def say(line: str) -> None:
    print(line, flush=True)


async def handle(
    app: Hephaestus,
    flows: Mapping[str, type[Workflow]],
    words: list[str],
    payload: Mapping[str, object] | None = None,
) -> None:
    """Carry out one ``start``, ``resume`` (with ``payload``) or ``cancel`` command of
    ``flows`` and answer it."""
    ident = words[1] if len(words) > 1 else "?"
    try:
        match words:
            case ["start", _, flow, value]:
                await flows[flow].start(value, app=app)
            case ["resume", _, flow, value, event]:
                await flows[flow].resume(value, event, payload, app=app)
            case ["cancel", _, flow, value]:
                await flows[flow].cancel(value, app=app)
            case _:
                raise ValueError(f"unknown command {' '.join(words)!r}")
    except Exception as exc:  # every failure is reported to the test, which asserts none
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        say(f"error {ident} {detail}")
    else:
        say(f"ok {ident}")


async def serve(
    app: Hephaestus,
    flows: Mapping[str, type[Workflow]],
    *,
    ready: Callable[[], str],
    closing: Callable[[], None],
    payload: Mapping[str, object] | None = None,
) -> None:
    """Open ``app``, say ``ready()``, handle the commands read from stdin concurrently until
    ``quit``, end of input or SIGTERM; then close the app, call ``closing`` and say
    ``closed``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    await app.open()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def read_commands() -> None:
        while line := await reader.readline():
            words = line.decode().split()
            if words == ["quit"]:
                break
            if words:
                task = asyncio.create_task(handle(app, flows, words, payload))
                pending.add(task)
                task.add_done_callback(pending.discard)
        stop.set()

    commands = asyncio.create_task(read_commands())
    say(ready())
    await stop.wait()
    commands.cancel()
    await app.close()
    closing()
    say("closed")


def make_runner(kind: str) -> Runner:
    if kind == "local":
        return LocalRunner(max_threads=16)
    from hephaestus.runners.oban import ObanRunner

    if kind == "oban":
        return ObanRunner(
            stage_interval=0.1,
            rescue_after=3.0,
            rescue_interval=0.5,
            reconcile_interval=5.0,
            shutdown_timeout=5.0,
            max_threads=16,
        )
    if kind == "oban-client":
        return ObanRunner(mode="client")
    raise ValueError(f"unknown runner {kind!r}")


async def main(dsn: str, name: str, runner: str = "local") -> None:
    open_recorder(f"{dsn} application_name=rec-{name}")
    app = Hephaestus(
        storage=PostgresStorage(f"{dsn} application_name={name}", max_size=5),
        runner=make_runner(runner),
        workflows=FLOWS.values(),
    )
    await serve(app, FLOWS, ready=lambda: f"ready {os.getpid()}", closing=close_recorder)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

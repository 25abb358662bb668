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

from hephaestus import Hephaestus
from hephaestus.runners import LocalRunner, Runner
from hephaestus.storage.postgres import PostgresStorage
from tests.multiprocess._flows import FLOWS, close_recorder, open_recorder


def say(line: str) -> None:
    print(line, flush=True)


async def handle(app: Hephaestus, words: list[str]) -> None:
    """Carry out one ``start`` or ``resume`` command and answer it."""
    ident = words[1] if len(words) > 1 else "?"
    try:
        match words:
            case ["start", _, flow, value]:
                await FLOWS[flow].start(value, app=app)
            case ["resume", _, flow, value, event]:
                await FLOWS[flow].resume(value, event, app=app)
            case ["cancel", _, flow, value]:
                await FLOWS[flow].cancel(value, app=app)
            case _:
                raise ValueError(f"unknown command {' '.join(words)!r}")
    except Exception as exc:  # every failure is reported to the test, which asserts none
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        say(f"error {ident} {detail}")
    else:
        say(f"ok {ident}")


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
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    open_recorder(f"{dsn} application_name=rec-{name}")
    app = Hephaestus(
        storage=PostgresStorage(f"{dsn} application_name={name}", max_size=5),
        runner=make_runner(runner),
        workflows=FLOWS.values(),
    )
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
                task = asyncio.create_task(handle(app, words))
                pending.add(task)
                task.add_done_callback(pending.discard)
        stop.set()

    commands = asyncio.create_task(read_commands())
    say(f"ready {os.getpid()}")
    await stop.wait()
    commands.cancel()
    await app.close()
    close_recorder()
    say("closed")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

"""One app process of the multiprocess tests: the local runner on PostgreSQL, driven by stdin.

Usage: ``python -m tests.multiprocess._worker DSN NAME``. The storage connects with
``application_name=NAME`` (so a test can terminate exactly this worker's backends), the step
recorder with ``application_name=rec-NAME``. Prints ``ready PID`` once open. Commands, one per
line, each handled concurrently:

- ``start ID WORKFLOW VALUE`` and ``resume ID WORKFLOW VALUE EVENT``: answered with ``ok ID``,
  or ``error ID <exception>`` if the call raised;
- ``quit`` (or end of input): close the app and exit.

SIGTERM closes the app as ``quit`` does. ``closed`` is printed once the app has closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from hephaestus import Hephaestus
from hephaestus.runners import LocalRunner
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
            case _:
                raise ValueError(f"unknown command {' '.join(words)!r}")
    except Exception as exc:  # every failure is reported to the test, which asserts none
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        say(f"error {ident} {detail}")
    else:
        say(f"ok {ident}")


async def main(dsn: str, name: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    open_recorder(f"{dsn} application_name=rec-{name}")
    app = Hephaestus(
        storage=PostgresStorage(f"{dsn} application_name={name}", max_size=5),
        runner=LocalRunner(max_threads=16),
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
    asyncio.run(main(sys.argv[1], sys.argv[2]))

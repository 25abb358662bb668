"""One app process of the SQLite multiprocess tests: the local runner on a SQLite file.

Usage: ``python -m tests.multiprocess._sqlite_worker DATABASE EXECUTIONS SWEEP``: the storage
is ``SQLiteStorage(DATABASE)``, steps record their executions in the file ``EXECUTIONS`` (see
``_sqlite_flows``), and the runner sweeps (claims the runs of dead owners) every ``SWEEP``
seconds. Prints ``ready PID OWNER`` once open. Commands, one per line, each handled
concurrently, as ``_worker`` takes them (``start``, ``resume``, ``cancel``; ``quit``).

SIGTERM closes the app as ``quit`` does. ``closed`` is printed once the app has closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from hephaestus import Hephaestus
from hephaestus.runners import LocalRunner
from hephaestus.storage.sqlite import SQLiteStorage
from tests.multiprocess._sqlite_flows import FLOWS, close_recorder, open_recorder


def say(line: str) -> None:
    print(line, flush=True)


async def handle(app: Hephaestus, words: list[str]) -> None:
    """Carry out one command and answer it."""
    ident = words[1] if len(words) > 1 else "?"
    try:
        match words:
            case ["start", _, flow, value]:
                await FLOWS[flow].start(value, app=app)
            case ["resume", _, flow, value, event]:
                await FLOWS[flow].resume(value, event, {"by": os.getpid()}, app=app)
            case ["cancel", _, flow, value]:
                await FLOWS[flow].cancel(value, app=app)
            case _:
                raise ValueError(f"unknown command {' '.join(words)!r}")
    except Exception as exc:  # every failure is reported to the test
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        say(f"error {ident} {detail}")
    else:
        say(f"ok {ident}")


async def main(database: str, executions: str, sweep: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    open_recorder(executions)
    storage = SQLiteStorage(database)
    app = Hephaestus(
        storage=storage,
        runner=LocalRunner(max_threads=16, sweep_interval=float(sweep)),
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
    say(f"ready {os.getpid()} {storage.owner}")
    await stop.wait()
    commands.cancel()
    await app.close()
    close_recorder()
    say("closed")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

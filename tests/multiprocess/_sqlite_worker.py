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
import sys

from hephaestus import Hephaestus
from hephaestus.runners import LocalRunner
from hephaestus.storage.sqlite import SQLiteStorage
from tests.multiprocess._sqlite_flows import FLOWS, close_recorder, open_recorder
from tests.multiprocess._worker import serve


async def main(database: str, executions: str, sweep: str) -> None:
    open_recorder(executions)
    storage = SQLiteStorage(database)
    app = Hephaestus(
        storage=storage,
        runner=LocalRunner(max_threads=16, sweep_interval=float(sweep)),
        workflows=FLOWS.values(),
    )
    await serve(
        app,
        FLOWS,
        ready=lambda: f"ready {os.getpid()} {storage.owner}",
        closing=close_recorder,
        payload={"by": os.getpid()},
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

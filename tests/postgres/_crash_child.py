"""The process the crash test kills: starts runs on PostgreSQL, reports progress, never exits.

Usage: ``python -m tests.postgres._crash_child DSN RUNS``. Prints ``ready`` once every run is
started and some step has completed, then keeps executing until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

from hephaestus import Hephaestus, HistoryKind
from hephaestus.storage import InstanceQuery
from hephaestus.storage.postgres import PostgresStorage
from tests.postgres._crash_flows import CrashChain


async def main(dsn: str, runs: int) -> None:
    async with Hephaestus(storage=PostgresStorage(dsn)) as app:
        for index in range(runs):
            await CrashChain.start(f"run{index}", {"index": index})
        while True:
            rows = await app.storage.query(InstanceQuery())
            done = sum(
                entry.kind is HistoryKind.STEP_COMPLETED for row in rows for entry in row.history
            )
            if done >= runs:  # mid-way: about one step per run has completed
                print("ready", flush=True)
                break
            await asyncio.sleep(0.005)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

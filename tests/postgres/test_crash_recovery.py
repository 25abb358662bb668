"""The local runner on PostgreSQL survives a crash: a killed process's runs finish elsewhere."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

from hephaestus import Hephaestus, HistoryKind, Status, WorkflowDefinition
from hephaestus.storage import InstanceQuery
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import run_until_idle
from tests.postgres._crash_flows import CHAIN, CrashChain

ROOT = Path(__file__).resolve().parents[2]
RUNS = 20
BOUND = 30.0


async def test_runs_of_a_killed_process_complete_with_each_transition_applied_once(
    database_url: str,
) -> None:
    """SIGKILL mid-run, then a new app on the database completes every run, no step twice."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.postgres._crash_child",
        database_url,
        str(RUNS),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), BOUND)
        assert line.strip() == b"ready"
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    definition = CrashChain.definition()
    assert isinstance(definition, WorkflowDefinition)
    storage = PostgresStorage(database_url)
    async with Hephaestus(storage=storage) as app:
        before = await storage.query(InstanceQuery())
        assert len(before) == RUNS
        assert any(run.status is not Status.COMPLETED for run in before), "killed too late"
        async with asyncio.timeout(BOUND):
            await run_until_idle(app)  # recovery re-dispatched every unfinished step
        runs = await storage.query(InstanceQuery(workflow=definition.name))

    assert len(runs) == RUNS
    chain_keys = set(definition.nodes)
    assert len(chain_keys) == len(CHAIN) + 1  # the five steps and Done
    for run in runs:
        assert run.status is Status.COMPLETED, run.id
        completions = Counter(
            entry.step for entry in run.history if entry.kind is HistoryKind.STEP_COMPLETED
        )
        assert set(completions) <= chain_keys
        assert {key for key in completions if key != definition.done} == {
            key for key in chain_keys if key != definition.done
        }, run.id
        assert all(count == 1 for count in completions.values()), (run.id, completions)
        assert sum(entry.kind is HistoryKind.COMPLETED for entry in run.history) == 1

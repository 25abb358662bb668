"""``hephaestus worker``: a worker node as a real process, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from hephaestus import Hephaestus, Status
from hephaestus.runners.oban import ObanRunner
from hephaestus.storage.postgres import PostgresStorage
from tests._pg import create_installed_database, drop_database, dsn, require_postgres
from tests.cli._helpers import ROOT, clean_env, hephaestus
from tests.oban._flows import Linear

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    require_postgres()
    name = create_installed_database("hx_oban_cli")
    yield name
    drop_database(name)


@pytest.mark.timeout(120)
async def test_a_worker_node_executes_runs_and_stops_cleanly_on_sigterm(database: str) -> None:
    """The node executes a run started by a client, then exits 0 on SIGTERM, saying so."""
    process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, read at the end
        [
            sys.executable,
            "-m",
            "hephaestus",
            "worker",
            "--dsn",
            dsn(database),
            "--import",
            "tests.oban._flows",
            "--queue",
            "hephaestus=5",
            "--node",
            "cli-node",
            "--stage-interval",
            "0.1",
        ],
        cwd=ROOT,
        env=clean_env(PYTHONPATH=str(ROOT)),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        client = Hephaestus(
            storage=PostgresStorage(dsn(database)), runner=ObanRunner(mode="client")
        )
        async with client:
            await Linear.start("cli1", app=client)
            async with asyncio.timeout(60):
                while True:
                    if (await Linear.get("cli1", app=client)).status is Status.COMPLETED:
                        break
                    await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, errors
    assert "worker cli-node on" in errors
    assert "queues hephaestus=5" in errors
    assert "worker cli-node stopped" in errors


def test_a_schema_without_the_jobs_table_is_a_clear_error(database: str) -> None:
    """Started on a schema that was never migrated, the node says which command to run."""
    result = hephaestus(
        "worker",
        "--dsn",
        dsn(database),
        "--schema",
        "missing",
        "--import",
        "tests.oban._flows",
        env=clean_env(PYTHONPATH=str(ROOT)),
    )
    assert result.returncode != 0
    assert "hephaestus db migrate --schema missing" in result.stderr


def test_an_app_on_another_runner_is_a_usage_error(database: str) -> None:
    """``--app`` whose runner is not an ObanRunner: the message names the fix."""
    result = hephaestus(
        "worker",
        "--app",
        "tests.oban.test_worker_command:local_app",
        env=clean_env(PYTHONPATH=str(ROOT), HEPHAESTUS_TEST_DSN=dsn(database)),
    )
    assert result.returncode == 2, result.stderr
    assert "runner=ObanRunner" in result.stderr


def local_app() -> Hephaestus:
    """An app on the local runner (what ``--app`` must not be for a worker node)."""
    return Hephaestus(storage=PostgresStorage(os.environ["HEPHAESTUS_TEST_DSN"]))

"""The PostgreSQL test harness: an unreachable server skips locally and fails under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests/postgres/test_migrations.py::test_an_uninstalled_schema_has_no_applied_versions"


def run_without_server(ci: str) -> subprocess.CompletedProcess[str]:
    """Run one PostgreSQL test in a child pytest pointed at a port nothing listens on."""
    env = {**os.environ, "HEPHAESTUS_TEST_PGPORT": "1", "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", TARGET],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_unreachable_server_fails_the_run_under_ci() -> None:
    """With ``CI=true`` a missing PostgreSQL is an error, never a skip."""
    completed = run_without_server("true")
    assert completed.returncode == 1, completed.stdout
    assert "CI requires PostgreSQL" in completed.stdout
    assert "skipped" not in completed.stdout


def test_an_unreachable_server_skips_with_a_reason_elsewhere() -> None:
    """Outside CI the PostgreSQL tests are skipped, saying why."""
    completed = run_without_server("false")
    assert completed.returncode == 0, completed.stdout
    assert "1 skipped" in completed.stdout
    assert "PostgreSQL unreachable at 127.0.0.1:1" in completed.stdout

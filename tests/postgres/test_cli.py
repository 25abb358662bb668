"""``hephaestus db install|migrate|status|sql`` against a real database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from click.testing import CliRunner

from hephaestus._cli._db import db
from hephaestus.storage.postgres import MIGRATIONS, applied_versions, schema_sql
from tests._pg import create_database, drop_database, dsn, unique_name

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[2]
LATEST = MIGRATIONS[-1].version


def fresh_database() -> str:
    name = unique_name("hx_cli")
    create_database(name)
    return name


def test_install_creates_the_schema_and_is_idempotent(template_database: str) -> None:
    """``db install`` creates every table in the schema; a second run changes nothing."""
    name = fresh_database()
    try:
        url = dsn(name)
        first = CliRunner().invoke(db, ["install", "--dsn", url, "--schema", "tenant_x"])
        assert first.exit_code == 0, first.output
        assert f"installed schema 'tenant_x' at version {LATEST}" in first.output
        assert asyncio.run(applied_versions(url, "tenant_x")) == [m.version for m in MIGRATIONS]
        again = CliRunner().invoke(
            db, ["install", "--schema", "tenant_x"], env={"HEPHAESTUS_DATABASE_URL": url}
        )
        assert again.exit_code == 0, again.output
        assert "already up to date" in again.output
    finally:
        drop_database(name)


def test_migrate_reports_each_applied_migration(template_database: str) -> None:
    """``db migrate`` on an empty schema applies and names every migration, in order."""
    name = fresh_database()
    try:
        result = CliRunner().invoke(db, ["migrate", "--dsn", dsn(name)])
        assert result.exit_code == 0, result.output
        names = [f"applied {m.version:04d}_{m.name}" for m in MIGRATIONS]
        assert result.output.splitlines() == names
        assert asyncio.run(applied_versions(dsn(name))) == [m.version for m in MIGRATIONS]
    finally:
        drop_database(name)


def test_sql_prints_the_schema_without_a_database() -> None:
    """``db sql`` prints the current schema for the given schema name; ``--after`` the rest."""
    result = CliRunner().invoke(db, ["sql", "--schema", "app"])
    assert result.exit_code == 0, result.output
    assert result.output == schema_sql("app")
    assert 'CREATE TABLE IF NOT EXISTS "app".workflow_instances' in result.output
    tail = CliRunner().invoke(db, ["sql", "--after", "1"])
    assert "-- 0001" not in tail.output
    assert "-- 0002" in tail.output
    assert "workflow_instances_state" in tail.output
    assert "workflow_instance_parts (" not in tail.output


def test_a_malformed_schema_name_is_a_usage_error() -> None:
    """A schema name with spaces or dashes is refused before any SQL is produced."""
    result = CliRunner().invoke(db, ["sql", "--schema", "my-schema"])
    assert result.exit_code == 2
    assert "not a plain identifier" in result.output


def test_an_unreachable_database_is_a_clean_error() -> None:
    """A DSN that cannot connect exits 1 with a one-line message, not a traceback."""
    result = CliRunner().invoke(
        db, ["migrate", "--dsn", "host=127.0.0.1 port=1 user=postgres connect_timeout=1"]
    )
    assert result.exit_code == 1
    assert "Error: PostgreSQL storage failed" in result.output
    assert "Traceback" not in result.output


def test_install_runs_as_a_real_process(template_database: str) -> None:
    """``hephaestus db install`` works as a real process, reading the DSN from the environment."""
    name = fresh_database()
    try:
        env = {**os.environ, "HEPHAESTUS_DATABASE_URL": dsn(name), "PYTHONPATH": str(ROOT)}
        completed = subprocess.run(
            [sys.executable, "-m", "hephaestus", "db", "install"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        assert "installed schema 'public'" in completed.stdout
        with psycopg.connect(dsn(name)) as conn:
            row = conn.execute("SELECT count(*) FROM workflow_instances").fetchone()
        assert row == (0,)
    finally:
        drop_database(name)


def test_db_commands_read_the_layered_configuration(
    template_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like every command, ``db`` takes dsn and schema from hephaestus.toml and HEPHAESTUS_DSN."""
    name = fresh_database()
    try:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "hephaestus.toml").write_text('schema = "from_file"\n')
        no_db = CliRunner().invoke(db, ["install"], env={"HEPHAESTUS_DSN": None})
        assert no_db.exit_code == 2
        assert "no database" in no_db.output
        result = CliRunner().invoke(db, ["install"], env={"HEPHAESTUS_DSN": dsn(name)})
        assert result.exit_code == 0, result.output
        assert "installed schema 'from_file'" in result.output
        assert asyncio.run(applied_versions(dsn(name), "from_file"))
    finally:
        drop_database(name)


def test_status_reports_not_installed_then_up_to_date(
    template_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``db status`` exits 1 naming ``db install`` on an empty schema, 0 once installed."""
    from hephaestus._cli import main

    name = fresh_database()
    try:
        url = dsn(name)
        assert main(["db", "status", "--database", url, "--schema", "tenant_s"]) == 1
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == (
            f"schema 'tenant_s' of {url}: not installed; this code's schema is version {LATEST}"
        )
        assert lines[1:-1] == [f"pending  {m.version:04d}_{m.name}" for m in MIGRATIONS]
        assert lines[-1] == "run `hephaestus db install --schema tenant_s`"
        assert main(["db", "install", "--dsn", url, "--schema", "tenant_s"]) == 0
        capsys.readouterr()
        assert main(["db", "status", "--dsn", url, "--schema", "tenant_s"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"schema 'tenant_s' of {url}: schema version {LATEST}, up to date"
        assert lines[1:] == [f"applied  {m.version:04d}_{m.name}" for m in MIGRATIONS]
    finally:
        drop_database(name)

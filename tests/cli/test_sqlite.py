"""Every database command on a SQLite file: ``--database sqlite:///...`` (alias ``--dsn``),
``HEPHAESTUS_DATABASE_URL``/``HEPHAESTUS_DSN`` and ``database =`` in the configuration file.

Runs are started from Python on the file (there is no ``start`` command); the CLI then lists,
shows, resumes and cancels them as a user would, in a real process.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from hephaestus import Hephaestus, Status
from hephaestus._cli import main
from hephaestus._cli._common import make_storage
from hephaestus._config import Config
from hephaestus.storage import sqlite as sqlite_storage
from hephaestus.storage.sqlite import MIGRATIONS, Migration, SQLiteStorage, applied_versions
from hephaestus.storage.sqlite import _migrations as sqlite_migrations
from hephaestus.testing import run_until_idle
from tests.cli._helpers import ROOT, clean_env, hephaestus
from tests.cli.example_workflows import FanOutFlow, LinearFlow

if TYPE_CHECKING:
    from pathlib import Path

IMPORT = ("--import", "tests.cli.example_workflows")
LATEST = MIGRATIONS[-1].version


def _url(path: Path) -> str:
    """``sqlite:///`` and an absolute path: four slashes."""
    assert path.is_absolute()
    return f"sqlite:///{path}"


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout


def _env(**extra: str) -> dict[str, str]:
    """A clean environment in which a process started in a temporary directory can still
    import the test workflows."""
    return clean_env(PYTHONPATH=str(ROOT), **extra)


async def _create_runs(path: Path) -> None:
    """Two runs waiting for the courier and one completed, in the SQLite file at ``path``."""
    async with Hephaestus(storage=SQLiteStorage(path)) as app:
        await app.start(FanOutFlow, "1001", {"items": ["anvil"]}, metadata={"tenant": "acme"})
        await app.start(FanOutFlow, "1003", {"items": ["tongs"]}, metadata={"tenant": "acme"})
        await app.start(LinearFlow, "a1")
        await run_until_idle(app)


async def _statuses(path: Path) -> dict[str, Status]:
    async with Hephaestus(storage=SQLiteStorage(path)) as app:
        return {run.id: run.status for run in await app.list()}


# -- the whole round trip, as a user runs it ----------------------------------------------------


def test_install_then_list_show_resume_cancel_and_count_on_a_sqlite_file(tmp_path: Path) -> None:
    """``db install`` creates the file; runs started on it are listed, shown, resumed, cancelled
    and counted by the CLI through ``--database sqlite:////abs/path``, and the changes persist."""
    path = tmp_path / "runs.db"
    url = _url(path)
    assert url.startswith("sqlite:////")
    installed = _ok(hephaestus("db", "install", "--database", url))
    assert installed.strip() == f"installed {url} at version {LATEST}"
    assert applied_versions(str(path)) == [m.version for m in MIGRATIONS]
    asyncio.run(_create_runs(path))

    listed = json.loads(_ok(hephaestus("instances", "list", "--database", url, "--json")))
    runs = {run["id"]: run for run in listed["runs"]}
    assert set(runs) == {"order::1001", "order::1003", "doc::a1"}
    assert runs["order::1001"]["status"] == "waiting"
    assert runs["order::1001"]["waiting_steps"] == ["await_delivery"]
    assert runs["doc::a1"]["status"] == "completed"
    table = _ok(hephaestus("instances", "list", "--dsn", url, "--status", "waiting"))
    assert table.rstrip().endswith("2 runs")

    shown = _ok(hephaestus("instances", "show", "order::1001", "--database", url, *IMPORT))
    lines = [line.rstrip() for line in shown.splitlines()]
    assert lines[0] == "id        order::1001"
    assert "status    waiting" in lines
    assert "  await_delivery: resume with delivered" in lines

    resumed = hephaestus(
        "instances", "resume", "order::1001", "delivered", "--payload", '{"signed_by": "A"}',
        "--database", url, *IMPORT,
    )  # fmt: skip
    assert _ok(resumed).strip() == "order::1001: resumed with delivered; waiting -> completed"
    cancelled = hephaestus(
        "instances", "cancel", "order::1003", "--reason", "lost", "--database", url, *IMPORT
    )
    assert _ok(cancelled).strip() == "order::1003: cancelled; waiting -> cancelled"
    again = hephaestus(
        "instances", "resume", "order::1003", "delivered", "--database", url, *IMPORT
    )
    assert again.returncode == 1
    assert "Error: instance order::1003 is cancelled; it is no longer active" in again.stderr

    counted = json.loads(
        _ok(hephaestus("instances", "count", "--database", url, "--by", "status", "--json"))
    )
    assert counted == {
        "groups": [{"status": "cancelled", "count": 1}, {"status": "completed", "count": 2}],
        "total": 3,
    }
    graph = _ok(
        hephaestus(
            "graph", "tests.cli.example_workflows:FanOutFlow", "--instance", "order::1001",
            "--database", url,
        )
    )  # fmt: skip
    assert "instance order::1001  run " in graph
    assert "completed" in graph.splitlines()[1]
    assert asyncio.run(_statuses(path)) == {
        "order::1001": Status.COMPLETED,
        "order::1003": Status.CANCELLED,
        "doc::a1": Status.COMPLETED,
    }


# -- the three layers: flag, environment, file -------------------------------------------------


def test_a_relative_url_is_read_from_the_environment_in_the_current_directory(
    tmp_path: Path,
) -> None:
    """``sqlite:///runs.db`` (three slashes) is ``runs.db`` in the working directory; both
    environment variables take it."""
    env = _env(HEPHAESTUS_DATABASE_URL="sqlite:///runs.db")
    installed = _ok(hephaestus("db", "install", cwd=tmp_path, env=env))
    assert installed.strip() == f"installed sqlite:///runs.db at version {LATEST}"
    assert (tmp_path / "runs.db").is_file()
    asyncio.run(_create_runs(tmp_path / "runs.db"))
    listed = json.loads(_ok(hephaestus("instances", "list", "--json", cwd=tmp_path, env=env)))
    assert len(listed["runs"]) == 3
    by_dsn = _env(HEPHAESTUS_DSN="sqlite:///runs.db", HEPHAESTUS_DATABASE_URL="postgresql:///x")
    out = _ok(hephaestus("instances", "show", "doc::a1", cwd=tmp_path, env=by_dsn))
    assert "status    completed" in out
    config = _ok(hephaestus("config", cwd=tmp_path, env=by_dsn))
    assert any(
        line.split() == ["dsn", "sqlite:///runs.db", "env:HEPHAESTUS_DSN"]
        for line in config.splitlines()
    )


@pytest.mark.parametrize("key", ["database", "dsn"])
def test_the_configuration_file_names_the_sqlite_file(tmp_path: Path, key: str) -> None:
    """``database = "sqlite:///runs.db"`` (or ``dsn =``) in hephaestus.toml serves every
    command; a flag overrides it."""
    (tmp_path / "hephaestus.toml").write_text(
        f'{key} = "sqlite:///runs.db?synchronous=NORMAL"\n'
        'imports = ["tests.cli.example_workflows"]\n'
    )
    env = _env()
    status = hephaestus("db", "status", cwd=tmp_path, env=env)
    assert status.returncode == 1
    assert status.stdout.splitlines()[0] == (
        f"sqlite:///runs.db: not installed; this code's schema is version {LATEST}"
    )
    assert not (tmp_path / "runs.db").exists()  # status touches nothing
    _ok(hephaestus("db", "migrate", cwd=tmp_path, env=env))
    asyncio.run(_create_runs(tmp_path / "runs.db"))
    resumed = hephaestus("instances", "resume", "order::1003", "delivered", cwd=tmp_path, env=env)
    assert _ok(resumed).strip() == "order::1003: resumed with delivered; waiting -> completed"
    other = tmp_path / "other.db"
    elsewhere = hephaestus("db", "install", "--database", _url(other), cwd=tmp_path, env=env)
    assert _ok(elsewhere).strip() == f"installed {_url(other)} at version {LATEST}"
    assert other.is_file()


def test_a_file_setting_both_dsn_and_database_is_refused(tmp_path: Path) -> None:
    """``dsn`` and ``database`` are one setting: a file with both is a usage error."""
    (tmp_path / "hephaestus.toml").write_text(
        'dsn = "postgresql:///app"\ndatabase = "sqlite:///runs.db"\n'
    )
    result = hephaestus("config", cwd=tmp_path, env=_env())
    assert result.returncode == 2
    assert "sets both dsn and database (one setting)" in result.stderr


# -- db install / migrate / status -------------------------------------------------------------


def test_db_status_reports_applied_pending_and_newer_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``db status`` exits 0 up to date; with a migration this code has and the file lacks it
    lists it as pending, ``instances`` refuse the file naming ``db migrate``, and ``db migrate``
    applies it; a version the code does not know is reported as newer (exit 1)."""
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///runs.db"
    assert main(["db", "install", "--database", url]) == 0
    assert main(["db", "status", "--database", url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"installed {url} at version {LATEST}",
        f"{url}: schema version {LATEST}, up to date",
        *(f"applied  {m.version:04d}_{m.name}" for m in MIGRATIONS),
    ]

    upcoming = Migration(LATEST + 1, "cli_test", ("CREATE TABLE cli_test_added (a INTEGER)",))
    newer = (*MIGRATIONS, upcoming)
    monkeypatch.setattr(sqlite_storage, "MIGRATIONS", newer)
    monkeypatch.setattr(sqlite_migrations, "MIGRATIONS", newer)
    assert main(["db", "status", "--database", url]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{url}: schema version {LATEST}; this code's is {LATEST + 1}"
    assert f"pending  {LATEST + 1:04d}_cli_test" in lines
    assert lines[-1] == f"1 migration pending: run `hephaestus db migrate --database {url}`"
    assert main(["instances", "list", "--database", url]) == 1
    refused = capsys.readouterr().err
    assert f"hephaestus db migrate --database {url}" in refused
    assert "Traceback" not in refused
    assert main(["db", "migrate", "--database", url]) == 0
    assert capsys.readouterr().out == f"applied {LATEST + 1:04d}_cli_test\n"
    assert main(["db", "status", "--database", url]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{url}: schema version {LATEST + 1}, up to date"
    )

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["db", "status", "--database", url]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"{url}: schema version {LATEST + 1} is newer than this code knows ({LATEST})"
    )
    assert f"applied  {LATEST + 1:04d}_(unknown to this code)" in lines
    assert main(["db", "migrate", "--database", url]) == 1
    assert "newer than this code knows" in capsys.readouterr().err


def test_db_install_refuses_a_file_that_is_not_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not a SQLite database is an error in one line, not a traceback."""
    path = tmp_path / "notes.db"
    path.write_text("not a database, just notes " * 100)
    assert main(["db", "install", "--database", _url(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ")
    assert "Traceback" not in err
    assert path.read_text().startswith("not a database")


def test_status_reads_a_file_another_tool_made_as_not_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SQLite file without Hephaestus's tables is "not installed" (exit 1), named to install."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (a)")
    connection.close()
    assert main(["db", "status", "--database", _url(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{_url(path)}: not installed; this code's schema is version {LATEST}"
    assert lines[-1] == f"run `hephaestus db install --database {_url(path)}`"


# -- URL options and errors -------------------------------------------------------------------


def test_url_options_reach_the_storage(tmp_path: Path) -> None:
    """``?synchronous=NORMAL&busy_timeout=5&poll_interval=0.5`` are SQLiteStorage's arguments."""
    url = f"{_url(tmp_path / 'runs.db')}?synchronous=normal&busy_timeout=5&poll_interval=0.5"
    storage = make_storage(Config().merge({"dsn": url}))
    assert isinstance(storage, SQLiteStorage)
    assert storage.path == str(tmp_path / "runs.db")
    assert (storage.synchronous, storage.busy_timeout, storage.poll_interval) == ("NORMAL", 5, 0.5)
    plain = make_storage(Config().merge({"dsn": "sqlite:///runs.db"}))
    assert isinstance(plain, SQLiteStorage)
    assert (plain.path, plain.synchronous, plain.busy_timeout) == ("runs.db", "FULL", 10.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["instances", "list", "--database", "runs.db"], "write sqlite:///runs.db"),
        (["db", "install", "--database", "sqlite://host/runs.db"], "has a host ('host')"),
        (["db", "install", "--database", "sqlite:runs.db"], "does not start with sqlite:///"),
        (["db", "install", "--dsn", "sqlite:///:memory:"], "needs a database file"),
        (
            ["instances", "list", "--database", "sqlite:///x.db?journal=wal"],
            "unknown SQLite URL option 'journal' in 'sqlite:///x.db?journal=wal'; known: "
            "synchronous, busy_timeout, poll_interval",
        ),
        (
            ["db", "status", "--database", "sqlite:///x.db?synchronous=fast"],
            "synchronous='fast' in 'sqlite:///x.db?synchronous=fast': expected one of OFF, "
            "NORMAL, FULL, EXTRA",
        ),
        (["db", "status", "--database", "sqlite:///x.db?busy_timeout=soon"], "expected seconds"),
        (["instances", "list", "--database", "mysql://u:secret@h/d"], "mysql://u:***@h/d"),
        (
            ["instances", "list", "--database", "sqlite:///x.db", "--schema", "tenant_a"],
            "schema 'tenant_a' (from flag) is PostgreSQL's: sqlite:///x.db is a SQLite file",
        ),
        (["db", "install", "--database", "sqlite:///x.db", "--schema", "t"], "has no schemas"),
        (["db", "sql", "--database", "sqlite:///x.db"], "`hephaestus db sql` is PostgreSQL only"),
    ],
)
def test_bad_sqlite_settings_are_usage_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    """Malformed URLs, unknown options, bare paths, other schemes, a PostgreSQL schema with
    SQLite and ``db sql`` on SQLite exit 2 saying what to write; no file is created."""
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "secret" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_default_schema_is_accepted_with_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--schema public`` (the default) is no tenant, so SQLite takes it."""
    monkeypatch.chdir(tmp_path)
    assert main(["db", "install", "--database", "sqlite:///x.db", "--schema", "public"]) == 0
    assert capsys.readouterr().out == f"installed sqlite:///x.db at version {LATEST}\n"


def test_reading_a_file_that_does_not_exist_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``instances`` on a missing file (a typo) exit 1 naming ``db install``, creating nothing."""
    monkeypatch.chdir(tmp_path)
    assert main(["instances", "list", "--database", "sqlite:///typo.db"]) == 1
    assert capsys.readouterr().err == (
        "Error: SQLite database typo.db does not exist (create it with `hephaestus db install "
        "--database sqlite:///typo.db`, or by opening it from your app)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_worker_node_needs_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``worker`` runs the Oban runner: with a SQLite database it exits 2 saying so."""
    pytest.importorskip("oban")
    monkeypatch.chdir(tmp_path)
    assert main(["worker", "--database", "sqlite:///runs.db", *IMPORT]) == 2
    err = capsys.readouterr().err
    assert "sqlite:///runs.db is SQLite: a worker node runs the Oban runner, which needs " in err
    assert list(tmp_path.iterdir()) == []


def test_db_on_sqlite_needs_no_postgresql_driver(tmp_path: Path) -> None:
    """Without psycopg (the postgres extra), ``db install`` and ``instances`` still serve SQLite."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None  # as if the postgres extra were not installed\n"
        "from hephaestus._cli import main\n"
        "status = main(['db', 'install', '--database', 'sqlite:///runs.db'])\n"
        "status = status or main(['instances', 'count', '--dsn', 'sqlite:///runs.db', '--json'])\n"
        "sys.exit(status or main(['db', 'install', '--database', 'postgresql:///x']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=_env(),
    )
    assert result.stdout.splitlines()[0] == f"installed sqlite:///runs.db at version {LATEST}"
    assert '"total": 0' in result.stdout
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error: `hephaestus db` needs PostgreSQL support: "
        "pip install 'hephaestus-workflow[postgres]'"
    )

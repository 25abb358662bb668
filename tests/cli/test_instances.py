"""``hephaestus instances`` as a subprocess against a real PostgreSQL database.

A test app creates runs in a fresh database (kept as a template); read-only tests share one
copy of it and each test that changes runs gets its own copy. The CLI then runs as a user runs
it, with ``--dsn`` (or ``--app``) and ``--import``, and its output is compared.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from hephaestus import Hephaestus
from hephaestus._cli import main
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import run_until_idle
from tests._pg import (
    create_database,
    create_installed_database,
    drop_database,
    dsn,
    require_postgres,
    unique_name,
)
from tests.cli._helpers import clean_env, hephaestus
from tests.cli.example_workflows import FanOutFlow, LinearFlow, OrderFlow
from tests.cli.fixtures.apps import DSN_VARIABLE

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

IMPORT = ("--import", "tests.cli.example_workflows")
UNREACHABLE = "host=127.0.0.1 port=1 user=postgres dbname=nothing connect_timeout=2"


async def _create_runs(url: str) -> None:
    """Five runs: two waiting for the courier, three completed (one a version-1 run); tenants."""
    async with Hephaestus(storage=PostgresStorage(url)) as app:
        await app.start(FanOutFlow, "1001", {"items": ["anvil"]}, metadata={"tenant": "acme"})
        await app.start(FanOutFlow, "1002", {"items": []}, metadata={"tenant": "globex"})
        await app.start(FanOutFlow, "1003", {"items": ["tongs"]}, metadata={"tenant": "acme"})
        await app.start(LinearFlow, "a1")
        await app.start(OrderFlow, "5", {"items": [1]}, version=1)
        await run_until_idle(app)


@pytest.fixture(scope="module")
def template() -> Iterator[str]:
    """A migrated database holding the test app's runs; only ever copied, never connected to."""
    require_postgres()
    name = create_installed_database("hx_cli_template")
    try:
        asyncio.run(_create_runs(dsn(name)))
        yield name
    finally:
        drop_database(name)


def _copy(template: str) -> Iterator[str]:
    name = unique_name("hx_cli")
    create_database(name, template=template)
    try:
        yield dsn(name)
    finally:
        drop_database(name)


@pytest.fixture(scope="module")
def shared(template: str) -> Iterator[str]:
    """The DSN of a copy the read-only tests share."""
    yield from _copy(template)


@pytest.fixture
def own(template: str) -> Iterator[str]:
    """The DSN of a copy for one test that resumes or cancels runs."""
    yield from _copy(template)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(_ok(result))


def _runs(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The runs of ``list --json`` (an object with ``runs`` and ``next_cursor``)."""
    runs: list[dict[str, Any]] = _json(result)["runs"]
    return runs


def test_list_prints_a_table_of_every_run_newest_first(shared: str) -> None:
    """``list`` shows each run's id, workflow, version, status and waiting steps, newest first."""
    out = _ok(hephaestus("instances", "list", "--dsn", shared))
    rows = [line for line in out.splitlines() if "::" in line]
    ids = [row.split("│")[1].strip() for row in rows]
    assert ids == ["vorder::5", "doc::a1", "order::1003", "order::1002", "order::1001"]
    cells = [cell.strip() for cell in rows[-1].split("│")[1:-1]]
    assert cells[:5] == ["order::1001", "FanOutFlow", "1", "waiting", "await_delivery"]
    assert [cell.strip() for cell in rows[0].split("│")[2:5]] == ["OrderFlowV1", "1", "completed"]
    assert out.rstrip().endswith("5 runs")


def test_list_filters_and_paginates_as_json(shared: str) -> None:
    """``--status``, ``--workflow``, ``--limit/--offset`` and ``--oldest-first`` narrow the JSON."""
    waiting = _runs(
        hephaestus("instances", "list", "--dsn", shared, "--status", "waiting", "--json")
    )
    assert [row["id"] for row in waiting] == ["order::1003", "order::1001"]
    assert waiting[0]["waiting_steps"] == ["await_delivery"]
    assert waiting[0]["workflow"] == "tests.cli.example_workflows.FanOutFlow"
    by_name = _runs(
        hephaestus(
            "instances", "list", "--dsn", shared, *IMPORT, "--workflow", "OrderFlow", "--json"
        )
    )
    assert [(row["id"], row["version"]) for row in by_name] == [("vorder::5", 1)]
    page = _runs(
        hephaestus(
            "instances", "list", "--dsn", shared, "--oldest-first", "--limit", "2",
            "--offset", "1", "--json",
        )
    )  # fmt: skip
    assert [row["id"] for row in page] == ["order::1002", "order::1003"]


def test_show_prints_steps_waiting_context_history_and_the_coloured_graph(shared: str) -> None:
    """``show`` lists the run's steps, what it waits for, its context, history and graph."""
    out = _ok(hephaestus("instances", "show", "order::1001", "--dsn", shared, *IMPORT))
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == "id        order::1001"
    assert "workflow  tests.cli.example_workflows.FanOutFlow (version 1)" in lines
    assert "status    waiting" in lines
    steps = {line.split("│")[1].strip(): line for line in lines if line.startswith("│ ")}
    assert [cell.strip() for cell in steps["validate"].split("│")[1:5]] == [
        "validate", "completed", "1", "valid",
    ]  # fmt: skip
    assert "skipped" in steps["reject"]
    # only routable events: FanOutFlow routes no "timeout" from await_delivery
    assert "  await_delivery: resume with delivered" in lines
    assert '      "anvil"' in lines
    assert any("step_waiting" in line and "await_delivery" in line for line in lines)
    assert " 3  [~] [await_delivery]" in lines
    assert " 0  [✓] [*validate]" in lines


def test_show_as_json_and_without_the_workflow_module(shared: str) -> None:
    """``--json`` prints the whole run; without ``--import`` the graph is explained, not drawn."""
    data = _json(hephaestus("instances", "show", "order::1002", "--dsn", shared, "--json"))
    assert (data["id"], data["status"]) == ("order::1002", "completed")
    assert data["steps"]["reject"]["status"] == "completed"
    assert data["context"]["initial"] == {"items": []}
    assert [entry["kind"] for entry in data["history"]][-1] == "completed"
    out = _ok(hephaestus("instances", "show", "order::1002", "--dsn", shared))
    assert "(not available: --import the module that defines" in out


def test_graph_with_an_instance_reads_its_states_from_the_database(shared: str) -> None:
    """``graph --instance`` marks each step with its state in the stored run."""
    out = _ok(
        hephaestus(
            "graph", "tests.cli.example_workflows:FanOutFlow", "--instance", "order::1001",
            "--dsn", shared,
        )
    )  # fmt: skip
    assert "instance order::1001  run " in out
    assert " 2  [✓] [ship]  <── charge, reserve  (join: all)" in out
    assert " 3  [~] [await_delivery]" in out


def test_resume_delivers_the_event_runs_to_the_end_and_prints_the_status(own: str) -> None:
    """``resume`` with a JSON payload completes the waiting run; the payload is its step result."""
    payload = '{"signed_by": "A. Smith"}'
    out = _ok(
        hephaestus(
            "instances", "resume", "order::1001", "delivered", "--payload", payload,
            "--dsn", own, *IMPORT,
        )
    )  # fmt: skip
    assert out.strip() == "order::1001: resumed with delivered; waiting -> completed"
    data = _json(hephaestus("instances", "show", "order::1001", "--dsn", own, "--json"))
    assert data["status"] == "completed"
    assert data["context"]["steps"]["await_delivery"] == {"signed_by": "A. Smith"}
    untouched = _json(hephaestus("instances", "show", "order::1003", "--dsn", own, "--json"))
    assert untouched["status"] == "waiting"  # the CLI did not recover or run other runs


async def test_show_lists_scheduled_resumes(own: str) -> None:
    """A resume scheduled with ``schedule_resume`` is shown with its step, event, time and id."""
    async with Hephaestus(storage=PostgresStorage(own), recover=False) as app:
        item = await app.schedule_resume("order::1003", "await_delivery", 3600, event="delivered")
    out = _ok(hephaestus("instances", "show", "order::1003", "--dsn", own, *IMPORT))
    lines = [line.rstrip() for line in out.splitlines()]
    assert "Scheduled" in lines
    when = item.at.strftime("%Y-%m-%d %H:%M:%S")
    assert f"  await_delivery: delivered at {when} (id {item.id})" in lines


def test_cancel_is_final_and_further_operations_fail(own: str) -> None:
    """``cancel`` stops a waiting run; resuming or cancelling it again exits 1 with the reason."""
    out = _ok(
        hephaestus("instances", "cancel", "order::1003", "--reason", "lost", "--dsn", own, *IMPORT)
    )
    assert out.strip() == "order::1003: cancelled; waiting -> cancelled"
    again = hephaestus("instances", "resume", "order::1003", "delivered", "--dsn", own, *IMPORT)
    assert again.returncode == 1
    assert "Error: instance order::1003 is cancelled; it is no longer active" in again.stderr


def test_app_option_opens_a_user_app_factory(shared: str) -> None:
    """``--app module:function`` builds the user's app (here on PostgreSQL) and lists its runs."""
    result = hephaestus(
        "instances", "list", "--app", "tests.cli.fixtures.apps:postgres_app", "--json",
        env=clean_env(**{DSN_VARIABLE: shared}),
    )  # fmt: skip
    assert len(_runs(result)) == 5


def test_dsn_from_the_environment_is_used(shared: str) -> None:
    """HEPHAESTUS_DSN configures the storage when no flag is given."""
    result = hephaestus(
        "instances", "list", "--status", "completed", "--json",
        env=clean_env(HEPHAESTUS_DSN=shared),
    )  # fmt: skip
    assert {row["id"] for row in _runs(result)} == {"vorder::5", "doc::a1", "order::1002"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "order::9999"], "Error: no instance order::9999"),
        (["show", "1001"], "no instance 1001; instance ids are key::value"),
        (["resume", "1001", "delivered", *IMPORT], "pass the whole id, as `list` shows it"),
        (["resume", "order::1001", "bogus"], "no waiting step of order::1001 can take 'bogus'"),
        (
            ["resume", "order::1001", "timeout", *IMPORT],
            "{'await_delivery': ['delivered']}",
        ),
    ],
)
def test_operation_errors_exit_1_with_a_clear_message(
    shared: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown instances and undeclared events exit 1 and say why; nothing changes."""
    assert main(["instances", *args, "--dsn", shared]) == 1
    assert message in capsys.readouterr().err


def test_resume_without_the_workflow_module_asks_for_import(shared: str) -> None:
    """Resuming needs the workflow's definition: without ``--import`` it exits 1 with a hint."""
    result = hephaestus("instances", "resume", "order::1001", "delivered", "--dsn", shared)
    assert result.returncode == 1
    assert "no workflow named 'tests.cli.example_workflows.FanOutFlow'" in result.stderr
    assert "(pass --import MODULE)" in result.stderr


def _damage(url: str) -> str:
    """Corrupt order::1001's state (the run id returned); rename order::1003's waiting step."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT run_id FROM workflow_instances WHERE id = 'order::1001'")
        run_id = str(row.fetchone()[0])  # type: ignore[index]
        conn.execute("UPDATE workflow_instances SET state = '[]' WHERE run_id = %s", [run_id])
        conn.execute(
            "UPDATE workflow_instance_parts SET key = 'await_courier' WHERE key = 'await_delivery'"
            " AND run_id = (SELECT run_id FROM workflow_instances WHERE id = 'order::1003')"
        )
    return run_id


def test_a_corrupt_or_outdated_run_never_breaks_list_or_show(own: str) -> None:
    """``list`` skips an undecodable run (logged), ``show`` names it; outdated runs are shown."""
    corrupt = _damage(own)
    listed = hephaestus("instances", "list", "--dsn", own, *IMPORT)
    assert listed.returncode == 0, listed.stderr
    assert "order::1003" in listed.stdout
    assert "order::1001" not in listed.stdout
    assert f"skipped stored run {corrupt}" in listed.stderr
    assert "Traceback" not in listed.stderr

    shown = hephaestus("instances", "show", "order::1001", "--dsn", own, *IMPORT)
    assert shown.returncode == 1
    assert f"run {corrupt} cannot be decoded" in shown.stderr
    assert "Traceback" not in shown.stderr

    outdated = _ok(hephaestus("instances", "show", "order::1003", "--dsn", own, *IMPORT))
    assert "Does not fit the current definition" in outdated
    assert "'await_courier' is not a step of" in outdated
    resumed = hephaestus("instances", "resume", "order::1003", "delivered", "--dsn", own, *IMPORT)
    assert resumed.returncode == 1
    assert "does not fit the current definition" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    cancelled = _ok(hephaestus("instances", "cancel", "order::1003", "--dsn", own, *IMPORT))
    assert "waiting -> cancelled" in cancelled


def test_unreachable_database_exits_1_with_the_driver_message() -> None:
    """A DSN whose server is down fails fast with exit 1 and the driver's reason."""
    result = hephaestus("instances", "list", "--dsn", UNREACHABLE)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot connect to host=127.0.0.1 port=1")
    assert "Connection refused" in result.stderr or "connection failed" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list"], "no storage to read: pass --app MODULE:ATTR or --database URL"),
        (["list", "--app", "tests.cli.fixtures.apps:not_an_app"], "is int, not a Hephaestus app"),
        (
            ["list", "--app", "tests.cli.nothing_here:app"],
            "no module named 'tests.cli.nothing_here'",
        ),
        (["list", "--app", "tests.cli.fixtures.apps"], "expected --app as module:attr"),
        (["list", "--dsn", UNREACHABLE, "--import", "tests.cli.nope"], "no module named"),
        (["resume", "x::1", "go", "--payload", "{oops", "--dsn", UNREACHABLE], "not valid JSON"),
        (["resume", "x::1", "go", "--payload", "[1]", "--dsn", UNREACHABLE], "a JSON object"),
        (["list", "--status", "sleeping"], "'sleeping' is not one of"),
        (["list", "--metadata", "tenant"], "--metadata takes KEY=VALUE, got 'tenant'"),
        (["list", "--created-after", "yesterday"], "is neither an ISO 8601 time"),
        (["count", "--updated-before", "5x"], "--updated-before: '5x' is neither"),
        (["list", "--value-prefix", "10"], "--value-prefix needs --workflow"),
        (["list", "--after", "not-a-cursor"], "--after: not a query cursor"),
        (["count", "--by", "tenant"], "'tenant' is not one of"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing storage settings, bad --app targets, modules and payloads are usage errors."""
    assert main(["instances", *args]) == 2
    assert message in capsys.readouterr().err


def test_uninstalled_schema_says_how_to_install_it() -> None:
    """A database without the tables exits 1 and points to ``hephaestus db install``."""
    require_postgres()
    name = unique_name("hx_cli_empty")
    create_database(name)
    try:
        result = hephaestus("instances", "list", "--dsn", dsn(name), "--schema", "tenant_x")
    finally:
        drop_database(name)
    assert result.returncode == 1
    assert 'relation "tenant_x.workflow_instances" does not exist' in result.stderr
    assert "(is the schema installed? hephaestus db install --schema tenant_x)" in result.stderr


def test_in_memory_app_is_opened_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    """An --app on in-memory storage works but warns that it sees no other process's runs."""
    assert main(["instances", "list", "--app", "tests.cli.fixtures.apps:memory_app"]) == 0
    captured = capsys.readouterr()
    assert captured.out.rstrip().endswith("0 runs")
    assert captured.err.startswith("note: tests.cli.fixtures.apps:memory_app keeps runs in memory")


EVERY_RUN = {"order::1001", "order::1002", "order::1003", "doc::a1", "vorder::5"}
BY_PREFIX = {"order::1001", "order::1002", "order::1003"}  # not vorder::5


def _ids(*args: str, dsn: str) -> set[str]:
    return {
        row["id"] for row in _runs(hephaestus("instances", "list", "--dsn", dsn, *args, "--json"))
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--id-prefix", "order::"], BY_PREFIX),
        (["--id-prefix", "order::1003"], {"order::1003"}),
        (["--workflow", "FanOutFlow", "--value-prefix", "100", *IMPORT], BY_PREFIX),
        (["--tag", "shipping", *IMPORT], {"order::1001", "order::1002", "order::1003"}),
        (["--tag", "shop", "--status", "completed", *IMPORT], {"order::1002", "vorder::5"}),
        (["--metadata", "tenant=acme"], {"order::1001", "order::1003"}),
        (["--metadata", 'tenant="globex"', "--status", "completed"], {"order::1002"}),
        (["--workflow", "OrderFlow", "--version", "1", *IMPORT], {"vorder::5"}),
        (["--workflow", "OrderFlow", "--version", "2", *IMPORT], set()),
        (["--created-after", "1h", "--updated-after", "1d"], EVERY_RUN),
        (["--created-before", "1h"], set()),
        (["--updated-before", "2000-01-01"], set()),
    ],
)  # fmt: skip
def test_list_filters_by_prefix_tag_metadata_version_and_time(
    shared: str, args: list[str], expected: set[str]
) -> None:
    """Each filter of ``list`` keeps exactly the stored runs that match it."""
    assert _ids(*args, dsn=shared) == expected


def test_list_time_ranges_take_iso_times(shared: str) -> None:
    """``--created-after T`` keeps runs created at or after T, ``--created-before T`` the rest."""
    runs = _runs(hephaestus("instances", "list", "--dsn", shared, "--json"))
    middle = sorted(runs, key=lambda row: row["created_at"])[2]["created_at"]
    later = {row["id"] for row in runs if row["created_at"] >= middle}
    assert 0 < len(later) < len(runs)
    assert _ids("--created-after", middle, dsn=shared) == later
    assert _ids("--created-before", middle, dsn=shared) == {row["id"] for row in runs} - later
    updated = max(row["updated_at"] for row in runs)
    latest = {row["id"] for row in runs if row["updated_at"] == updated}
    assert _ids("--updated-after", updated, dsn=shared) == latest


def test_list_walks_every_page_by_cursor(shared: str) -> None:
    """``--after`` the printed cursor gives the next page, until no cursor is printed."""
    table = _ok(hephaestus("instances", "list", "--dsn", shared, "--limit", "2"))
    assert "2 runs; next page: --after " in table
    seen: list[str] = []
    cursor: str | None = None
    while True:
        args = ["--limit", "2", "--json"] + (["--after", cursor] if cursor else [])
        data = _json(hephaestus("instances", "list", "--dsn", shared, *args))
        seen += [row["id"] for row in data["runs"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen == ["vorder::5", "doc::a1", "order::1003", "order::1002", "order::1001"]
    first = table.splitlines()[-1].split("--after ")[1]
    data = _json(hephaestus("instances", "list", "--dsn", shared, "--after", first, "--json"))
    assert [row["id"] for row in data["runs"]] == seen[2:]


def test_count_groups_by_status_and_workflow(shared: str) -> None:
    """``count`` prints a table of runs per status and workflow, with filters and ``--by``."""
    out = _ok(hephaestus("instances", "count", "--dsn", shared))
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines()]
    assert ["waiting", "tests.cli.example_workflows.FanOutFlow", "2"] in rows
    assert ["completed", "tests.cli.example_workflows.OrderFlowV1", "1"] in rows
    assert ["total", "", "5"] in rows
    data = _json(
        hephaestus(
            "instances", "count", "--dsn", shared, "--by", "status", "--metadata", "tenant=acme",
            "--json",
        )
    )  # fmt: skip
    assert data == {"groups": [{"status": "waiting", "count": 2}], "total": 2}


async def test_resume_of_a_run_another_process_owns_reports_what_the_owner_did(own: str) -> None:
    """A live app owns the run: the CLI forwards the event and prints the status once the
    owner has applied it (the owner executes, the CLI does not)."""
    async with Hephaestus(storage=PostgresStorage(own), workflows=[FanOutFlow]) as app:
        owner = app.storage.owner  # type: ignore[attr-defined]
        result = await asyncio.to_thread(
            hephaestus, "instances", "resume", "order::1001", "delivered", "--dsn", own, *IMPORT
        )
        assert _ok(result).strip() == "order::1001: resumed with delivered; waiting -> completed"
        with psycopg.connect(own, autocommit=True) as conn:
            row = conn.execute(
                "SELECT owner FROM workflow_instances WHERE id = 'order::1001'"
            ).fetchone()
        assert row is not None
        assert row[0] is None or row[0] == owner  # executed by the app (or released at its close)


def test_workflow_filter_without_import_matches_the_stored_names(shared: str) -> None:
    """Without ``--import`` a class name matches stored names; a name matching none fails."""
    runs = _runs(
        hephaestus("instances", "list", "--dsn", shared, "--workflow", "FanOutFlow", "--json")
    )
    assert [row["id"] for row in runs] == ["order::1003", "order::1002", "order::1001"]
    counted = _json(
        hephaestus(
            "instances", "count", "--dsn", shared, "--workflow", "LinearFlow", "--json",
        )
    )  # fmt: skip
    assert counted["total"] == 1
    full = "tests.cli.example_workflows.OrderFlowV1"
    runs = _runs(hephaestus("instances", "list", "--dsn", shared, "--workflow", full, "--json"))
    assert [row["id"] for row in runs] == ["vorder::5"]
    # The umbrella is known only from its definition: without it, say so rather than print [].
    missing = hephaestus("instances", "list", "--dsn", shared, "--workflow", "OrderFlow")
    assert missing.returncode == 2
    assert "--workflow OrderFlow: no workflow of that name is defined here" in missing.stderr
    assert "pass --import MODULE" in missing.stderr
    assert full in missing.stderr, "the stored names are listed"
    # Tags live on definitions: without the module, a tag would silently match nothing.
    untagged = hephaestus("instances", "list", "--dsn", shared, "--tag", "shop")
    assert untagged.returncode == 2
    assert "--tag shop: no workflow defined here is tagged 'shop'" in untagged.stderr
    assert "pass --import MODULE" in untagged.stderr


SCRIPT = """
import asyncio, sys
from hephaestus import Done, Hephaestus, Unique, WaitForEvent, Workflow
from hephaestus.storage.postgres import PostgresStorage
from hephaestus.testing import run_until_idle


class ScriptFlow(Workflow):
    unique = Unique(key="script")
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


async def main() -> None:
    async with Hephaestus() as app:  # in memory: runs end with the script anyway, no warning
        await ScriptFlow.start("0")
    async with Hephaestus(storage=PostgresStorage(sys.argv[1])) as app:
        await ScriptFlow.start("1")
        await ScriptFlow.start("2")
        await run_until_idle(app)


asyncio.run(main())
"""


def test_runs_of_a_script_workflow_are_warned_about_and_explained(own: str, tmp_path: Path) -> None:
    """A ``__main__`` workflow started in durable storage warns once; the CLI names the cause."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    made = subprocess.run(
        [sys.executable, str(script), own],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert made.returncode == 0, made.stderr
    warnings = [line for line in made.stderr.splitlines() if "starting a run of" in line]
    assert len(warnings) == 1, made.stderr
    assert "'__main__.ScriptFlow' in durable storage" in warnings[0]
    assert "cannot continue or show it" in warnings[0]

    listed = _runs(
        hephaestus("instances", "list", "--dsn", own, "--workflow", "ScriptFlow", "--json")
    )
    assert [row["id"] for row in listed] == ["script::2", "script::1"]
    prefix = hephaestus(
        "instances", "list", "--dsn", own, "--workflow", "ScriptFlow", "--value-prefix", "1"
    )
    assert prefix.returncode == 2
    assert "--value-prefix: no workflow named 'ScriptFlow' here" in prefix.stderr
    assert "--id-prefix KEY::VALUE" in prefix.stderr
    resumed = hephaestus("instances", "resume", "script::1", "received", "--dsn", own, *IMPORT)
    assert resumed.returncode == 1
    assert "'__main__.ScriptFlow' was defined in a script run directly" in resumed.stderr
    assert "Move the workflow into a module" in resumed.stderr
    assert "(pass --import MODULE)" not in resumed.stderr
    shown = _ok(hephaestus("instances", "show", "script::1", "--dsn", own))
    assert "defined in a script run directly" in shown


# -- operators: errors, re-runs, bulk cancel, history, time zones, watching ------------------

PAYMENTS = ("--import", "tests.cli.failing_flows")


async def _failed_payments(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """pay::1 and pay::2 fail (card declined), with metadata; the CLI runs without DECLINE."""
    from tests.cli.failing_flows import DECLINE, PaymentFlow

    monkeypatch.setenv(DECLINE, "1")
    try:
        async with Hephaestus(storage=PostgresStorage(url), workflows=[PaymentFlow]) as app:
            await app.start(PaymentFlow, "1", {"amount": 40}, metadata={"tenant": "acme"})
            await app.start(PaymentFlow, "2", {"amount": 15})
            await run_until_idle(app)
    finally:
        monkeypatch.delenv(DECLINE)


async def test_failed_runs_show_their_error_and_are_re_run(
    own: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``list`` has an error column for failed runs; ``rerun`` starts one again, same input."""
    await _failed_payments(own, monkeypatch)
    wide = clean_env(COLUMNS="200")
    table = _ok(await asyncio.to_thread(hephaestus, "instances", "list", "--dsn", own, env=wide))
    assert "┃ error" in table.splitlines()[1]
    row = next(line for line in table.splitlines() if "pay::1" in line)
    assert "exception at charge_card: card declined for 40" in row
    fine = next(line for line in table.splitlines() if "order::1001" in line)
    assert fine.split("│")[-2].strip() == "", "a run that did not fail has no error"
    listed = _runs(
        await asyncio.to_thread(
            hephaestus, "instances", "list", "--dsn", own, "--status", "failed", "--json"
        )
    )
    assert [(r["id"], r["error"]["message"]) for r in listed] == [
        ("pay::2", "card declined for 15"),
        ("pay::1", "card declined for 40"),
    ]

    rerun = await asyncio.to_thread(
        hephaestus, "instances", "rerun", "pay::1", "--dsn", own, *PAYMENTS
    )
    out = _ok(rerun)
    assert out.startswith("pay::1: re-run of failed run ")
    assert out.rstrip().endswith("; completed")
    again = _json(
        await asyncio.to_thread(hephaestus, "instances", "show", "pay::1", "--dsn", own, "--json")
    )
    assert (again["status"], again["context"]["initial"], again["metadata"]) == (
        "completed",
        {"amount": 40},
        {"tenant": "acme"},
    )
    assert again["run_id"] != listed[1]["run_id"]
    refused = await asyncio.to_thread(
        hephaestus, "instances", "rerun", "pay::1", "--dsn", own, *PAYMENTS
    )
    assert refused.returncode == 1
    assert "pay::1 is completed: only a failed run is re-run" in refused.stderr
    unimported = await asyncio.to_thread(hephaestus, "instances", "rerun", "pay::2", "--dsn", own)
    assert unimported.returncode == 1
    assert "(pass --import MODULE)" in unimported.stderr


def test_cancel_all_lists_asks_and_cancels_the_matching_active_runs(own: str) -> None:
    """``cancel-all``: a dry run changes nothing, "no" cancels nothing, "yes" cancels them."""
    acme = ("instances", "cancel-all", "--dsn", own, "--metadata", "tenant=acme", *IMPORT)
    dry = _ok(hephaestus(*acme, "--dry-run"))
    assert [line.split("│")[1].strip() for line in dry.splitlines() if "::" in line] == [
        "order::1001",
        "order::1003",
    ]
    assert "dry run: 2 runs would be cancelled" in dry
    declined = subprocess.run(
        [sys.executable, "-m", "hephaestus", *acme],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert declined.returncode == 1
    assert "Cancel 2 runs? [y/N]" in declined.stdout
    assert "nothing cancelled" in declined.stderr
    counted = _json(hephaestus("instances", "count", "--dsn", own, "--by", "status", "--json"))
    assert {"status": "waiting", "count": 2} in counted["groups"]
    confirmed = subprocess.run(
        [sys.executable, "-m", "hephaestus", *acme, "--reason", "tenant closed"],
        input="y\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert confirmed.returncode == 0, confirmed.stderr
    assert "cancelled 2 runs" in confirmed.stdout
    counted = _json(hephaestus("instances", "count", "--dsn", own, "--by", "status", "--json"))
    assert {"status": "cancelled", "count": 2} in counted["groups"]
    history = _json(hephaestus("instances", "show", "order::1003", "--dsn", own, "--json"))
    assert history["history"][-1]["data"] == {"reason": "tenant closed"}
    nothing = _ok(hephaestus(*acme, "--yes"))
    assert "no active run matches: nothing to cancel" in nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "cancel-all needs at least one filter"),
        (["--status", "completed"], "--status completed: only active runs"),
    ],
)
def test_cancel_all_refuses_no_filter_and_final_statuses(
    shared: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cancelling everything by accident takes a filter; final runs cannot be cancelled."""
    assert main(["instances", "cancel-all", "--dsn", shared, *args]) == 2
    assert message in capsys.readouterr().err


def test_show_limits_history_and_shows_times_in_a_zone(shared: str) -> None:
    """``--history N`` keeps the last N entries; ``--tz`` converts and names the zone."""
    data = _json(hephaestus("instances", "show", "order::1001", "--dsn", shared, "--json"))
    total = len(data["history"])
    assert total > 2
    out = _ok(
        hephaestus(
            "instances", "show", "order::1001", "--dsn", shared, "--history", "2",
            "--tz", "Asia/Tokyo",
        )
    )  # fmt: skip
    assert f"History (Asia/Tokyo), the last 2 of {total} entries" in out
    assert f"{total - 2} earlier" in out
    created = datetime.fromisoformat(data["created_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"created   {created:%Y-%m-%d %H:%M:%S} Asia/Tokyo" in out
    listed = _ok(hephaestus("instances", "list", "--dsn", shared, "--tz", "Asia/Tokyo"))
    assert "created (Asia/Tokyo)" in listed
    assert f"{created:%Y-%m-%d %H:%M:%S}" in listed
    wrong = hephaestus("instances", "list", "--dsn", shared, "--tz", "Mars/Olympus")
    assert wrong.returncode == 2
    assert "--tz 'Mars/Olympus' is not a time zone" in wrong.stderr


def test_watch_follows_a_run_until_it_ends(own: str) -> None:
    """``show --watch`` prints new history entries as another process resumes the run."""
    watcher = subprocess.Popen(
        [sys.executable, "-m", "hephaestus", "instances", "show", "order::1001", "--dsn", own,
         "--watch", "--interval", "0.1", "--history", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        for line in watcher.stdout:  # ends if the watcher exits early: the asserts below fail
            if line.startswith("Watching order::1001"):
                break
        _ok(hephaestus("instances", "resume", "order::1001", "delivered", "--dsn", own, *IMPORT))
        rest, errors = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, errors
    lines = rest.splitlines()
    assert any("step_resumed" in line and "delivered" in line for line in lines), rest
    assert lines[-1] == "order::1001: completed"

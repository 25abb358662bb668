"""``instances list`` and ``instances count`` filters, on an in-memory app with runs at known times.

The app (``tests.cli.fixtures.apps:seeded_app``) is built by the CLI from ``--app``, in this
process; see its docstring for the six runs it holds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hephaestus._cli import main

APP = ("--app", "tests.cli.fixtures.apps:seeded_app")
MODULE = "tests.cli.example_workflows"
EVERY = ["vorder::6", "vorder::5", "doc::a1", "order::2001", "order::1002", "order::1001"]


def _list(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["instances", "list", *APP, *args, "--json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def _ids(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    return [row["id"] for row in _list(capsys, *args)["runs"]]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], EVERY),
        (["--status", "waiting"], ["vorder::6", "order::2001"]),
        (["--status", "waiting", "--status", "completed", "--id-prefix", "doc::"], ["doc::a1"]),
        (["--workflow", "FanOutFlow"], ["order::2001", "order::1002", "order::1001"]),
        (["--workflow", "OrderFlow"], ["vorder::6", "vorder::5"]),
        (["--workflow", "OrderFlowV2"], ["vorder::6"]),
        (["--workflow", "OrderFlow", "--version", "1"], ["vorder::5"]),
        (["--version", "2"], ["vorder::6"]),
        (["--id-prefix", "order::"], ["order::2001", "order::1002", "order::1001"]),
        # full names: other tests of this process define workflows named OrderFlow too
        (["--workflow", f"{MODULE}.FanOutFlow", "--value-prefix", "100"],
         ["order::1002", "order::1001"]),
        (["--workflow", f"{MODULE}.OrderFlow", "--value-prefix", "6"], ["vorder::6"]),
        (["--tag", "shop"], EVERY[:2] + EVERY[3:]),
        (["--tag", "shop", "--tag", "shipping", "--status", "waiting"], ["order::2001"]),
        (["--metadata", "tenant=acme"], ["vorder::6", "order::2001", "order::1001"]),
        (["--metadata", "tenant=acme", "--metadata", "priority=1"], ["order::1001"]),
        (["--metadata", 'labels=["rush"]'], ["order::2001"]),
        (["--metadata", "priority=1.0"], ["order::1001"]),  # JSON numbers compare as numbers
        (["--metadata", 'priority="1"'], []),  # a JSON string is not the number 1
        (["--created-after", "2026-01-01T09:30:00Z"], ["vorder::6", "vorder::5", "doc::a1"]),
        (["--created-before", "2026-01-01T09:10"], ["order::1001"]),  # no offset: UTC
        (["--created-after", "2026-01-01T10:10+01:00", "--created-before", "2026-01-01T09:40Z"],
         ["doc::a1", "order::2001", "order::1002"]),  # 09:10Z to 09:40Z, half-open
        (["--updated-after", "2026-01-01T10:00Z"], ["order::1001"]),
        (["--updated-before", "2026-01-01T09:20Z"], ["order::1002"]),
        (["--created-after", "1w"], []),  # the runs were made long before the last week
        (["--created-before", "1d"], EVERY),
        (["--oldest-first", "--limit", "2"], ["order::1001", "order::1002"]),
    ],
)  # fmt: skip
def test_each_filter_keeps_the_runs_that_match(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: list[str]
) -> None:
    """``list`` with a filter returns exactly the matching runs, newest first."""
    assert _ids(capsys, *args) == expected


@pytest.mark.parametrize("direction", [[], ["--oldest-first"]])
def test_cursor_pages_return_every_run_once(
    capsys: pytest.CaptureFixture[str], direction: list[str]
) -> None:
    """Following ``next_cursor`` with the same filters yields every run once, in order."""
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        after = ["--after", cursor] if cursor else []
        data = _list(capsys, "--limit", "4", "--status", "completed", *direction, *after)
        seen += [row["id"] for row in data["runs"]]
        cursor = data["next_cursor"]
        pages += 1
        if cursor is None:
            break
    completed = ["vorder::5", "doc::a1", "order::1002", "order::1001"]
    assert seen == (completed[::-1] if direction else completed)
    assert pages == 1  # four completed runs fit one page of four: no empty last page
    first = _list(capsys, "--limit", "3", *direction)
    rest = _list(capsys, "--limit", "3", "--after", first["next_cursor"], *direction)
    order = EVERY[::-1] if direction else EVERY
    assert [row["id"] for row in first["runs"] + rest["runs"]] == order
    assert rest["next_cursor"] is None


def test_the_table_ends_with_the_next_cursor(capsys: pytest.CaptureFixture[str]) -> None:
    """The table's last line names the ``--after`` of the next page while runs follow."""
    assert main(["instances", "list", *APP, "--limit", "5"]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("5 runs; next page: --after ")
    cursor = last.rsplit(" ", 1)[1]
    assert _ids(capsys, "--after", cursor) == ["order::1001"]


def test_count_groups_runs_by_status_and_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    """``count`` tabulates runs per status and workflow with a total; ``--by`` picks groups."""
    assert main(["instances", "count", *APP]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if "│" in line]
    assert rows == [
        ["completed", "tests.cli.example_workflows.FanOutFlow", "2"],
        ["completed", "tests.cli.example_workflows.LinearFlow", "1"],
        ["completed", "tests.cli.example_workflows.OrderFlowV1", "1"],
        ["waiting", "tests.cli.example_workflows.FanOutFlow", "1"],
        ["waiting", "tests.cli.example_workflows.OrderFlowV2", "1"],
        ["total", "", "6"],
    ]
    assert lines[1].split("┃")[1:4] == [
        " status    ",
        " workflow                                ",
        " runs ",
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--by", "status"],
         [{"status": "completed", "count": 4}, {"status": "waiting", "count": 2}]),
        (["--by", "workflow", "--by", "status", "--workflow", "OrderFlow"], [
            {"workflow": f"{MODULE}.OrderFlowV1", "status": "completed", "count": 1},
            {"workflow": f"{MODULE}.OrderFlowV2", "status": "waiting", "count": 1},
        ]),
        (["--by", "status", "--metadata", "tenant=acme", "--updated-before", "2026-01-01T10:00Z"],
         [{"status": "waiting", "count": 2}]),
        (["--status", "failed"], []),
    ],
)  # fmt: skip
def test_count_as_json_takes_the_filters_of_list(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: list[dict[str, Any]]
) -> None:
    """``count --json`` gives each group in ``--by`` order and the total of the filtered runs."""
    assert main(["instances", "count", *APP, *args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {"groups": expected, "total": sum(group["count"] for group in expected)}


def test_an_unknown_workflow_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A ``--workflow`` neither defined here nor stored fails naming the way out (not [])."""
    assert main(["instances", "list", *APP, "--workflow", "Nope", "--value-prefix", "1"]) == 2
    err = capsys.readouterr().err
    assert "--workflow Nope: no workflow of that name is defined here" in err
    assert "pass --import MODULE" in err


@pytest.mark.parametrize("command", ["list", "count"])
def test_a_tag_no_defined_workflow_has_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A ``--tag`` no defined workflow carries would match nothing: it fails naming --import."""
    assert main(["instances", command, *APP, "--tag", "shop", "--tag", "unknown"]) == 2
    err = capsys.readouterr().err
    assert "--tag unknown: no workflow defined here is tagged 'unknown'" in err
    assert "pass --import MODULE" in err

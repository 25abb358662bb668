"""The ``graph``, ``check`` and ``config`` commands, help, errors and shell completion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from hephaestus import graphs
from hephaestus._cli import cli, main
from tests.cli._helpers import clean_env, hephaestus
from tests.cli.example_workflows import LinearFlow, OrderFlow

GOLDEN = Path(__file__).parent / "golden"
ANSI = "\x1b["


def _commands(
    group: click.Group, ctx: click.Context, path: tuple[str, ...]
) -> list[tuple[str, ...]]:
    found = [path]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            found.extend(_commands(command, ctx, (*path, name)))
        elif command is not None:
            found.append((*path, name))
    return found


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` exits 0 on the root, every command and every subcommand, describing it."""
    paths = _commands(cli, click.Context(cli), ())
    assert {("graph",), ("check",), ("config",), ("demo",), ("db",)} <= set(paths)
    assert {("instances", name) for name in ("list", "show", "resume", "cancel")} <= set(paths)
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert out.startswith(f"Usage: hephaestus {' '.join(path)}".rstrip()), path
        assert len(out.splitlines()) > 3, path


@pytest.mark.parametrize(("fmt", "suffix"), [("ascii", "txt"), ("mermaid", "mmd"), ("dot", "dot")])
def test_graph_command_prints_the_golden_rendering(fmt: str, suffix: str) -> None:
    """``hephaestus graph MODULE:Workflow --format F`` prints exactly the golden rendering."""
    result = hephaestus("graph", "tests.cli.example_workflows:FanOutFlow", "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / f"fan_out_fan_in.{suffix}").read_text(encoding="utf-8")
    assert ANSI not in result.stdout


def test_graph_of_a_module_draws_each_workflow_and_version_selects_one() -> None:
    """A bare module draws all its workflows; ``--version`` draws one version of an umbrella."""
    everything = hephaestus("graph", "tests.cli.example_workflows")
    assert everything.returncode == 0, everything.stderr
    titles = [line for line in everything.stdout.splitlines() if "  version " in line]
    assert titles[:4] == [
        "LinearFlow  version 1",
        "BranchFlow  version 1",
        "FanOutFlow  version 1",
        "RouteFlow  version 1",
    ]
    assert "OrderFlow  version 2" in titles


def test_graph_version_option_draws_only_that_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version 1`` prints the same text as ``graphs.render(..., version=1)``."""
    assert main(["graph", "tests.cli.example_workflows:OrderFlow", "--version", "1"]) == 0
    assert capsys.readouterr().out == graphs.render(OrderFlow, version=1) + "\n"


def test_graph_colours_on_a_terminal_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """``--color`` forces ANSI styles, which piped output otherwise never has."""
    assert main(["--color", "graph", "tests.cli.example_workflows:LinearFlow"]) == 0
    out = capsys.readouterr().out
    assert ANSI in out
    assert main(["--no-color", "graph", "tests.cli.example_workflows:LinearFlow"]) == 0
    assert ANSI not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["graph", "no_such_module:Flow"], "no module named 'no_such_module'"),
        (["graph", "tests.cli.example_workflows:Missing"], "has no attribute 'Missing'"),
        (["graph", "tests.cli.example_workflows:EXAMPLES"], "not a Workflow class"),
        (["graph", "tests.cli.example_workflows:OrderFlow", "--version", "9"], "no version 9"),
        (["graph", "tests.cli.example_workflows:LinearFlow", "--format", "svg"], "'svg' is not"),
        (["graph", "tests.cli.example_workflows:LinearFlow", "--check"], "only applies with"),
        (["graph", "not a module"], "is not a module name"),
    ],
)
def test_graph_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown modules, attributes, versions or formats are usage errors with a clear message."""
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_graph_inject_updates_a_file_idempotently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--inject`` rewrites the marked block, a re-run changes nothing, ``--check`` spots drift."""
    start, end = graphs.markers("LinearFlow")
    doc = tmp_path / "flows.md"
    doc.write_text(f"# Flows\n\n{start}\nold\n{end}\n\nMore text.\n", encoding="utf-8")
    target = "tests.cli.example_workflows:LinearFlow"
    result = hephaestus("graph", target, "--inject", str(doc))
    assert result.returncode == 0, result.stderr
    assert f"updated {doc} (LinearFlow)" in result.stdout
    injected = doc.read_text(encoding="utf-8")
    assert injected == f"# Flows\n\n{graphs.docstring_block(LinearFlow)}\n\nMore text.\n"
    assert main(["graph", target, "--inject", str(doc), "--check"]) == 0
    assert "is up to date" in capsys.readouterr().out
    assert doc.read_text(encoding="utf-8") == injected
    doc.write_text(injected.replace("[*fetch]", "[*stale]"), encoding="utf-8")
    assert main(["graph", target, "--inject", str(doc), "--check"]) == 1
    assert "is out of date" in capsys.readouterr().out
    assert main(["graph", "tests.cli.example_workflows:BranchFlow", "--inject", str(doc)]) == 1
    assert "hephaestus:graph:start:BranchFlow" in capsys.readouterr().err


def test_check_reports_every_issue_with_codes_and_exits_1() -> None:
    """Checking a package lists valid workflows, each issue of a broken one, and import failures."""
    result = hephaestus("check", "tests.cli.fixtures")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "✓ tests.cli.fixtures.broken_flows.FineFlow  2 steps, version 1" in lines
    assert "✓ tests.cli.fixtures.valid_flows.HelloFlow  2 steps, version 1" in lines
    broken = next(line for line in lines if "invalid workflow BrokenFlow" in line)
    assert broken.startswith("✗ tests.cli.fixtures.broken_flows: invalid workflow BrokenFlow, 2")
    assert broken.endswith("tests/cli/fixtures/broken_flows.py:42")
    assert any(
        line.startswith("    [cycle] cycle detected in workflow graph: Check -> Retry -> Check.")
        for line in lines
    )
    assert any(
        line.startswith("    [unhandled_event] Check declares event 'rejected'") for line in lines
    )
    assert any(
        "raises_on_import: import failed: RuntimeError: the settings" in line for line in lines
    )
    assert lines[-1] == "2 valid workflows, 2 invalid"


def test_check_exits_0_when_all_valid_and_2_for_an_unknown_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """All-valid modules exit 0; a module that does not exist is a usage error (exit 2)."""
    assert main(["check", "tests.cli.example_workflows"]) == 0
    out = capsys.readouterr().out
    assert "✓ tests.cli.example_workflows.OrderFlow  versions 1, 2 (current 2)" in out
    assert out.splitlines()[-1] == "7 valid workflows, 0 invalid"
    assert main(["check", "tests.cli.fixtures.valid_flows", "tests.cli.nope"]) == 2
    assert "no module named 'tests.cli.nope'" in capsys.readouterr().out
    assert main(["check"]) == 2


def test_bash_completion_script_and_candidates() -> None:
    """Click's completion prints a bash script, and completes command names and choices."""
    script = hephaestus(env=clean_env(_HEPHAESTUS_COMPLETE="bash_source"))
    assert script.returncode == 0
    assert "_hephaestus_completion()" in script.stdout
    assert "complete -o nosort -F _hephaestus_completion hephaestus" in script.stdout
    words = hephaestus(
        env=clean_env(
            _HEPHAESTUS_COMPLETE="bash_complete",
            COMP_WORDS="hephaestus instances list --status w",
            COMP_CWORD="4",
        )
    )
    assert words.stdout.split() == ["plain,waiting"]


def test_config_command_shows_each_setting_and_its_source(tmp_path: Path) -> None:
    """``config`` shows file, environment and default values, each with where it came from."""
    (tmp_path / "hephaestus.toml").write_text(
        'app = "proj.flows:app"\nschema = "from_file"\n', encoding="utf-8"
    )
    result = hephaestus("config", cwd=tmp_path, env=clean_env(HEPHAESTUS_SCHEMA="from_env"))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["app"] == ["proj.flows:app", str(tmp_path / "hephaestus.toml")]
    assert rows["schema"] == ["from_env", "env:HEPHAESTUS_SCHEMA"]
    assert rows["graph_format"] == ["ascii", "default"]


def test_malformed_config_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad configuration file stops commands that read it with exit 2, naming the problem."""
    config = tmp_path / "bad.toml"
    config.write_text('colour = "never"\n', encoding="utf-8")
    assert main(["--config", str(config), "config"]) == 2
    assert "unknown setting 'colour'" in capsys.readouterr().err
    result = hephaestus("config", cwd=tmp_path, env=clean_env(HEPHAESTUS_COLOR="pink"))
    assert result.returncode == 2
    assert "color from env:HEPHAESTUS_COLOR must be one of auto, always, never" in result.stderr


def test_help_imports_neither_rich_nor_the_database_driver() -> None:
    """``hephaestus --help`` lists every command without importing rich, psycopg or the demo."""
    code = (
        "import sys\n"
        "from hephaestus._cli import main\n"
        "main(['--help'])\n"
        "heavy = ('rich', 'psycopg', 'hephaestus.storage.postgres', 'hephaestus.storage.sqlite',\n"
        "         'hephaestus._demo')\n"
        "print('loaded:', [name for name in heavy if name in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "  db         Database schema (PostgreSQL or SQLite)" in result.stdout
    assert result.stdout.splitlines()[-1] == "loaded: []"


def test_db_without_the_postgres_extra_explains_how_to_install_it() -> None:
    """Without psycopg, ``hephaestus db ...`` exits 1 naming the extra instead of a traceback."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None  # as if the postgres extra were not installed\n"
        "from hephaestus._cli import main\n"
        "sys.exit(main(['db', 'install', '--dsn', 'postgresql:///x']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error: `hephaestus db` needs PostgreSQL support: "
        "pip install 'hephaestus-workflow[postgres]'"
    )
    assert "Traceback" not in result.stderr

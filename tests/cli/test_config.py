"""Command-line settings: file < environment < flags, with every value's source recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hephaestus._config import (
    Config,
    ConfigError,
    PostgresDatabase,
    SQLiteDatabase,
    find_file,
    parse_database,
)

if TYPE_CHECKING:
    from pathlib import Path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    """With no file and an empty environment every setting keeps its default."""
    config = Config.load(cwd=tmp_path, env={})
    assert (config.app, config.dsn, config.schema, config.imports) == (None, None, "public", ())
    assert (config.color, config.graph_format, dict(config.sources)) == ("auto", "ascii", {})


def test_environment_overrides_file_and_flags_override_both(tmp_path: Path) -> None:
    """Each layer wins over the one below it, setting by setting, and says where it came from."""
    path = _write(
        tmp_path / "hephaestus.toml",
        'dsn = "postgresql://file/db"\nschema = "tenant_file"\ngraph_format = "dot"\n',
    )
    env = {"HEPHAESTUS_SCHEMA": "tenant_env", "HEPHAESTUS_COLOR": "never"}
    config = Config.load(cwd=tmp_path, env=env).merge({"schema": "tenant_flag", "dsn": None})
    assert config.dsn == "postgresql://file/db"
    assert config.schema == "tenant_flag"
    assert config.color == "never"
    assert config.graph_format == "dot"
    assert config.sources == {
        "dsn": str(path),
        "schema": "flag",
        "color": "env:HEPHAESTUS_COLOR",
        "graph_format": str(path),
    }


def test_pyproject_table_is_read_and_nearest_file_wins(tmp_path: Path) -> None:
    """[tool.hephaestus] is found from a subdirectory; a hephaestus.toml beside it wins."""
    _write(tmp_path / "pyproject.toml", '[tool.hephaestus]\napp = "proj.flows:app"\n')
    nested = tmp_path / "src" / "proj"
    nested.mkdir(parents=True)
    assert Config.load(cwd=nested, env={}).app == "proj.flows:app"
    _write(tmp_path / "hephaestus.toml", 'app = "other:app"\n')
    assert find_file(nested) == tmp_path / "hephaestus.toml"
    assert Config.load(cwd=nested, env={}).app == "other:app"


def test_pyproject_without_the_table_is_skipped(tmp_path: Path) -> None:
    """A pyproject.toml with no [tool.hephaestus] table is not a configuration file."""
    (tmp_path / "child").mkdir()
    _write(tmp_path / "pyproject.toml", '[tool.hephaestus]\nschema = "outer"\n')
    _write(tmp_path / "child" / "pyproject.toml", '[project]\nname = "x"\n')
    assert Config.load(cwd=tmp_path / "child", env={}).schema == "outer"


def test_dsn_variable_wins_over_database_url_and_imports_split_on_commas(tmp_path: Path) -> None:
    """HEPHAESTUS_DSN beats HEPHAESTUS_DATABASE_URL; HEPHAESTUS_IMPORTS is a comma list."""
    env = {
        "HEPHAESTUS_DATABASE_URL": "postgresql://url/db",
        "HEPHAESTUS_DSN": "postgresql://dsn/db",
        "HEPHAESTUS_IMPORTS": "a.flows, b.flows,",
    }
    config = Config.load(cwd=tmp_path, env=env)
    assert config.dsn == "postgresql://dsn/db"
    assert config.imports == ("a.flows", "b.flows")
    only_url = Config.load(cwd=tmp_path, env={"HEPHAESTUS_DATABASE_URL": "postgresql://url/db"})
    assert only_url.sources["dsn"] == "env:HEPHAESTUS_DATABASE_URL"


def test_storage_target_follows_the_higher_layer(tmp_path: Path) -> None:
    """A --dsn flag wins over an app in the file, an app flag over a DSN in the environment."""
    _write(tmp_path / "hephaestus.toml", 'app = "proj:app"\n')
    from_file = Config.load(cwd=tmp_path, env={})
    assert from_file.storage_target() == "app"
    assert from_file.merge({"dsn": "postgresql:///x"}).storage_target() == "dsn"
    from_env = Config.load(cwd=tmp_path, env={"HEPHAESTUS_DSN": "postgresql:///x"})
    assert from_env.storage_target() == "dsn"
    assert from_env.merge({"app": "proj:app"}).storage_target() == "app"
    assert Config().storage_target() is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('colour = "never"\n', "unknown setting 'colour'"),
        ('color = "sometimes"\n', "color from .* must be one of auto, always, never"),
        ("imports = [1]\n", "imports from .* must be a list of module names"),
        ("schema = 5\n", "schema from .* must be a non-empty string"),
        ("dsn = \n", "cannot read"),
    ],
)
def test_malformed_files_are_reported_with_their_path(
    tmp_path: Path, text: str, message: str
) -> None:
    """Unknown keys, wrong types, bad choices and broken TOML raise ConfigError naming the file."""
    _write(tmp_path / "hephaestus.toml", text)
    with pytest.raises(ConfigError, match=message) as raised:
        Config.load(cwd=tmp_path, env={})
    assert "hephaestus.toml" in str(raised.value)


def test_malformed_environment_is_reported_with_the_variable(tmp_path: Path) -> None:
    """A bad environment value names its variable."""
    with pytest.raises(ConfigError, match="env:HEPHAESTUS_GRAPH_FORMAT"):
        Config.load(cwd=tmp_path, env={"HEPHAESTUS_GRAPH_FORMAT": "svg"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sqlite:///runs.db", SQLiteDatabase("runs.db")),
        ("sqlite:///data/runs.db", SQLiteDatabase("data/runs.db")),
        ("sqlite:////var/lib/app/runs.db", SQLiteDatabase("/var/lib/app/runs.db")),
        ("SQLite:///my%20runs.db", SQLiteDatabase("my runs.db")),
        (
            "sqlite:///runs.db?synchronous=normal&busy_timeout=2.5",
            SQLiteDatabase("runs.db", {"synchronous": "NORMAL", "busy_timeout": 2.5}),
        ),
        ("postgresql://u:pw@host/app", PostgresDatabase("postgresql://u:pw@host/app")),
        ("postgres:///app", PostgresDatabase("postgres:///app")),
        ("host=db dbname=app", PostgresDatabase("host=db dbname=app")),
    ],
)
def test_database_urls_name_a_sqlite_file_or_a_postgresql_dsn(
    value: str, expected: PostgresDatabase | SQLiteDatabase
) -> None:
    """Three slashes: a path relative to the working directory; four: absolute; percent-decoded
    paths; options upper-cased or converted to seconds; PostgreSQL DSNs pass unchanged."""
    assert parse_database(value) == expected
    if isinstance(expected, SQLiteDatabase):
        assert parse_database(expected.url) == SQLiteDatabase(expected.path)  # round trip


def test_a_home_relative_sqlite_path_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///~/runs.db`` is ``runs.db`` in the home directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    database = parse_database("sqlite:///~/runs.db")
    assert database == SQLiteDatabase(f"{tmp_path}/runs.db")
    assert isinstance(database, SQLiteDatabase)
    assert database.url == f"sqlite:///{tmp_path}/runs.db"


def test_database_is_the_file_key_of_the_dsn_setting_and_is_checked_where_set(
    tmp_path: Path,
) -> None:
    """``database = ...`` in the file sets ``dsn``; a malformed URL names the file or variable."""
    path = _write(tmp_path / "hephaestus.toml", 'database = "sqlite:///runs.db"\n')
    config = Config.load(cwd=tmp_path, env={})
    assert (config.dsn, config.sources["dsn"]) == ("sqlite:///runs.db", str(path))
    assert config.database() == SQLiteDatabase("runs.db")
    assert config.storage_target() == "dsn"
    _write(path, 'database = "runs.db"\n')
    with pytest.raises(ConfigError, match=r"database from .*hephaestus.toml: 'runs.db' is nei"):
        Config.load(cwd=tmp_path, env={})
    _write(path, "")
    with pytest.raises(ConfigError, match="env:HEPHAESTUS_DATABASE_URL: unknown SQLite URL op"):
        Config.load(cwd=tmp_path, env={"HEPHAESTUS_DATABASE_URL": "sqlite:///x.db?mode=ro"})

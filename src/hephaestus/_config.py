"""Command-line configuration, layered: file < environment < flags.

Only the command line reads configuration this way; the library itself takes explicit,
typed arguments. The file is ``hephaestus.toml`` or the ``[tool.hephaestus]`` table of
``pyproject.toml``, whichever is found first walking up from the current directory::

    [tool.hephaestus]
    app = "myproject.workflows:app"     # or database = "postgresql://..." / "sqlite:///runs.db"
    schema = "public"
    imports = ["myproject.workflows"]
    color = "auto"                      # auto | always | never
    graph_format = "ascii"              # ascii | mermaid | dot
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ENV_VARS",
    "SQLITE_OPTIONS",
    "Config",
    "ConfigError",
    "PostgresDatabase",
    "SQLiteDatabase",
    "find_file",
    "parse_database",
]

Color = Literal["auto", "always", "never"]
GraphFormat = Literal["ascii", "mermaid", "dot"]

ENV_VARS: Mapping[str, tuple[str, ...]] = {
    "app": ("HEPHAESTUS_APP",),
    "dsn": ("HEPHAESTUS_DSN", "HEPHAESTUS_DATABASE_URL"),
    "schema": ("HEPHAESTUS_SCHEMA",),
    "imports": ("HEPHAESTUS_IMPORTS",),
    "color": ("HEPHAESTUS_COLOR",),
    "graph_format": ("HEPHAESTUS_GRAPH_FORMAT",),
}
"""The environment variables of each setting, first found wins (``imports``: comma-separated)."""

DEFAULT_SCHEMA = "public"


class ConfigError(ValueError):
    """A configuration file or variable is malformed; the message names where."""


@dataclass(frozen=True, slots=True)
class Config:
    """The command line's settings and, for each one set, where it came from."""

    app: str | None = None
    """``module:attr`` of a ``Hephaestus`` app (not opened), or of a function returning one."""
    dsn: str | None = None
    """The database (file key ``dsn`` or ``database``): a PostgreSQL connection string or a
    ``sqlite:///path`` URL (``parse_database``); used when no ``app`` is set."""
    schema: str = DEFAULT_SCHEMA
    imports: tuple[str, ...] = ()
    """Modules imported first, so their workflows are defined (needed with ``dsn``)."""
    color: Color = "auto"
    graph_format: GraphFormat = "ascii"
    sources: Mapping[str, str] = field(default_factory=dict)
    """Setting name -> where its value came from (a file path, ``env:NAME`` or ``flag``)."""

    @classmethod
    def load(
        cls,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        file: Path | None = None,
    ) -> Config:
        """The file's settings (``file``, else the one found from ``cwd``) overlaid by ``env``."""
        config = cls()
        path = file if file is not None else find_file(cwd or Path.cwd())
        if path is not None:
            config = config.merge(_read_file(path), source=str(path))
        environ = os.environ if env is None else env
        for name, (value, variable) in _read_env(environ).items():
            config = config.merge({name: value}, source=f"env:{variable}")
        return config

    def database(self) -> PostgresDatabase | SQLiteDatabase | None:
        """The ``dsn`` setting parsed (``None`` when unset)."""
        return None if self.dsn is None else parse_database(self.dsn)

    def storage_target(self) -> Literal["app", "dsn"] | None:
        """Which of ``app`` and ``dsn`` to use: the one set by the higher layer (``app`` on a tie).

        So ``--dsn`` on the command line wins over an ``app`` in the file, and vice versa.
        """
        if self.app is None:
            return "dsn" if self.dsn is not None else None
        if self.dsn is None:
            return "app"
        return "dsn" if _rank(self.sources["dsn"]) > _rank(self.sources["app"]) else "app"

    def merge(self, values: Mapping[str, object], *, source: str = "flag") -> Config:
        """A copy with ``values`` set (``None`` means "not given"), each checked; ``source``
        (a file path, ``env:NAME`` or ``flag``) is recorded as where they came from."""
        known = {f.name for f in fields(self)} - {"sources"}
        changes: dict[str, Any] = {}
        sources = dict(self.sources)
        for name, value in values.items():
            if name not in known:
                raise ConfigError(
                    f"unknown setting {name!r} in {source}; known: {', '.join(sorted(known))}"
                )
            if value is None:
                continue
            changes[name] = _check(name, value, source)
            sources[name] = source
        return replace(self, **changes, sources=sources)


def _rank(source: str) -> int:
    return 2 if source == "flag" else 1 if source.startswith("env:") else 0


def find_file(start: Path) -> Path | None:
    """``hephaestus.toml``, or a ``pyproject.toml`` with ``[tool.hephaestus]``, nearest first."""
    for directory in (start, *start.parents):
        candidate = directory / "hephaestus.toml"
        if candidate.is_file():
            return candidate
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and "hephaestus" in _load_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _read_file(path: Path) -> dict[str, object]:
    data = _load_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("hephaestus", {})
        if not isinstance(table, dict):
            raise ConfigError(f"[tool.hephaestus] in {path} must be a table")
        data = table
    values = {name.replace("-", "_"): value for name, value in data.items()}
    if "database" in values:
        if "dsn" in values:
            raise ConfigError(f"{path} sets both dsn and database (one setting): keep one")
        values["dsn"] = values.pop("database")
    return values


def _read_env(env: Mapping[str, str]) -> dict[str, tuple[object, str]]:
    """Setting -> (value, the variable it came from), for each setting set in ``env``."""
    values: dict[str, tuple[object, str]] = {}
    for name, variables in ENV_VARS.items():
        for variable in variables:
            raw = env.get(variable)
            if raw:
                value: object = raw
                if name == "imports":
                    value = tuple(part.strip() for part in raw.split(",") if part.strip())
                values[name] = (value, variable)
                break
    return values


def _check(name: str, value: object, origin: str) -> object:
    """``value`` converted to the setting's type; ``ConfigError`` naming ``origin`` if it can't."""
    if name == "imports":
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise ConfigError(f"imports from {origin} must be a list of module names, got {value!r}")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} from {origin} must be a non-empty string, got {value!r}")
    if name == "dsn":
        try:
            parse_database(value)
        except ValueError as exc:
            raise ConfigError(f"database from {origin}: {exc}") from None
    choices = {"color": get_args(Color), "graph_format": get_args(GraphFormat)}.get(name)
    if choices is not None and value not in choices:
        raise ConfigError(
            f"{name} from {origin} must be one of {', '.join(choices)}, got {value!r}"
        )
    return value


# -- the database setting ---------------------------------------------------------------------

SQLITE_OPTIONS = ("synchronous", "busy_timeout", "poll_interval")
"""The query options of a ``sqlite:`` URL: ``SQLiteStorage`` arguments of the same names."""

_POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class PostgresDatabase:
    """A PostgreSQL connection string (URL or libpq keywords), passed on as given."""

    dsn: str


@dataclass(frozen=True, slots=True)
class SQLiteDatabase:
    """A SQLite file from a ``sqlite:`` URL, and the ``SQLiteStorage`` options it sets."""

    path: str
    """The file, as written (relative to the current directory unless absolute; ``~`` expanded)."""
    options: Mapping[str, str | float] = field(default_factory=dict)
    """``synchronous`` (upper-cased), ``busy_timeout`` and ``poll_interval`` (seconds), if given."""

    @property
    def url(self) -> str:
        """The URL of the file (without options): ``sqlite:///`` and the path, percent-encoded
        where it must be (``runs.db`` gives ``sqlite:///runs.db``, ``/a b.db`` ``sqlite:////a%20b.db``)."""
        from urllib.parse import quote

        return f"sqlite:///{quote(self.path, safe='/~:+,=@')}"


def parse_database(value: str) -> PostgresDatabase | SQLiteDatabase:
    """The database a ``dsn``/``database`` setting names; ``ValueError`` saying what to write.

    - ``sqlite:///runs.db`` is ``runs.db`` in the current directory (three slashes, then a
      relative path); ``sqlite:////var/lib/app/runs.db`` is absolute (four slashes);
      ``sqlite:///~/runs.db`` is in the home directory. The path is percent-decoded
      (``%20`` a space, ``%23`` a ``#``, ``%3F`` a ``?``, ``%25`` a ``%``).
    - Query options ``synchronous`` (OFF, NORMAL, FULL, EXTRA), ``busy_timeout`` and
      ``poll_interval`` (seconds) are ``SQLiteStorage``'s; any other is refused.
    - ``postgresql://...``, ``postgres://...`` and libpq keyword strings (``host=... dbname=...``)
      are PostgreSQL, unchanged. Anything else (a bare path, another scheme) is refused.
    """
    text = value.strip()
    scheme, sep, _ = text.partition(":")
    if sep and scheme.lower() == "sqlite":
        return _parse_sqlite(text)
    if sep and scheme.lower() in _POSTGRES_SCHEMES and text[len(scheme) :].startswith("://"):
        return PostgresDatabase(value)
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) and "://" in text:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r} in {_shown(value)}; expected "
            "postgresql://..., postgres://... or sqlite:///path"
        )
    if "=" in text:
        return PostgresDatabase(value)  # libpq keywords: host=... dbname=...
    raise ValueError(
        f"{value!r} is neither a PostgreSQL DSN nor a SQLite URL: for a SQLite file write "
        f"sqlite:///{text} (relative) or sqlite:////absolute/path.db; for PostgreSQL, "
        "postgresql://host/dbname or 'host=... dbname=...'"
    )


def _shown(value: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", value)


def _parse_sqlite(url: str) -> SQLiteDatabase:
    from urllib.parse import parse_qsl, unquote

    rest = url[len("sqlite:") :]
    if not rest.startswith("///"):
        host = rest[2:].split("/", 1)[0] if rest.startswith("//") else ""
        what = f"has a host ({host!r})" if host else "does not start with sqlite:///"
        raise ValueError(
            f"SQLite URL {url!r} {what}: write sqlite:///relative/path.db (three slashes) or "
            "sqlite:////absolute/path.db (four)"
        )
    rest = rest[3:]
    if "#" in rest:
        raise ValueError(f"SQLite URL {url!r} has a '#': write it as %23 in a file name")
    raw_path, _, query = rest.partition("?")
    path = unquote(raw_path)
    if not path or path.endswith("/"):
        raise ValueError(f"SQLite URL {url!r} names no file: write sqlite:///runs.db")
    if path == ":memory:" or path.startswith("file:"):
        raise ValueError(
            f"SQLite URL {url!r} is not a file: the command line reads runs another process "
            "stored, so it needs a database file (sqlite:///runs.db)"
        )
    if path == "~" or path.startswith("~/"):
        path = os.path.expanduser(path)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(
            f"SQLite URL {url!r}: options are name=value pairs joined by & "
            "(?synchronous=NORMAL&busy_timeout=5)"
        ) from None
    options: dict[str, str | float] = {}
    for key, raw in pairs:
        if key not in SQLITE_OPTIONS:
            raise ValueError(
                f"unknown SQLite URL option {key!r} in {url!r}; known: {', '.join(SQLITE_OPTIONS)}"
            )
        if key in options:
            raise ValueError(f"SQLite URL option {key!r} given twice in {url!r}")
        options[key] = _sqlite_option(key, raw, url)
    return SQLiteDatabase(path, options)


def _sqlite_option(key: str, raw: str, url: str) -> str | float:
    if key == "synchronous":
        from hephaestus.storage.sqlite._database import SYNCHRONOUS_LEVELS as levels

        if raw.upper() not in levels:
            raise ValueError(
                f"SQLite URL option synchronous={raw!r} in {url!r}: expected one of "
                f"{', '.join(levels)}"
            )
        return raw.upper()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or (key == "poll_interval" and seconds == 0):
        bound = "> 0" if key == "poll_interval" else ">= 0"
        raise ValueError(
            f"SQLite URL option {key}={raw!r} in {url!r}: expected seconds {bound} (e.g. 5, 0.5)"
        )
    return seconds

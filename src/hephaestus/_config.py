"""Command-line configuration, layered: file < environment < flags.

Only the command line reads configuration this way; the library itself takes explicit,
typed arguments. The file is ``hephaestus.toml`` or the ``[tool.hephaestus]`` table of
``pyproject.toml``, whichever is found first walking up from the current directory::

    [tool.hephaestus]
    app = "myproject.workflows:app"     # or dsn = "postgresql://..."
    schema = "public"
    imports = ["myproject.workflows"]
    color = "auto"                      # auto | always | never
    graph_format = "ascii"              # ascii | mermaid | dot
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ENV_VARS", "Config", "ConfigError", "find_file"]

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
    """A PostgreSQL connection string; used when no ``app`` is set."""
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
    return {name.replace("-", "_"): value for name, value in data.items()}


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
    choices = {"color": get_args(Color), "graph_format": get_args(GraphFormat)}.get(name)
    if choices is not None and value not in choices:
        raise ConfigError(
            f"{name} from {origin} must be one of {', '.join(choices)}, got {value!r}"
        )
    return value

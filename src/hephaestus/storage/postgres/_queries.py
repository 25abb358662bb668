"""The only module that touches SQL: statements loaded from ``sql/`` and bound to one schema.

Statement text lives in ``.sql`` files beside this module, read once. A schema name enters
SQL only as a ``psycopg.sql.Identifier`` through ``SQL.format`` (never string editing), and each
statement is rendered to bytes once per schema, so executing one costs no formatting.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import LiteralString

from psycopg import sql

__all__ = [
    "COUNT_GROUPS",
    "MIGRATIONS",
    "Migration",
    "Queries",
    "channel_for",
    "load_sql",
    "render",
]

COUNT_GROUPS: tuple[tuple[LiteralString, ...], ...] = (
    (),
    ("status",),
    ("workflow",),
    ("status", "workflow"),
)
"""The column groups ``count_runs`` is rendered for (any order of them maps to one)."""

_CHANNEL_BYTES = 63
"""PostgreSQL's longest identifier, and so the longest channel name."""


def channel_for(schema: str) -> str:
    """The notification channel of the storage in ``schema`` (one per schema: per tenant)."""
    channel = f"hephaestus.{schema}"
    if len(channel.encode()) > _CHANNEL_BYTES:
        channel = "hephaestus." + hashlib.sha256(schema.encode()).hexdigest()[:40]
    return channel


_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@cache
def load_sql(path: str) -> LiteralString:
    """The text of ``sql/<path>``, read once."""
    # The files ship with the package and are never built from input: literal SQL.
    text: LiteralString = (
        resources.files(__package__).joinpath("sql", *path.split("/")).read_text("utf-8")
    )
    return text


def render(text: LiteralString, schema: str, **fragments: sql.Composable) -> bytes:
    """``text`` with ``{schema}`` bound to the quoted identifier ``schema`` (and fragments)."""
    return sql.SQL(text).format(schema=sql.Identifier(schema), **fragments).as_bytes()


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned schema change, from ``sql/migrations/NNNN_name.sql``."""

    version: int
    name: str
    path: str

    @property
    def text(self) -> LiteralString:
        return load_sql(self.path)


def _migrations() -> tuple[Migration, ...]:
    found: list[Migration] = []
    for entry in resources.files(__package__).joinpath("sql", "migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is not None:
            found.append(Migration(int(match.group(1)), match.group(2), f"migrations/{entry.name}"))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, 3... without gaps: {versions}")
    return tuple(found)


MIGRATIONS = _migrations()
"""Every migration, in the order they apply."""


class Queries:
    """Every statement the PostgreSQL storage runs, rendered for one schema."""

    __slots__ = (
        "applied_migrations",
        "awaiting_runs",
        "bootstrap",
        "channel",
        "claim_orphans",
        "claim_run",
        "count_runs",
        "delete_input",
        "delete_instance",
        "enqueue_input",
        "explain_contains",
        "explain_runs",
        "get_instance",
        "insert_instance",
        "listen",
        "live_owners",
        "lock_instance",
        "lock_migrations",
        "namespace",
        "next_input",
        "notify_run",
        "owner_of",
        "probe_owners",
        "query_by_id",
        "query_contains",
        "query_newest",
        "query_oldest",
        "record_migration",
        "refresh_instance",
        "register_owner",
        "release_runs",
        "release_savepoint",
        "rollback_savepoint",
        "savepoint",
        "schema",
        "stored_revision",
        "stored_revisions",
        "update_instances",
        "write_runs",
    )

    def __init__(self, schema: str) -> None:
        self.schema = schema
        # The first key of the owners' advisory locks: one namespace per schema (tenant).
        self.namespace = zlib.crc32(f"hephaestus:{schema}".encode()) & 0x7FFFFFFF

        def query(name: LiteralString, **fragments: sql.Composable) -> bytes:
            return render(load_sql(f"queries/{name}.sql"), schema, **fragments)

        # The one projection of a run: each read query is ``{select_runs}`` and its filter.
        projection = sql.SQL(load_sql("queries/select_runs.sql").rstrip())
        runs = projection.format(
            schema=sql.Identifier(schema), parts_since=sql.SQL(""), history_since=sql.SQL("")
        )
        # ``refresh_instance``: the same projection, narrowed to what changed since.
        runs_since = projection.format(
            schema=sql.Identifier(schema),
            parts_since=sql.SQL(" AND p.revision > m.parts_after"),
            history_since=sql.SQL(" AND e.position >= m.history_from"),
        )

        def read(name: LiteralString, **fragments: sql.Composable) -> bytes:
            return query(name, select_runs=runs, **fragments)

        # The one set of filters, for reading (each direction has its keyset comparison) and
        # counting (no cursor: ``after_created`` is NULL there).
        def filters(direction: LiteralString) -> sql.Composable:
            after = sql.SQL("<" if direction == "DESC" else ">")
            text = load_sql("queries/run_filters.sql").rstrip()
            return sql.SQL(text).format(after=after)

        def ordered(name: LiteralString) -> tuple[bytes, bytes]:
            """``name`` oldest first, then newest first."""
            return (
                read(name, direction=sql.SQL("ASC"), run_filters=filters("ASC")),
                read(name, direction=sql.SQL("DESC"), run_filters=filters("DESC")),
            )

        self.bootstrap = render(load_sql("bootstrap.sql"), schema)
        self.insert_instance = query("insert_instance")
        # The writes of runs' revisions, as common table expressions: ``update_instances``,
        # and any statement that writes rows of its own with them (``with_run_writes``).
        self.write_runs = sql.SQL(load_sql("queries/write_runs.sql").rstrip()).format(
            schema=sql.Identifier(schema)
        )
        self.update_instances = query("update_instances", write_runs=self.write_runs)
        self.stored_revision = query("stored_revision")
        self.stored_revisions = query("stored_revisions")
        self.delete_instance = query("delete_instance")
        self.get_instance = read("get_instance")
        self.refresh_instance = query("refresh_instance", select_runs=runs_since)
        self.lock_instance = query("lock_instance")
        self.register_owner = query("register_owner")
        self.live_owners = query("live_owners")
        self.claim_run = query("claim_run")
        self.claim_orphans = query("claim_orphans")
        self.release_runs = query("release_runs")
        self.owner_of = query("owner_of")
        self.probe_owners = query("probe_owners")
        self.query_oldest, self.query_newest = ordered("query_instances")
        self.query_by_id = ordered("query_by_id")
        self.explain_runs = ordered("explain_runs")
        # Grouped by nothing, status, workflow, or both: keys of ``COUNT_GROUPS``.
        self.count_runs = {
            columns: query(
                "count_runs",
                columns=sql.SQL("").join(
                    sql.SQL("h.{}, ").format(sql.Identifier(c)) for c in columns
                ),
                groups=sql.SQL(", ").join(
                    sql.SQL("h.{}").format(sql.Identifier(c)) for c in columns
                )
                if columns
                else sql.SQL("()"),
                run_filters=filters("ASC"),
            )
            for columns in COUNT_GROUPS
        }
        self.query_contains = (
            read("query_contains", direction=sql.SQL("ASC")),
            read("query_contains", direction=sql.SQL("DESC")),
        )
        self.explain_contains = query("explain_contains")
        self.applied_migrations = query("applied_migrations")
        self.record_migration = query("record_migration")
        self.lock_migrations = query("lock_migrations")
        # The caller's transaction: runs created pending and inputs queued in an inbox, each
        # announced on the schema's channel (delivered at commit), and the listener's side.
        self.channel = channel_for(schema)
        self.listen = query("listen", channel=sql.Identifier(self.channel))
        self.notify_run = query("notify_run")
        self.enqueue_input = query("enqueue_input")
        self.next_input = query("next_input")
        self.delete_input = query("delete_input")
        self.awaiting_runs = query("awaiting_runs")
        self.savepoint = query("savepoint")
        self.release_savepoint = query("release_savepoint")
        self.rollback_savepoint = query("rollback_savepoint")

    def migration(self, migration: Migration) -> bytes:
        return render(migration.text, self.schema)

    def with_run_writes(self, text: LiteralString, **fragments: sql.Composable) -> bytes:
        """``text`` (``{schema}`` and ``fragments`` bound) with ``{write_runs}``, the common
        table expressions of ``update_instances``: a statement that writes runs and rows of
        its own that depend on them (``head``: the runs written) in one round trip and one
        implicit transaction."""
        return render(text, self.schema, write_runs=self.write_runs, **fragments)

    def record_literal(self, migration: Migration) -> bytes:
        """The statement recording ``migration``, with its values inlined (printed SQL)."""
        return render(
            load_sql("record_migration.sql"),
            self.schema,
            version=sql.Literal(migration.version),
            name=sql.Literal(migration.name),
        )

    def current_schema(self) -> bytes:
        return render(load_sql("schema.sql"), self.schema)

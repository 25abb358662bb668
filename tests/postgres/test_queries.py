"""The statements of the PostgreSQL storage: each read shares the one projection of a run."""

from __future__ import annotations

from importlib import resources

from psycopg import sql

from hephaestus.storage.postgres._queries import Queries, load_sql, render

PROJECTION = "queries/select_runs.sql"


def test_the_projection_of_a_run_is_written_once() -> None:
    """Only ``select_runs.sql`` aggregates a run's parts and history; the reads compose it."""
    folder = resources.files("hephaestus.storage.postgres").joinpath("sql", "queries")
    writers = sorted(
        entry.name for entry in folder.iterdir() if "json_agg" in entry.read_text("utf-8")
    )
    assert writers == ["select_runs.sql"]


def test_every_read_statement_starts_with_the_projection() -> None:
    """get, query (by id or not, either order) and find all return the projected row."""
    queries = Queries("tenant a")
    whole = {"parts_since": sql.SQL(""), "history_since": sql.SQL("")}
    projection = render(load_sql(PROJECTION).rstrip(), "tenant a", **whole)
    reads = [
        queries.get_instance,
        queries.query_oldest,
        queries.query_newest,
        *queries.query_by_id,
        *queries.query_contains,
    ]
    for statement in reads:
        assert projection in statement
        assert statement.count(b"json_agg") == 2  # parts and history, nothing else
    # A holder's refresh: the same projection, its parts and history narrowed to what changed.
    assert queries.refresh_instance.count(b"json_agg") == 2
    assert b"p.revision > m.parts_after" in queries.refresh_instance

"""Acceptance tests of many app processes on one database (issue 11), with real OS processes.

``uv run --frozen pytest tests/multiprocess`` (PostgreSQL at 127.0.0.1:5432). The workers are
``_worker`` (stdin commands) and ``_asgi`` (FastAPI under ``uvicorn --workers 2``); the
workflows and the ``executions`` table they record into are in ``_flows``; ``_cluster`` starts
and signals workers and holds the invariant checks. ``test_sqlite_processes`` runs the same
model on one SQLite file (no PostgreSQL): workers ``_sqlite_worker``, workflows of every shape
in ``_sqlite_flows``, executions appended to a file.
"""

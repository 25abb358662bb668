"""DBOS Transact on SQLite, the same shapes as ``bench_sqlite``; run in DBOS's own virtualenv.

Not imported by the project: ``bench_sqlite`` runs this file with the Python of a separate
virtualenv holding ``dbos`` and ``pysqlite3-binary`` (DBOS's SQLite schema uses
``unixepoch('subsec')``, which needs SQLite >= 3.42; the project's CPython links 3.40.1, and
with it ``DBOS.launch()`` fails: ``NOT NULL constraint failed: application_versions.
version_timestamp``).
``pysqlite3`` is put in place of ``sqlite3`` before SQLAlchemy or DBOS is imported, so
SQLAlchemy's ``pysqlite`` dialect (``from sqlite3 import dbapi2``) picks it up.

Prints one JSON object on its last line of stdout. DBOS defaults are kept (threads for ``def``
workflows, its own pool, journal mode left at SQLite's default unless ``--journal-mode`` is given).
"""

from __future__ import annotations

import sys

try:
    import pysqlite3  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - report the stdlib version instead
    pysqlite3 = None
else:
    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2

import argparse
import gc
import json
import os
import sqlite3
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from dbos import DBOS  # type: ignore[import-not-found, unused-ignore]

STEPS = 10


@DBOS.step()  # type: ignore[misc, unused-ignore]
def step(index: int) -> dict[str, int]:
    return {"n": 1}


@DBOS.workflow()  # type: ignore[misc, unused-ignore]
def ten_steps(n: int) -> int:
    for i in range(STEPS):
        step(i)
    return n


def concurrent(count: int) -> dict[str, float]:
    """``count`` workflows started at once with ``start_workflow`` (threads); steps/s."""
    gc.collect()
    began = time.perf_counter()
    cpu = time.process_time()
    handles = [DBOS.start_workflow(ten_steps, i) for i in range(count)]
    started = time.perf_counter() - began
    results = [handle.get_result() for handle in handles]
    elapsed = time.perf_counter() - began
    cpu_used = time.process_time() - cpu
    if sorted(results) != list(range(count)):
        raise RuntimeError(f"{len(results)} of {count} workflows returned as expected")
    steps = count * STEPS
    return {
        "steps_per_s": steps / elapsed,
        "ms_per_step": elapsed / steps * 1e3,
        "client_cpu_ms_per_step": cpu_used / steps * 1e3,
        "start_loop_s": started,
        "elapsed_s": elapsed,
    }


def single(runs: int) -> dict[str, float]:
    """One 10-step workflow run alone (``def``, called directly), ``runs`` times; ms."""
    samples: list[float] = []
    for i in range(runs):
        gc.collect()
        began = time.perf_counter()
        ten_steps(i)
        samples.append((time.perf_counter() - began) * 1e3)
    return {"p50_ms": statistics.median(samples), "min_ms": min(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20, help="single runs for the p50")
    parser.add_argument("--journal-mode", default=None, help="e.g. wal; default: DBOS's own")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbos-bench-") as tmp:
        path = Path(tmp) / "dbos.sqlite"
        if args.journal_mode:  # persistent in the file, so set it before DBOS opens it
            with sqlite3.connect(path) as conn:
                conn.execute(f"PRAGMA journal_mode={args.journal_mode}")
        DBOS(
            config={
                "name": "bench-sqlite",
                "system_database_url": f"sqlite:///{path}",
                "log_level": "WARNING",
            }
        )
        DBOS.launch()
        try:
            with sqlite3.connect(path) as conn:
                journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]  # DBOS keeps it
            alone = single(args.runs)
            many = concurrent(args.concurrency)
        finally:
            DBOS.destroy()
    result: dict[str, Any] = {
        "dbos": version("dbos"),
        "sqlite": sqlite3.sqlite_version,
        "sqlite_module": "pysqlite3" if pysqlite3 is not None else "sqlite3",
        "journal_mode": journal_mode,
        "synchronous": synchronous,
        "pid": os.getpid(),
        "concurrent": many,
        "single": alone,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

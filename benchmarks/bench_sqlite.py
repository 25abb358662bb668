"""Local runner + SQLite storage, against raw sqlite3 upserts and DBOS on SQLite, in one run.

Scenarios:

* ``raw``: the baseline: stdlib ``sqlite3`` on one connection to a file in a temp dir, with
  ``journal_mode=WAL``, ``synchronous=FULL``, ``busy_timeout=5000``, in autocommit: 200 logical
  runs x 10 steps = 2,000 ``INSERT ... ON CONFLICT(run_id) DO UPDATE`` of one row with a
  ``ROW_BYTES`` JSON document, ONE ROW PER COMMIT, step-major (all runs' step 0, then step 1...),
  in a plain loop; commits/s.
* ``ours``: ``Hephaestus(storage=SQLiteStorage(path))`` with the local runner: 200 instances of
  a 10-step linear workflow started at once, then ``run_until_idle``; steps/s = 2,000 / elapsed,
  and the ratio ours / raw inside the round (target >= 0.5). ``single``: one 10-step run alone,
  p50 of ``--runs`` runs, in ms per run.
* ``dbos``: DBOS Transact on SQLite, same shapes: 200 x 10-step ``def`` workflows started at once
  with ``DBOS.start_workflow`` (threads); steps/s; and a 10-step run alone, p50 ms. It runs
  ``benchmarks/dbos_sqlite.py`` in a subprocess with the Python of a separate virtualenv
  (``dbos==3.4.0`` + ``pysqlite3-binary``, created with ``uv`` on first use under
  ``~/.cache/hephaestus-bench/dbos-venv``, override with ``--dbos-python``): DBOS's SQLite schema
  needs SQLite >= 3.42 and the project's CPython links 3.40.1. DBOS keeps its own defaults,
  including SQLite's default journal mode (``delete``), unless ``--dbos-journal-mode wal``.

The scenario order rotates from round to round so that noise is spread over all of them.

Run: ``uv run --frozen python -m benchmarks.bench_sqlite [--rounds R] [--only raw ours dbos]``.
Prints one JSON line per round and a summary with medians; ratios are computed inside each round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._shapes import chain, fan_out, many_at_once, ms_per_step_alone
from hephaestus import Hephaestus, Status
from hephaestus.storage import InstanceQuery
from hephaestus.storage.sqlite import SQLiteStorage

CONCURRENCY = 200
STEPS = 10
SCENARIOS = ("raw", "ours", "dbos")

# JSON bytes one step of a 10-step run writes: bench_postgres measures it from the PostgreSQL
# adapter's tables (header ``extra`` + three part rows + one history entry per step) and found
# 543 B (benchmarks/results/postgres-2026-11-21.jsonl); rounded up to 600.
ROW_BYTES = 600

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000")

DBOS_REQUIREMENTS = ("dbos==3.4.0", "pysqlite3-binary")
DBOS_VENV = Path.home() / ".cache" / "hephaestus-bench" / "dbos-venv"
DBOS_RUNNER = Path(__file__).with_name("dbos_sqlite.py")

Chain10 = chain("Ten", STEPS)
Chain1000 = chain("Thousand", 1_000)
Fan1000 = fan_out("Fan", 1_000)


def bench_raw(directory: Path) -> dict[str, float]:
    """2,000 single-row upserts, one commit each, on one autocommit connection."""
    conn = sqlite3.connect(directory / "raw.sqlite", isolation_level=None)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        statement = (
            "INSERT INTO runs (run_id, doc) VALUES (?, ?) "
            "ON CONFLICT(run_id) DO UPDATE SET doc = excluded.doc"
        )
        template = json.dumps({"run": 0, "step": 0, "pad": ""})
        filler = "x" * max(ROW_BYTES - len(template) - 4, 0)
        gc.collect()
        began = time.perf_counter()
        for step in range(STEPS):
            for run in range(CONCURRENCY):
                doc = json.dumps({"run": run, "step": step, "pad": filler})
                conn.execute(statement, (f"run{run}", doc))
        elapsed = time.perf_counter() - began
        (rows,) = conn.execute("SELECT count(*) FROM runs").fetchone()
        (size,) = conn.execute("SELECT avg(length(doc)) FROM runs").fetchone()
    finally:
        conn.close()
    if rows != CONCURRENCY:
        raise RuntimeError(f"raw: {rows} rows, expected {CONCURRENCY}")
    commits = CONCURRENCY * STEPS
    return {
        "commits_per_s": commits / elapsed,
        "ms_per_commit": elapsed / commits * 1e3,
        "row_bytes": float(size),
        "elapsed_s": elapsed,
    }


async def bench_ours(directory: Path, runs: int) -> dict[str, Any]:
    storage = SQLiteStorage(str(directory / "ours.sqlite"))
    concurrent = await many_at_once(storage, Chain10, CONCURRENCY, STEPS)

    storage = SQLiteStorage(str(directory / "ours-single.sqlite"))
    async with Hephaestus(storage=storage) as app:
        samples = await ms_per_step_alone(app, Chain10, 1, runs)  # whole runs: ms per run
        chain = statistics.median(await ms_per_step_alone(app, Chain1000, 1_000 + 1, 1))
        fan = statistics.median(await ms_per_step_alone(app, Fan1000, 1_000 + 3, 1))
        alone = await storage.query(InstanceQuery(status=Status.COMPLETED))
    if len(alone) != runs + 2:
        raise RuntimeError(f"ours single: {len(alone)} of {runs + 2} runs completed")
    ten = statistics.median(samples) / (STEPS + 1)
    return {
        "concurrent": concurrent,
        "single": {"p50_ms": statistics.median(samples), "min_ms": min(samples)},
        "scaling": {
            "ms_per_step_10": ten,
            "ms_per_step_1000_chain": chain,
            "ms_per_step_1000_fanout": fan,
            "chain_vs_10": chain / ten,
            "fanout_vs_10": fan / ten,
        },
    }


def dbos_python(args: argparse.Namespace) -> Path:
    """The Python of DBOS's virtualenv: ``--dbos-python``, or created with ``uv`` if missing."""
    if args.dbos_python:
        return Path(args.dbos_python)
    python = DBOS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {DBOS_VENV} ({', '.join(DBOS_REQUIREMENTS)})", file=sys.stderr)
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        subprocess.run(  # noqa: S603
            ["uv", "venv", "--python", sys.executable, str(DBOS_VENV)],  # noqa: S607
            check=True,
            env=env,
        )
        subprocess.run(  # noqa: S603
            ["uv", "pip", "install", "--python", str(python), *DBOS_REQUIREMENTS],  # noqa: S607
            check=True,
            env=env,
        )
    return python


def bench_dbos(python: Path, runs: int, journal_mode: str | None) -> dict[str, Any]:
    command = [str(python), str(DBOS_RUNNER), "--concurrency", str(CONCURRENCY)]
    command += ["--runs", str(runs)]
    if journal_mode:
        command += ["--journal-mode", journal_mode]
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    done = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, check=False, env=env, timeout=600
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"dbos runner exited {done.returncode}: " + " | ".join(tail))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def one_round(index: int, args: argparse.Namespace, python: Path | None) -> dict[str, Any]:
    order = [name for name in SCENARIOS if name in args.only]
    shift = index % len(order)
    order = order[shift:] + order[:shift]
    result: dict[str, Any] = {"order": order}
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        for name in order:
            if name == "raw":
                result["raw"] = bench_raw(Path(tmp))
            elif name == "ours":
                result["ours"] = asyncio.run(bench_ours(Path(tmp), args.runs))
            else:
                assert python is not None
                try:
                    result["dbos"] = bench_dbos(python, args.runs, args.dbos_journal_mode)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
                    result["dbos_error"] = str(error)
    ours = result.get("ours", {}).get("concurrent", {}).get("steps_per_s")
    if ours is not None and "raw" in result:
        result["ratio_ours_to_raw"] = ours / result["raw"]["commits_per_s"]
    if ours is not None and "dbos" in result:
        result["ratio_ours_to_dbos"] = ours / result["dbos"]["concurrent"]["steps_per_s"]
    if "raw" in result and "dbos" in result:
        result["ratio_dbos_to_raw"] = (
            result["dbos"]["concurrent"]["steps_per_s"] / result["raw"]["commits_per_s"]
        )
    return result


def summary(rounds: list[dict[str, Any]]) -> str:
    def med(*path: str) -> float | None:
        values = []
        for entry in rounds:
            value: Any = entry
            for key in path:
                if not isinstance(value, dict) or key not in value:
                    break
                value = value[key]
            else:
                values.append(float(value))
        return statistics.median(values) if values else None

    lines = [
        ("raw sqlite3 upserts, 1 row per commit, commits/s", ",.0f", ("raw", "commits_per_s")),
        ("  JSON bytes per row", ".0f", ("raw", "row_bytes")),
        ("ours: 200 x 10-step at once, steps/s", ",.0f", ("ours", "concurrent", "steps_per_s")),
        ("  client CPU, ms/step", ".3f", ("ours", "concurrent", "client_cpu_ms_per_step")),
        ("ours: one 10-step run alone, p50 ms", ".2f", ("ours", "single", "p50_ms")),
        ("  per step, 1,000-step chain / 10-step", ".2f", ("ours", "scaling", "chain_vs_10")),
        ("  per step, 1,000-way fan-out / 10-step", ".2f", ("ours", "scaling", "fanout_vs_10")),
        (
            "dbos: 200 x 10-step at once (threads), steps/s",
            ",.0f",
            ("dbos", "concurrent", "steps_per_s"),
        ),
        ("  client CPU, ms/step", ".3f", ("dbos", "concurrent", "client_cpu_ms_per_step")),
        ("dbos: one 10-step run alone, p50 ms", ".2f", ("dbos", "single", "p50_ms")),
        ("ratio ours / raw (per round; target >= 0.5)", ".3f", ("ratio_ours_to_raw",)),
        ("ratio ours / dbos (per round)", ".2f", ("ratio_ours_to_dbos",)),
        ("ratio dbos / raw (per round)", ".3f", ("ratio_dbos_to_raw",)),
    ]
    text = [f"summary (median of {len(rounds)} rounds):"]
    for label, spec, path in lines:
        value = med(*path)
        if value is not None:
            text.append(f"  {label}: {value:{spec}}")
    versions = {
        (entry["dbos"]["dbos"], entry["dbos"]["sqlite"], entry["dbos"]["journal_mode"])
        for entry in rounds
        if "dbos" in entry
    }
    for dbos, sqlite, journal in sorted(versions):
        text.append(f"  (DBOS {dbos} on SQLite {sqlite}, journal_mode={journal})")
    errors = [entry["dbos_error"] for entry in rounds if "dbos_error" in entry]
    if errors:
        text.append(f"  dbos failed in {len(errors)} round(s): {errors[-1]}")
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--runs", type=int, default=20, help="runs alone for the single p50")
    parser.add_argument("--dbos-python", default=None, help="Python of a venv with dbos")
    parser.add_argument("--dbos-journal-mode", default=None, help="e.g. wal (default: DBOS's)")
    parser.add_argument("--output", default=None, help="also append the JSON lines here")
    args = parser.parse_args()
    python = dbos_python(args) if "dbos" in args.only else None
    print(f"sqlite3 {sqlite3.sqlite_version}, CPython {sys.version.split()[0]}", file=sys.stderr)
    rounds: list[dict[str, Any]] = []
    for index in range(args.rounds):
        result = one_round(index, args, python)
        rounds.append(result)
        line = json.dumps(result)
        print(line, flush=True)
        if args.output:
            with open(args.output, "a", encoding="utf-8") as out:
                out.write(line + "\n")
    print("\n" + summary(rounds))


if __name__ == "__main__":
    main()

"""What the asyncio bridge to ``sqlite3`` costs: ours (``_database.Database``, one thread per
connection serving a queue) against ``run_in_executor`` on a one-thread pool, ``aiosqlite``,
and calling ``sqlite3`` on the event loop itself (the floor, which blocks the loop during
every ``fsync``).

Scenarios, each on a fresh file with WAL and ``synchronous=FULL``:

* ``select``: 5,000 sequential ``SELECT 1`` round trips; µs per call.
* ``commit``: 1,000 sequential single-row upserts, each its own commit; µs per commit.

The issue asked whether ``aiosqlite`` earns its place: it does the same thing (a thread per
connection and a queue), so the question is only which bridge costs less per call.

Run: ``uv run --frozen --with aiosqlite python -m benchmarks.bench_sqlite_bridge [--rounds R]``
(without ``aiosqlite`` importable its column is left out).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hephaestus.storage.sqlite._database import Database

SELECTS = 5_000
COMMITS = 1_000
UPSERT = "INSERT INTO rows (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc"
DOC = "x" * 600


def _prepare(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, doc TEXT)")


def _upsert(connection: sqlite3.Connection, key: int) -> None:
    connection.execute(UPSERT, (key, DOC))


async def on_the_loop(path: Path) -> dict[str, float]:
    connection = sqlite3.connect(path, isolation_level=None)
    _prepare(connection)
    began = time.perf_counter()
    for _ in range(SELECTS):
        connection.execute("SELECT 1").fetchone()
    select = (time.perf_counter() - began) / SELECTS * 1e6
    began = time.perf_counter()
    for n in range(COMMITS):
        connection.execute(UPSERT, (n % 10, DOC))
    commit = (time.perf_counter() - began) / COMMITS * 1e6
    connection.close()
    return {"select_us": select, "commit_us": commit}


async def ours(path: Path) -> dict[str, float]:
    database = Database(str(path), label="bench", busy_timeout=5.0, synchronous="FULL")
    await database.open()
    await database.call(_prepare)
    began = time.perf_counter()
    for _ in range(SELECTS):
        await database.call(lambda c: c.execute("SELECT 1").fetchone())
    select = (time.perf_counter() - began) / SELECTS * 1e6
    began = time.perf_counter()
    for n in range(COMMITS):
        await database.call(functools.partial(_upsert, key=n % 10))
    commit = (time.perf_counter() - began) / COMMITS * 1e6
    await database.close()
    return {"select_us": select, "commit_us": commit}


async def executor(path: Path) -> dict[str, float]:
    """``run_in_executor`` on a one-thread pool: what ``Database`` did first."""
    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    connection = await loop.run_in_executor(
        pool,
        functools.partial(sqlite3.connect, path, isolation_level=None, check_same_thread=False),
    )
    await loop.run_in_executor(pool, _prepare, connection)
    began = time.perf_counter()
    for _ in range(SELECTS):
        await loop.run_in_executor(pool, lambda: connection.execute("SELECT 1").fetchone())
    select = (time.perf_counter() - began) / SELECTS * 1e6
    began = time.perf_counter()
    for n in range(COMMITS):
        await loop.run_in_executor(pool, functools.partial(_upsert, connection, n % 10))
    commit = (time.perf_counter() - began) / COMMITS * 1e6
    await loop.run_in_executor(pool, connection.close)
    pool.shutdown()
    return {"select_us": select, "commit_us": commit}


async def with_aiosqlite(path: Path) -> dict[str, float]:
    import aiosqlite  # type: ignore[import-not-found, unused-ignore]

    async with aiosqlite.connect(path, isolation_level=None) as connection:
        await connection.execute("PRAGMA journal_mode = WAL")
        await connection.execute("PRAGMA synchronous = FULL")
        await connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, doc TEXT)")
        began = time.perf_counter()
        for _ in range(SELECTS):
            async with connection.execute("SELECT 1") as cursor:
                await cursor.fetchone()
        select = (time.perf_counter() - began) / SELECTS * 1e6
        began = time.perf_counter()
        for n in range(COMMITS):
            await connection.execute(UPSERT, (n % 10, DOC))
        commit = (time.perf_counter() - began) / COMMITS * 1e6
    return {"select_us": float(select), "commit_us": float(commit)}


async def one_round(index: int, directory: Path, have_aiosqlite: bool) -> dict[str, Any]:
    scenarios: dict[str, Any] = {"loop": on_the_loop, "ours": ours, "executor": executor}
    if have_aiosqlite:
        scenarios["aiosqlite"] = with_aiosqlite
    names = list(scenarios)
    order = names[index % len(names) :] + names[: index % len(names)]
    result: dict[str, Any] = {"order": order}
    for name in order:
        result[name] = await scenarios[name](directory / f"{name}-{index}.db")
    for metric in ("select_us", "commit_us"):
        result[f"executor_over_ours_{metric}"] = result["executor"][metric] / result["ours"][metric]
    if have_aiosqlite:
        for metric in ("select_us", "commit_us"):
            result[f"aiosqlite_over_ours_{metric}"] = (
                result["aiosqlite"][metric] / result["ours"][metric]
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=None, help="also append the JSON lines here")
    args = parser.parse_args()
    have_aiosqlite = importlib.util.find_spec("aiosqlite") is not None
    rounds = []
    with tempfile.TemporaryDirectory() as directory:
        for index in range(args.rounds):
            result = asyncio.run(one_round(index, Path(directory), have_aiosqlite))
            rounds.append(result)
            line = json.dumps(result)
            print(line, flush=True)
            if args.output:
                with open(args.output, "a", encoding="utf-8") as out:
                    out.write(line + "\n")
    print("\nsummary (median of rounds), µs per call:")
    for name in ("loop", "ours", "executor", "aiosqlite"):
        if name in rounds[0]:
            select = statistics.median(r[name]["select_us"] for r in rounds)
            commit = statistics.median(r[name]["commit_us"] for r in rounds)
            print(f"  {name:10} SELECT 1: {select:7.1f}   one-row commit: {commit:7.1f}")
    others = ("executor", "aiosqlite") if have_aiosqlite else ("executor",)
    for other in others:
        for metric in ("select_us", "commit_us"):
            ratio = statistics.median(r[f"{other}_over_ours_{metric}"] for r in rounds)
            print(f"  {other} / ours, {metric}: {ratio:.2f} (per round)")


if __name__ == "__main__":
    main()

"""Worker processes for the multiprocess tests, and the invariants checked after a scenario.

``Worker`` starts ``tests.multiprocess._worker`` as a real OS process and talks to it over
its stdin and stdout; ``Cluster`` owns a set of them and kills any left over. The checks
read the ``executions`` table the steps write (see ``_flows``) and the runs in storage; each
returns a list of problems, so that one scenario reports every broken invariant at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Self

import psycopg

from hephaestus import HistoryKind, Instance, Status
from hephaestus.storage import InstanceQuery
from hephaestus.storage.postgres import PostgresStorage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
REPLY_SECONDS = 30.0
"""How long a worker may take to answer one command before the test counts it as failed."""


class Worker:
    """A worker process: send it commands, read its answers, signal it."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.pid = process.pid
        self.errors: list[str] = []
        """Every ``error`` answer and every command left unanswered, in order."""
        self.lines: list[str] = []
        self.closed = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._replies: dict[str, asyncio.Future[str | None]] = {}
        self._ids = itertools.count()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, dsn: str, name: str, runner: str = "local") -> Worker:
        """Start a worker on ``dsn`` with ``runner`` (see ``_worker``); wait until it is open."""
        return await cls.launch(name, "tests.multiprocess._worker", dsn, name, runner)

    @classmethod
    async def launch(cls, name: str, module: str, *arguments: str) -> Worker:
        """Start ``python -m module arguments...`` (a worker speaking ``_worker``'s protocol)
        as ``name``; wait until it is open."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *arguments,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        worker = cls(name, process)
        await asyncio.wait_for(asyncio.shield(worker._ready), REPLY_SECONDS)
        return worker

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode().rstrip("\n")
            self.lines.append(text)
            verb, _, rest = text.partition(" ")
            ident, _, detail = rest.partition(" ")
            if verb == "ready" and not self._ready.done():
                self._ready.set_result(None)
            elif verb == "closed":
                self.closed.set()
            elif verb in ("ok", "error") and ident in self._replies:
                future = self._replies.pop(ident)
                if not future.done():
                    future.set_result(None if verb == "ok" else detail)
        if not self._ready.done():
            self._ready.set_exception(RuntimeError(f"worker {self.name} exited before ready"))
        for future in self._replies.values():
            if not future.done():
                future.set_result("worker exited without answering")

    async def call(self, *words: str) -> str | None:
        """Send a ``start``/``resume`` command; ``None`` if it succeeded, else why not
        (also kept in ``errors``)."""
        ident = str(next(self._ids))
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._replies[ident] = future
        assert self.process.stdin is not None
        command = [words[0], ident, *words[1:]]
        self.process.stdin.write((" ".join(command) + "\n").encode())
        try:
            await self.process.stdin.drain()
            error = await asyncio.wait_for(future, REPLY_SECONDS)
        except (TimeoutError, ConnectionError) as exc:
            error = f"no answer ({type(exc).__name__})"
        if error is not None:
            self.errors.append(f"{self.name} {' '.join(command)}: {error}")
        return error

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker (if it is still running)."""
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def exited(self, seconds: float) -> int | None:
        """Wait up to ``seconds`` for the process to exit; its return code, or None."""
        try:
            return await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            return None

    async def quit(self, seconds: float = 15.0) -> int | None:
        """Ask the worker to close its app and exit; its return code (None if it hung)."""
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.write(b"quit\n")
            with contextlib.suppress(ConnectionError):
                await self.process.stdin.drain()
        return await self.exited(seconds)

    async def kill(self) -> None:
        """SIGKILL the worker (after a SIGCONT, in case it is stopped) and reap it."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        await self.process.wait()
        await self._reader


class Cluster:
    """Worker processes on one database; leaving the block kills those still running."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.workers: list[Worker] = []

    async def spawn(self, count: int, prefix: str = "hxw", runner: str = "local") -> list[Worker]:
        """Start ``count`` workers at once, named ``{prefix}{n}``; wait until all are open."""
        start = len(self.workers)
        names = [f"{prefix}{start + n}" for n in range(count)]
        spawned = await asyncio.gather(*(Worker.spawn(self.dsn, name, runner) for name in names))
        self.workers.extend(spawned)
        return list(spawned)

    @property
    def errors(self) -> list[str]:
        """Every failed command of every worker."""
        return [error for worker in self.workers for error in worker.errors]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for worker in self.workers:
            await worker.kill()


# -- reading what happened -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Execution:
    """One recorded execution of a step attempt (database clock)."""

    key: str
    pid: int
    started: datetime
    ended: datetime | None


def database_now(dsn: str) -> datetime:
    """The database clock, the one executions are recorded with."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def executions(dsn: str) -> list[Execution]:
    """Every recorded execution, oldest first."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, pid, started, ended FROM executions ORDER BY started, id"
        ).fetchall()
    return [Execution(*row) for row in rows]


def in_flight(dsn: str, pid: int) -> int:
    """How many step executions ``pid`` has started and not finished."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM executions WHERE pid = %s AND ended IS NULL", (pid,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def until_in_flight(dsn: str, worker: Worker, count: int = 2) -> None:
    """Wait (20 s at most) until ``worker`` is executing ``count`` steps at once."""
    async with asyncio.timeout(20):
        while True:
            if in_flight(dsn, worker.pid) >= count:
                return
            await asyncio.sleep(0.005)


def terminate_backends(dsn: str, application_name: str) -> int:
    """Terminate every backend of ``application_name`` (a lost connection); how many."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


async def runs(dsn: str) -> list[Instance]:
    """Every run in storage."""
    storage = PostgresStorage(dsn, min_size=1, max_size=1)
    await storage.open()
    try:
        return await storage.query(InstanceQuery())
    finally:
        await storage.close()


async def wait_completed(dsn: str, ids: Iterable[str], bound: float) -> tuple[list[str], float]:
    """Poll storage until every run of ``ids`` has completed or ``bound`` seconds passed.

    Returns the ids not completed (empty when all did) and the seconds waited.
    """
    wanted = set(ids)
    began = time.monotonic()
    storage = PostgresStorage(dsn, min_size=1, max_size=1)
    await storage.open()
    try:
        while True:
            done = {
                run.id
                for run in await storage.query(InstanceQuery(status=Status.COMPLETED))
                if run.id in wanted
            }
            waited = time.monotonic() - began
            if done == wanted or waited > bound:
                return sorted(wanted - done), waited
            await asyncio.sleep(0.1)
    finally:
        await storage.close()


# -- invariants ------------------------------------------------------------------------------


def concurrent_doubles(
    found: Iterable[Execution],
    *,
    ended_by: dict[int, datetime] | None = None,
    tolerated: Callable[[Execution], bool] = lambda execution: False,
) -> list[tuple[Execution, Execution]]:
    """Pairs of executions of one key, in two processes, that overlap in time.

    An execution with no end ran until its process died (``ended_by[pid]``, when it was
    killed) or is still running. A pair with a ``tolerated`` execution in it is left out.
    """
    far = datetime.max.replace(tzinfo=datetime.now().astimezone().tzinfo)
    ends = ended_by or {}
    by_key: dict[str, list[Execution]] = defaultdict(list)
    for execution in found:
        by_key[execution.key].append(execution)
    pairs = []
    for group in by_key.values():
        for first, second in itertools.combinations(group, 2):
            if first.pid == second.pid or tolerated(first) or tolerated(second):
                continue
            first_end = first.ended or ends.get(first.pid, far)
            second_end = second.ended or ends.get(second.pid, far)
            if first.started < second_end and second.started < first_end:
                pairs.append((first, second))
    return pairs


def unexplained_repeats(found: Iterable[Execution], killed: Iterable[int] = ()) -> list[str]:
    """Keys executed more than once other than an attempt of a dead process and its one redo.

    A step attempt may run again only if a process that was executing it died before its
    result was recorded: then it ran once in each dead process and once in a live one.
    """
    dead = set(killed)
    by_key: dict[str, Counter[int]] = defaultdict(Counter)
    for execution in found:
        by_key[execution.key][execution.pid] += 1
    problems = []
    for key, pids in sorted(by_key.items()):
        if pids.total() == 1:
            continue
        live = sum(count for pid, count in pids.items() if pid not in dead)
        once_per_dead = all(count == 1 for pid, count in pids.items() if pid in dead)
        if not (dead & set(pids) and live <= 1 and once_per_dead):
            problems.append(f"{key} executed by {dict(pids)}")
    return problems


def history_repeats(found: Iterable[Instance]) -> list[str]:
    """Runs whose history records one transition more than once.

    Each step completes once, each failed attempt is retried once, and a run completes once.
    """
    problems = []
    for run in found:
        completed = Counter(
            entry.step for entry in run.history if entry.kind is HistoryKind.STEP_COMPLETED
        )
        retried = Counter(
            (entry.step, entry.attempt)
            for entry in run.history
            if entry.kind is HistoryKind.STEP_RETRYING
        )
        finished = sum(entry.kind is HistoryKind.COMPLETED for entry in run.history)
        repeats = {str(step): n for step, n in completed.items() if n > 1}
        repeats |= {f"{step} retry {attempt}": n for (step, attempt), n in retried.items() if n > 1}
        if finished > 1:
            repeats["completed"] = finished
        if repeats:
            problems.append(f"{run.id}: {repeats}")
    return problems


def describe(pairs: list[tuple[Execution, Execution]]) -> list[str]:
    """One line per overlapping pair, for a failure message."""
    return [
        f"{a.key}: pid {a.pid} {a.started:%T.%f}-{a.ended and f'{a.ended:%T.%f}'} and "
        f"pid {b.pid} {b.started:%T.%f}-{b.ended and f'{b.ended:%T.%f}'}"
        for a, b in pairs
    ]


def report(title: str, problems: Mapping[str, list[str]], numbers: Mapping[str, object]) -> str:
    """A failure message: every broken invariant with a few examples, and the measurements."""
    lines = [title, "  " + ", ".join(f"{name}={value}" for name, value in numbers.items())]
    for name, found in problems.items():
        if found:
            lines.append(f"  {name}: {len(found)}")
            lines.extend(f"    {example}" for example in found[:5])
    return "\n".join(lines)

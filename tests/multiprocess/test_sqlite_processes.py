"""Several app processes on one SQLite file, with real OS processes and SIGKILL.

The ownership model of ``SQLiteStorage`` (``OwningStorage``): a run is written only by the
process that owns it, the others send it their inputs (forwarded through its inbox), the runs
of a process that dies are taken over by the others, and a process that stops gives its runs
up at once. Workers are ``_sqlite_worker`` processes (the local runner on the file), driven
over stdin as ``_cluster.Worker``; their steps record every execution in a file of their own
(``_sqlite_flows``). No PostgreSQL is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import Instance, Status
from hephaestus.storage import InstanceQuery
from hephaestus.storage.sqlite import SQLiteStorage
from tests.multiprocess._cluster import (
    ROOT,
    Execution,
    Worker,
    concurrent_doubles,
    describe,
    history_repeats,
    report,
    unexplained_repeats,
)
from tests.multiprocess._sqlite_flows import FLOWS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable
    from pathlib import Path

WORKER = "tests.multiprocess._sqlite_worker"
WAIT_SECONDS = 60.0
"""How long a condition on the stored runs may take to hold (they need a few seconds)."""

type Transition = tuple[str, str | None, str | None, int | None]
"""A history entry without its time and data: kind, step, event, attempt."""


# -- the processes ---------------------------------------------------------------------------


class Files:
    """The database and the executions file of one test."""

    def __init__(self, directory: Path) -> None:
        self.database = str(directory / "runs.db")
        self.executions = str(directory / "executions.log")

    async def spawn(self, name: str, *, sweep: float = 0.5) -> Worker:
        """A worker on the database (open, its runs recovered), sweeping every ``sweep`` s."""
        return await Worker.launch(name, WORKER, self.database, self.executions, str(sweep))

    async def kill_while_opening(self, seconds: float) -> int:
        """Start a worker, SIGKILL it ``seconds`` later (ready or not); its pid."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            WORKER,
            self.database,
            self.executions,
            "0.5",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        await asyncio.sleep(seconds)
        process.kill()
        await process.wait()
        return process.pid

    async def install(self) -> None:
        """Create the database (before the workers race to)."""
        storage = SQLiteStorage(self.database)
        await storage.open()
        await storage.close()


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[list[Worker]]:
    """The workers a test adds to the list; SIGKILLed if still running at the end."""
    workers: list[Worker] = []
    try:
        yield workers
    finally:
        for worker in workers:
            await worker.kill()


def owner_id(worker: Worker) -> int:
    """The owner id a worker registered (its ``ready PID OWNER`` line)."""
    ready = next(line for line in worker.lines if line.startswith("ready "))
    return int(ready.split()[2])


# -- reading what happened -----------------------------------------------------------------


async def stored(files: Files) -> dict[str, Instance]:
    """Every run in the database, by id (read by a storage that owns nothing)."""
    storage = SQLiteStorage(files.database)
    await storage.open()
    try:
        return {run.id: run for run in await storage.query(InstanceQuery())}
    finally:
        await storage.close()


def owners(files: Files) -> dict[str, int | None]:
    """The owner id of every run, by run id (business id)."""
    with contextlib.closing(sqlite3.connect(files.database, timeout=30)) as connection:
        rows = connection.execute("SELECT id, owner FROM workflow_instances").fetchall()
    return {str(ident): None if owner is None else int(owner) for ident, owner in rows}


def executions(files: Files) -> list[Execution]:
    """Every step execution recorded (an ``S`` line without its ``E``: it never ended)."""
    try:
        with open(files.executions) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    started: dict[tuple[str, int], list[float]] = {}
    found: list[Execution] = []
    for line in lines:
        mark, key, process, at = line.split()  # one write() per line: never cut short
        times = started.setdefault((key, int(process)), [])
        if mark == "S":
            times.append(float(at))
        elif mark == "E":
            found.append(Execution(key, int(process), _time(times.pop(0)), _time(float(at))))
    for (key, pid), times in started.items():
        found.extend(Execution(key, pid, _time(at), None) for at in times)
    return sorted(found, key=lambda execution: execution.started)


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def in_flight(files: Files, pid: int) -> list[Execution]:
    """The executions ``pid`` has started and not finished."""
    return [e for e in executions(files) if e.pid == pid and e.ended is None]


async def until(files: Files, what: str, condition: Any, seconds: float = WAIT_SECONDS) -> None:
    """Poll the stored runs until ``condition(runs)`` holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        runs = await stored(files)
        if condition(runs):
            return
        if time.monotonic() > deadline:
            states = Counter(
                f"{run.workflow.rsplit('.', 1)[-1]}:{run.status}" for run in runs.values()
            )
            pytest.fail(f"after {seconds:.0f}s, still not {what}: {dict(states)}")
        await asyncio.sleep(0.1)


async def until_in_flight(files: Files, worker: Worker, count: int = 1) -> None:
    """Wait until ``worker`` is executing ``count`` steps at once."""
    deadline = time.monotonic() + WAIT_SECONDS
    while len(in_flight(files, worker.pid)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{worker.name} never had {count} step(s) in flight")
        await asyncio.sleep(0.01)


async def freeze_outside_a_write(files: Files, worker: Worker) -> None:
    """SIGSTOP ``worker`` at a moment it does not hold the database's write lock.

    A process frozen inside a write transaction blocks every other process's writes (SQLite
    has one writer at a time): theirs fail once ``busy_timeout`` passes. The test wants a
    frozen owner, not a frozen database: it lets the worker run on a moment and retries.
    """
    for _ in range(200):
        worker.signal(signal.SIGSTOP)
        await asyncio.sleep(0.02)
        with contextlib.closing(
            sqlite3.connect(files.database, timeout=0.1, isolation_level=None)
        ) as connection:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # locked: frozen mid-write
                pass
            else:
                connection.execute("ROLLBACK")
                return
        worker.signal(signal.SIGCONT)
        await asyncio.sleep(0.01)
    pytest.fail(f"{worker.name} never stopped outside a write")


def waiting_at(run: Instance, step: str) -> bool:
    return run.status is Status.WAITING and step in run.waiting_steps


def terminal(ids: Iterable[str]) -> Any:
    wanted = set(ids)
    return lambda runs: all(i in runs and runs[i].is_terminal for i in wanted)


# -- what each shape must end with -----------------------------------------------------------


def _done(*steps: str) -> list[Transition]:
    return [
        ("started", None, None, None),
        *[("step_completed", step, "next", 1) for step in steps],
        ("step_completed", "done", "done", 1),
        ("completed", None, None, None),
    ]


def _wait(before: str, step: str, event: str, after: str) -> list[Transition]:
    *head, done, completed = _done(before, after)
    return [
        *head[:2],
        ("step_waiting", step, None, 1),
        ("step_resumed", step, event, 1),
        *head[2:],
        done,
        completed,
    ]


def expected(flow: str, value: str) -> tuple[Status, dict[str, Any], list[Transition]]:
    """The final status, ``context.steps`` and history (kind, step, event, attempt; in the
    order recorded, fan-out branches aside) of a run of ``flow`` for ``value``."""
    results = {step: {"step": step} for step in ("prepare", "finish")}
    match flow:
        case "SqChain":
            links = [f"link{n}" for n in range(10)]
            return (
                Status.COMPLETED,
                {**{link: {"step": link} for link in links}, "done": {}},
                _done(*links),
            )
        case "SqRoute":
            express = int(value[-1]) % 2 == 1
            path, other = ("express", "standard") if express else ("standard", "express")
            history = _done("pick", path, "deliver")
            history.insert(2, ("step_skipped", other, None, None))
            steps = {
                "pick": {"step": "pick", "express": express},
                path: {"step": path},
                "deliver": {"step": "deliver"},
                "done": {},
            }
            return Status.COMPLETED, steps, history
        case "SqFanOut":
            branches = ("split", "left", "middle", "right", "join")
            return (
                Status.COMPLETED,
                {**{step: {"step": step} for step in branches}, "done": {}},
                _done(*branches),
            )
        case "SqTimer":
            steps = {"prepare": results["prepare"], "pause": {}, "finish": results["finish"]}
            return (
                Status.COMPLETED,
                {**steps, "done": {}},
                _wait("prepare", "pause", "timeout", "finish"),
            )
        case "SqApproval":  # the resume's payload names the process that sent it
            steps = {"prepare": results["prepare"], "approve": {"by": "*"}, **results}
            return (
                Status.COMPLETED,
                {**steps, "done": {}},
                _wait("prepare", "approve", "received", "finish"),
            )
        case "SqHold":
            steps = {"prepare": results["prepare"], "long_pause": {}, "finish": results["finish"]}
            return (
                Status.COMPLETED,
                {**steps, "done": {}},
                _wait("prepare", "long_pause", "timeout", "finish"),
            )
        case "SqFlaky":
            history = _done("prepare", "flaky", "finish")
            history.insert(2, ("step_retrying", "flaky", None, 1))
            history[3] = ("step_completed", "flaky", "next", 2)
            steps = {"prepare": results["prepare"], "flaky": {"step": "flaky"}}
            return Status.COMPLETED, {**steps, "finish": results["finish"], "done": {}}, history
        case "SqDoomed":
            return (
                Status.FAILED,
                {"prepare": results["prepare"]},
                [
                    ("started", None, None, None),
                    ("step_completed", "prepare", "next", 1),
                    ("step_retrying", "doomed", None, 1),
                    ("step_failed", "doomed", None, 2),
                    ("failed", None, None, None),
                ],
            )
        case "SqCancelled":
            return (
                Status.CANCELLED,
                {"prepare": results["prepare"]},
                [
                    ("started", None, None, None),
                    ("step_completed", "prepare", "next", 1),
                    ("step_waiting", "hold", None, 1),
                    ("cancelled", None, None, None),
                ],
            )
        case "SqBlocking":
            return (
                Status.CANCELLED,
                {},
                [("started", None, None, None), ("cancelled", None, None, None)],
            )
    raise AssertionError(f"no expectation for {flow}")


def transitions(run: Instance) -> list[Transition]:
    return [(entry.kind.value, entry.step, entry.event, entry.attempt) for entry in run.history]


def outcome_problems(runs: dict[str, Instance], plan: Iterable[tuple[str, str]]) -> list[str]:
    """Every run of ``plan`` (flow, value) that did not end as its shape says, each of its
    transitions recorded once (the same entries as a run never interrupted; fan-out branches
    may complete in any order)."""
    problems = []
    for flow, value in plan:
        run = runs.get(ident(flow, value))
        if run is None:
            problems.append(f"{ident(flow, value)}: not stored")
            continue
        status, steps, history = expected(flow, value)
        if run.status is not status:
            problems.append(f"{run.id}: {run.status}, expected {status} ({run.error})")
        found = {key: dict(result) for key, result in run.context.steps.items()}
        if "approve" in steps and "approve" in found and "by" in found["approve"]:
            found["approve"]["by"] = "*"
        if found != steps:
            problems.append(f"{run.id}: context {found}, expected {steps}")
        recorded = transitions(run)
        if Counter(recorded) != Counter(history):
            extra = Counter(recorded) - Counter(history)
            missing = Counter(history) - Counter(recorded)
            problems.append(f"{run.id}: history {dict(extra)} extra, {dict(missing)} missing")
        elif flow != "SqFanOut" and recorded != history:
            problems.append(f"{run.id}: history out of order: {recorded}")
    return problems


def ident(flow: str, value: str) -> str:
    return f"{FLOWS[flow].unique.key}::{value}"


# -- SIGKILL, five times -----------------------------------------------------------------------

SHAPES = (
    "SqChain",
    "SqRoute",
    "SqFanOut",
    "SqTimer",
    "SqApproval",
    "SqFlaky",
    "SqDoomed",
    "SqCancelled",
)
KILLS = 5


@pytest.mark.timeout(150)
async def test_a_new_process_completes_every_run_after_five_sigkills(tmp_path: Path) -> None:
    """50 runs of every shape (plus two that block until cancelled); the worker executing
    them is SIGKILLed at five random moments with steps in flight, and a new worker started
    each time; resumes and cancels are sent between kills (some lost with their worker). A
    last process completes every run: each ends as its shape says, with each transition
    recorded once, and only steps cut by a kill ran again."""
    seed = int.from_bytes(os.urandom(4))
    rng = random.Random(seed)
    files = Files(tmp_path)
    await files.install()
    plan = [(SHAPES[index % len(SHAPES)], f"k{index}") for index in range(50)]
    plan += [("SqBlocking", "k50"), ("SqBlocking", "k51")]  # a step in flight at every kill
    ids = [ident(flow, value) for flow, value in plan]
    killed: list[int] = []
    cut: list[Execution] = []
    lost: list[str] = []  # commands whose worker died before answering
    async with cluster() as workers:
        worker = await files.spawn("k0")
        workers.append(worker)
        started = await asyncio.gather(*(worker.call("start", f, v) for f, v in plan))
        assert started == [None] * len(plan), worker.errors
        for round in range(KILLS):
            await until_in_flight(files, worker)
            sent: list[asyncio.Task[str | None]] = []
            if round in (2, 3):  # resumes and cancels, racing the kill
                runs = await stored(files)
                for flow, value in plan:
                    run = runs[ident(flow, value)]
                    if flow == "SqApproval" and round == 2 and waiting_at(run, "approve"):
                        call = worker.call("resume", flow, value, "received")
                    elif round == 3 and (
                        flow == "SqBlocking" or (flow == "SqCancelled" and waiting_at(run, "hold"))
                    ):
                        call = worker.call("cancel", flow, value)
                    else:
                        continue
                    sent.append(asyncio.create_task(call))
            # Right after the commands (some are lost with the worker), or later.
            await asyncio.sleep(rng.uniform(0.0, 0.01) if sent else rng.uniform(0.05, 0.6))
            cut.extend(in_flight(files, worker.pid))
            worker.signal(signal.SIGKILL)
            await worker.kill()
            killed.append(worker.pid)
            lost.extend(error for error in await asyncio.gather(*sent) if error is not None)
            runs = await stored(files)
            assert any(not runs[i].is_terminal for i in ids), "every run ended before the kill"
            if round == KILLS - 1:  # and one more, killed while it opens (claiming, recovering)
                killed.append(await files.kill_while_opening(rng.uniform(0.1, 0.5)))
            worker = await files.spawn(f"k{round + 1}")
            workers.append(worker)

        # The last process completes every run: resumes and cancels not applied are sent.
        final = worker
        answered: set[str] = set()
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            runs = await stored(files)
            if all(runs[i].is_terminal for i in ids):
                break
            assert time.monotonic() < deadline, "the last process did not complete every run"
            for flow, value in plan:
                run = runs[ident(flow, value)]
                if run.is_terminal or run.id in answered:
                    continue
                if flow == "SqApproval" and waiting_at(run, "approve"):
                    answered.add(run.id)
                    assert await final.call("resume", flow, value, "received") is None
                elif flow == "SqBlocking" or (flow == "SqCancelled" and waiting_at(run, "hold")):
                    answered.add(run.id)
                    assert await final.call("cancel", flow, value) is None
            await asyncio.sleep(0.1)
        exit_code = await final.quit()

    runs = await stored(files)
    found = executions(files)
    cut_steps = [e for e in cut if "/blocked/" not in e.key]
    problems = {
        "runs that did not end as expected": outcome_problems(runs, plan),
        "transitions recorded twice": history_repeats(runs.values()),
        "re-executions not explained by a kill": unexplained_repeats(found, killed),
        "failed commands (not lost with a killed worker)": [
            error for error in [*final.errors, *lost] if "without answering" not in error
        ],
        "owners left registered (rows, lock files)": [
            str(left) for left in registered(files) if left
        ],
        "last process did not exit cleanly": [] if exit_code == 0 else [str(exit_code)],
    }
    numbers = {
        "seed": seed,
        "kills": len(killed),  # the five, and one while opening
        "steps_cut_by_kills": len(cut_steps),
        "executions": len(found),
        "executed_again": len(found) - len({e.key for e in found}),
        "commands_lost": len(lost),
    }
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report("five SIGKILLs", problems, numbers)
    assert cut_steps, report("no step (other than a blocked one) was cut by a kill", {}, numbers)
    print("five SIGKILLs:", numbers)


# -- two live processes ------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_owner_applies_forwarded_inputs_and_survivor_takes_over_on_sigkill(
    tmp_path: Path,
) -> None:
    """A starts runs: they are A's. B resumes and cancels some of them: B forwards, A applies
    (the steps after the resume run in A; B writes nothing of A's). A is SIGKILLed with steps
    in flight: B takes A's runs over and completes them, resumes and cancels included."""
    files = Files(tmp_path)
    await files.install()
    plan = [("SqApproval", f"a{n}") for n in range(4)]
    plan += [("SqBlocking", f"b{n}") for n in range(2)]
    plan += [("SqChain", f"c{n}") for n in range(6)]
    plan += [("SqHold", f"h{n}") for n in range(4)]
    plan += [("SqFanOut", f"f{n}") for n in range(4)]
    ids = [ident(flow, value) for flow, value in plan]
    async with cluster() as workers:
        a = await files.spawn("a")
        b = await files.spawn("b")
        workers.extend([a, b])
        a_owner, b_owner = owner_id(a), owner_id(b)
        assert a_owner != b_owner
        for flow, value in plan:
            assert await a.call("start", flow, value) is None
        assert set(owners(files).values()) == {a_owner}, "runs started by A are A's"

        # B sends inputs to A's runs: forwarded, applied by A.
        approvals = [ident("SqApproval", f"a{n}") for n in range(4)]
        await until(
            files,
            "waiting for approval",
            lambda r: all(waiting_at(r[i], "approve") for i in approvals),
        )
        assert await b.call("resume", "SqApproval", "a0", "received") is None
        assert await b.call("resume", "SqApproval", "a1", "received") is None
        assert await b.call("cancel", "SqBlocking", "b0") is None
        forwarded = [
            ident("SqApproval", "a0"),
            ident("SqApproval", "a1"),
            ident("SqBlocking", "b0"),
        ]
        await until(files, "applied by A", terminal(forwarded))
        owned = owners(files)
        runs = await stored(files)
        assert {owned[i] for i in forwarded} == {a_owner}, "B took a run from a live owner"
        for value in ("a0", "a1"):
            run = runs[ident("SqApproval", value)]
            assert run.context.steps["approve"] == {"by": b.pid}, "the resume came from B"
        after_resume = [
            e for e in executions(files) if "/finish/" in e.key and "sqapproval::a" in e.key
        ]
        assert {e.pid for e in after_resume} == {a.pid}, "A, the owner, ran the resumed runs"
        blocked = [e for e in executions(files) if "sqblocking::b0/" in e.key]
        assert [e.pid for e in blocked] == [a.pid]
        assert blocked[0].ended is not None

        # A freezes with steps in flight; B forwards inputs it will never apply; then A is
        # SIGKILLed: B takes its runs over, the inputs waiting in their inboxes included.
        await until_in_flight(files, a, 3)
        await freeze_outside_a_write(files, a)
        assert await b.call("resume", "SqApproval", "a2", "received") is None
        assert await b.call("cancel", "SqBlocking", "b1") is None
        assert set(owners(files).values()) == {a_owner}, "B took a run from a live owner"
        with contextlib.closing(sqlite3.connect(files.database)) as connection:
            inbox = connection.execute("SELECT count(*) FROM workflow_inbox").fetchone()
        assert inbox == (2,), "the inputs for a frozen owner wait in the inbox"
        a.signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        await a.kill()
        await until(
            files,
            "taken over by B",
            lambda r: all(owners(files)[i] == b_owner for i in ids if not r[i].is_terminal),
        )
        assert await b.call("resume", "SqApproval", "a3", "received") is None  # B's own now
        await until(files, "completed by B", terminal(ids))
        b_code = await b.quit()

    runs = await stored(files)
    found = executions(files)
    problems = {
        "runs that did not end as expected": outcome_problems(runs, plan),
        "failed commands": [*a.errors, *b.errors],
        "concurrent double executions": describe(
            concurrent_doubles(found, ended_by={a.pid: killed_at})
        ),
        "re-executions not explained by the kill": unexplained_repeats(found, [a.pid]),
        "steps B ran before the kill": [
            f"{e.key} at {e.started:%T.%f}"
            for e in found
            if e.pid == b.pid and e.started < killed_at
        ],
        "B did not exit cleanly": [] if b_code == 0 else [str(b_code)],
    }
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report("forward, then failover", problems, {"runs": len(ids)})


@pytest.mark.timeout(120)
async def test_sigterm_releases_runs_to_the_other_process_at_once(tmp_path: Path) -> None:
    """An owner stopped with SIGTERM gives its runs up and announces them: the other process
    takes and completes them though neither sweeps for orphans during the test (a sweep
    interval of ten minutes), so nothing but the release can have handed them over."""
    files = Files(tmp_path)
    await files.install()
    plan = [("SqHold", f"h{n}") for n in range(6)]
    plan += [("SqApproval", f"a{n}") for n in range(3)]
    plan += [("SqChain", f"c{n}") for n in range(3)]
    ids = [ident(flow, value) for flow, value in plan]
    async with cluster() as workers:
        owner = await files.spawn("owner", sweep=600)
        other = await files.spawn("other", sweep=600)
        workers.extend([owner, other])
        for flow, value in plan:
            assert await owner.call("start", flow, value) is None
        holds = [ident("SqHold", f"h{n}") for n in range(6)]
        await until(
            files, "waiting on timers", lambda r: all(waiting_at(r[i], "long_pause") for i in holds)
        )
        owner.signal(signal.SIGTERM)
        stopped_at = datetime.now(UTC)
        code = await owner.exited(30)
        runs = await stored(files)
        held = {o for i, o in owners(files).items() if not runs[i].is_terminal}
        assert held <= {None, owner_id(other)}, "the stopped owner kept runs"
        for n in range(3):  # owned by nobody, or by the other already: the other applies it
            await until(
                files,
                "waiting for approval",
                lambda r, n=n: waiting_at(r[ident("SqApproval", f"a{n}")], "approve"),
            )
            assert await other.call("resume", "SqApproval", f"a{n}", "received") is None
        await until(files, "completed by the other process", terminal(ids))
        other_code = await other.quit()

    runs = await stored(files)
    found = executions(files)
    problems = {
        "runs that did not end as expected": outcome_problems(runs, plan),
        "failed commands": [*owner.errors, *other.errors],
        "owner did not close cleanly": [] if code == 0 and owner.closed.is_set() else [str(code)],
        "other did not exit cleanly": [] if other_code == 0 else [str(other_code)],
        # Sync steps the owner was executing when stopped cannot be cancelled (threads):
        # they may finish beside their redo. Any other overlap is a double execution.
        "concurrent double executions": describe(
            concurrent_doubles(
                found, tolerated=lambda e: e.pid == owner.pid and e.started < stopped_at
            )
        ),
        "runs left to the stopped owner": [
            run
            for run, o in owners(files).items()
            if o == owner_id(owner) and not runs[run].is_terminal
        ],
    }
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report("SIGTERM hand-off", problems, {"runs": len(ids)})


# -- four processes at once --------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_four_processes_share_one_file_and_one_is_killed(tmp_path: Path) -> None:
    """Four workers start 80 runs of every shape between them, each resumed and cancelled
    from another process (forwarded to its owner); one is SIGKILLed with steps in flight. The
    survivors complete every run: no step attempt runs in two processes at once, only the dead
    process's unfinished attempts run again, each transition is recorded once."""
    rng = random.Random(int.from_bytes(os.urandom(4)))
    files = Files(tmp_path)
    await files.install()
    shapes = (*SHAPES, "SqHold")
    plan = [(shapes[index % len(shapes)], f"p{index}") for index in range(80)]
    async with cluster() as workers:
        workers.extend(await asyncio.gather(*(files.spawn(f"w{n}") for n in range(4))))
        victim = workers[1]
        survivors = [worker for worker in workers if worker is not victim]

        def starter(index: int) -> Worker:
            return workers[index // len(shapes) % len(workers)]

        async def start(index: int) -> None:
            flow, value = plan[index]
            assert await starter(index).call("start", flow, value) is None

        await asyncio.gather(*(start(index) for index in range(len(plan))))
        await until_in_flight(files, victim, 3)
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        victim.signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        await victim.kill()

        # Inputs from a process other than the starter (forwarded while the owner lives).
        ids = [ident(flow, value) for flow, value in plan]
        sent: set[str] = set()
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            runs = await stored(files)
            if all(runs[i].is_terminal for i in ids):
                break
            assert time.monotonic() < deadline, "the survivors did not complete every run"
            calls = []
            for index, (flow, value) in enumerate(plan):
                run = runs[ident(flow, value)]
                others = [w for w in survivors if w is not starter(index)]
                sender = others[index % len(others)]
                if run.id in sent or run.is_terminal:
                    continue
                if flow == "SqApproval" and waiting_at(run, "approve"):
                    calls.append(sender.call("resume", flow, value, "received"))
                elif flow == "SqCancelled" and waiting_at(run, "hold"):
                    calls.append(sender.call("cancel", flow, value))
                else:
                    continue
                sent.add(run.id)
            assert await asyncio.gather(*calls) == [None] * len(calls)
            await asyncio.sleep(0.1)
        exits = [await worker.quit() for worker in survivors]

    runs = await stored(files)
    found = executions(files)
    problems = {
        "runs that did not end as expected": outcome_problems(runs, plan),
        "failed commands": [error for worker in survivors for error in worker.errors],
        "concurrent double executions": describe(
            concurrent_doubles(found, ended_by={victim.pid: killed_at})
        ),
        "re-executions not explained by the kill": unexplained_repeats(found, [victim.pid]),
        "workers that did not exit cleanly": [str(code) for code in exits if code != 0],
    }
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report("four processes, one killed", problems, {"runs": len(plan)})


# -- what a dead process leaves --------------------------------------------------------------


def registered(files: Files) -> tuple[set[int], set[int]]:
    """The owner ids registered in the database, and those with a lock file."""
    with contextlib.closing(sqlite3.connect(files.database, timeout=30)) as connection:
        rows = connection.execute("SELECT id FROM workflow_owners").fetchall()
    directory = files.database + "-owners"
    return {int(row[0]) for row in rows}, {int(name) for name in os.listdir(directory)}


@pytest.mark.timeout(60)
async def test_dead_owners_that_owned_no_run_are_forgotten(tmp_path: Path) -> None:
    """Regression: a process SIGKILLed while it owned no active run left its owner row and
    its lock file behind for good (only owners of active runs were checked for life), one of
    each per crash. The next sweep of a live process forgets them."""
    files = Files(tmp_path)
    await files.install()
    async with cluster() as workers:
        for n in range(2):
            dead = await files.spawn(f"dead{n}")
            workers.append(dead)
            await dead.kill()
        live = await files.spawn("live", sweep=0.2)
        workers.append(live)
        mine = {owner_id(live)}
        deadline = time.monotonic() + 30
        while registered(files) != (mine, mine):
            assert time.monotonic() < deadline, f"dead owners left behind: {registered(files)}"
            await asyncio.sleep(0.1)
        assert await live.quit() == 0
    assert registered(files) == (set(), set())


def forked_children(files: Files) -> list[int]:
    """The pids of the children ``Fork`` steps forked (``F`` lines)."""
    with open(files.executions) as file:
        lines = [line.split() for line in file.read().splitlines()]
    return [int(words[1].rsplit(">", 1)[1]) for words in lines if words[0] == "F"]


@pytest.mark.timeout(60)
async def test_a_forked_child_does_not_keep_its_dead_parent_owning_runs(tmp_path: Path) -> None:
    """Regression: a step forked a child that outlived its process; the child shared the
    open file holding the parent's owner lock, so after the parent was SIGKILLed its runs
    looked owned by a live process, and nobody took them over, until the child ended."""
    files = Files(tmp_path)
    await files.install()
    children: list[int] = []
    try:
        async with cluster() as workers:
            parent = await files.spawn("parent")
            other = await files.spawn("other", sweep=0.2)
            workers.extend([parent, other])
            assert await parent.call("start", "SqForked", "x") is None
            forked = ident("SqForked", "x")
            await until(files, "waiting for approval", lambda r: waiting_at(r[forked], "approve"))
            children = forked_children(files)
            assert len(children) == 1
            parent.signal(signal.SIGKILL)
            await parent.kill()
            await until(files, "taken over", lambda r: owners(files)[forked] == owner_id(other), 20)
            assert await other.call("resume", "SqForked", "x", "received") is None
            await until(files, "completed", terminal([forked]))
            assert await other.quit() == 0
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_inputs_sent_while_their_owner_stops_are_applied_once(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """B resumes and cancels A's runs while A stops (gracefully or killed) under them: each
    input is applied once, by A before it stops or by B after (forwarded inputs waiting in
    the inbox included), and no command fails."""
    rng = random.Random(int.from_bytes(os.urandom(4)))
    files = Files(tmp_path)
    await files.install()
    plan = [("SqApproval", f"a{n}") for n in range(12)]
    plan += [("SqCancelled", f"c{n}") for n in range(6)]
    plan += [("SqBlocking", f"b{n}") for n in range(2)]
    async with cluster() as workers:
        a = await files.spawn("a")
        b = await files.spawn("b", sweep=0.3)
        workers.extend([a, b])
        for flow, value in plan:
            assert await a.call("start", flow, value) is None
        await until(
            files,
            "waiting",
            lambda r: all(
                waiting_at(r[ident(f, v)], "approve" if f == "SqApproval" else "hold")
                for f, v in plan
                if f != "SqBlocking"
            ),
        )

        async def send(flow: str, value: str) -> str | None:
            await asyncio.sleep(rng.uniform(0.0, 0.2))
            if flow == "SqApproval":
                return await b.call("resume", flow, value, "received")
            return await b.call("cancel", flow, value)

        sent = [asyncio.create_task(send(flow, value)) for flow, value in plan]
        await asyncio.sleep(rng.uniform(0.0, 0.2))
        a.signal(stop)
        errors = [error for error in await asyncio.gather(*sent) if error is not None]
        code = await a.exited(30)
        await until(files, "applied", terminal(ident(f, v) for f, v in plan))
        b_code = await b.quit()

    runs = await stored(files)
    problems = {
        "runs that did not end as expected": outcome_problems(runs, plan),
        "failed commands": errors,
        "A did not stop as told": []
        if code == (0 if stop == signal.SIGTERM else -stop)
        else [str(code)],
        "B did not exit cleanly": [] if b_code == 0 else [str(b_code)],
    }
    broken = sorted(name for name, found in problems.items() if found)
    assert not broken, report(f"inputs racing {stop.name}", problems, {"runs": len(plan)})

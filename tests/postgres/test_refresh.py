"""``PostgresStorage.refresh``: from any revision of a run held earlier, the run as stored now.

The contract: ``await storage.refresh(held)`` returns what ``await storage.get(held.run_id)``
returns now (an equal instance, steps, results, joins and history in the same order),
``held`` itself when it is the stored revision, and raises ``InstanceNotFoundError`` once
the run is deleted.

Real workflows run through the real engine and the real ``Driver`` (``apply``: a put with
the decision's changes; ``apply_stored``: a put inside a transaction, the run read whole or
by difference from a held copy; ``apply_all``: several results saved as one write), with
step outcomes handed in seeded random orders. After every write, every snapshot held so far
of that run (each read with ``get`` after a write, and each decision's instance) is
refreshed and compared with ``get``. Writes of other kinds go through ``storage.put``
directly: a run rewritten whole (no previous state), a result or a step state replaced,
steps removed, history rewritten. An incremental ``refresh`` (reading only what was written
after the held revision) must merge all of these exactly."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Async,
    Context,
    Done,
    Error,
    HistoryEntry,
    HistoryKind,
    Instance,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepStatus,
    WaitForEvent,
    Workflow,
    WorkflowDefinition,
    WorkflowRegistry,
)
from hephaestus._core import engine
from hephaestus._core.instance import StepState
from hephaestus.codec import encode_instance
from hephaestus.errors import InstanceNotFoundError
from hephaestus.runners import RuntimeEnv
from hephaestus.runners._driver import Driver
from hephaestus.testing import FakeClock

if TYPE_CHECKING:
    from hephaestus import Config, StepContext, StepResult, StepRun
    from hephaestus.storage.postgres import PostgresStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FLAKY = RetryPolicy(max_attempts=3, backoff="constant", initial_delay=1, max_delay=1)
FRAGILE = RetryPolicy(max_attempts=2, backoff="constant", initial_delay=1, max_delay=1)


# ---------------------------------------------------------------------------------------------
# Workflows (steps only satisfy the contract: the tests hand their outcomes to the engine)


def make_step(name: str, retry: RetryPolicy = FLAKY) -> type[Step]:
    async def execute(self: Step, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("next")

    return type(name, (Step,), {"events": ("next",), "execute": execute, "retry": retry})


def chain(name: str, length: int, retry: RetryPolicy = FLAKY) -> type[Workflow]:
    steps = [make_step(f"{name}Step{i}", retry) for i in range(length)]
    transitions: dict[Any, Any] = {(a, "next"): b for a, b in itertools.pairwise(steps)}
    transitions[(steps[-1], "next")] = Done
    return type(name, (Workflow,), {"start_step": steps[0], "transitions": transitions})


def fan_out(name: str, width: int) -> type[Workflow]:
    start = make_step(f"{name}Start")
    join = make_step(f"{name}Join")
    after = make_step(f"{name}After")
    branches = [make_step(f"{name}Branch{i}") for i in range(width)]
    transitions: dict[Any, Any] = {
        (start, "next"): branches,
        **{(branch, "next"): join for branch in branches},
        (join, "next"): after,
        (after, "next"): Done,
    }
    return type(name, (Workflow,), {"start_step": start, "transitions": transitions})


class RefreshApproval(WaitForEvent):
    pass


class RefreshShipment(WaitForEvent):
    pass


RefreshPrepare = make_step("RefreshPrepare")
RefreshArchive = make_step("RefreshArchive")


class RefreshWaiting(Workflow):
    """Prepare, then two waits side by side (one resumed before it waits: buffered), then
    a join and Archive."""

    start_step = RefreshPrepare
    transitions = {  # read once, when the class is created
        (RefreshPrepare, "next"): [RefreshApproval, RefreshShipment],
        (RefreshApproval, "received"): RefreshArchive,
        (RefreshShipment, "received"): RefreshArchive,
        (RefreshArchive, "next"): Done,
    }


RefreshChain = chain("RefreshChain", 6)
RefreshFragile = chain("RefreshFragile", 3, FRAGILE)
RefreshFan5 = fan_out("RefreshFan5", 5)
RefreshFan30 = fan_out("RefreshFan30", 30)

WORKFLOWS: list[type[Workflow]] = [
    RefreshChain,
    RefreshFragile,
    RefreshFan5,
    RefreshFan30,
    RefreshWaiting,
]


def definition(workflow: type[Workflow]) -> WorkflowDefinition:
    compiled = workflow.definition()
    assert isinstance(compiled, WorkflowDefinition)
    return compiled


# ---------------------------------------------------------------------------------------------
# The harness: writes a run, and after every write checks refresh from every held snapshot


def encoded(instance: Instance, *, sort_keys: bool = False) -> str:
    """The instance as JSON text, keys in the instance's own order (``==`` on mappings
    ignores the order of steps, results and joins; this does not)."""
    return json.dumps(encode_instance(instance), sort_keys=sort_keys)


def assert_same(found: Instance, expected: Instance, what: str, *, exact: bool = True) -> None:
    """``found`` equals ``expected``, with steps, results, joins and history in the same
    order; ``exact``: the keys of the data inside too (two reads of the same rows agree on
    them; an instance written and one read back need not, JSONB orders object keys)."""
    assert found == expected, what
    assert encoded(found, sort_keys=not exact) == encoded(expected, sort_keys=not exact), what
    assert list(found.steps) == list(expected.steps), what
    assert list(found.context.steps) == list(expected.context.steps), what
    assert list(found.joins) == list(expected.joins), what


class Harness:
    """One run of one workflow, driven through the real engine, driver and storage."""

    def __init__(self, storage: PostgresStorage, workflow: type[Workflow], seed: int) -> None:
        self.storage = storage
        self.definition = definition(workflow)
        self.clock = FakeClock(T0)
        registry = WorkflowRegistry([definition(w) for w in WORKFLOWS])
        env = RuntimeEnv(storage=storage, registry=registry, clock=self.clock, telemetry=False)
        self.driver = Driver(env, runner="refresh-test")
        self.rng = random.Random(seed)
        self.seed = seed
        self.run_id = f"run-{uuid.uuid4().hex}"
        self.held: list[tuple[Instance, bool]] = []  # (snapshot, read with get)
        self.latest: Instance | None = None  # the stored revision, as the last write left it
        self.writes = 0
        self.refreshes = 0

    # -- checking ---------------------------------------------------------------------------

    async def check(self, written: Instance | None = None) -> Instance:
        """After a write: ``refresh`` of every held snapshot equals ``get``; the snapshot read
        now and the written instance are held from here on.

        A snapshot read with ``get`` must refresh to exactly what ``get`` reads, down to the
        order of keys inside stored data; a written one only to an equal instance (the writer's
        dicts keep the caller's key order, JSONB does not), steps, results, joins and history
        still in the stored order.
        """
        current = await self.storage.get(self.run_id)
        self.writes += 1
        if written is not None:
            assert_same(written, current, f"seed {self.seed}: written != stored", exact=False)
        for held, read in [*self.held, *([] if written is None else [(written, False)])]:
            refreshed = await self.storage.refresh(held)
            self.refreshes += 1
            what = (
                f"seed {self.seed}, write {self.writes}: refresh from revision {held.revision}"
                f" (now {current.revision}, {'read' if read else 'written'})"
            )
            assert_same(refreshed, current, what, exact=read)
            if held.revision == current.revision:
                assert refreshed is held, what
            else:
                assert refreshed is not held, what
        self.held.append((current, True))
        if written is not None:
            self.held.append((written, False))
        # the next write starts from the written instance or from the one read back
        self.latest = written if written is not None and self.rng.random() < 0.5 else current
        return current

    @property
    def current(self) -> Instance:
        assert self.latest is not None
        return self.latest

    def tick(self) -> None:
        self.clock.advance(self.rng.choice([0, 0.001, 1, 2.5]))

    # -- writing through the engine ---------------------------------------------------------

    async def start(self, initial: dict[str, Any] | None = None) -> None:
        decision = engine.start(
            self.definition,
            instance_id=f"refresh::{self.run_id}",
            run_id=self.run_id,
            family=self.definition.family,
            initial=initial or {},
            now=self.clock.now(),
            metadata={"seed": self.seed},
        )
        await self.driver.create(self.definition, decision)
        await self.check(decision.instance)

    async def apply(self, inputs: list[engine.Input]) -> None:
        """Save ``inputs`` by one of the driver's write paths, chosen at random, and check."""
        self.tick()
        before = self.current
        path = self.rng.choice(["apply", "stored", "held", "all", "all_held"])
        if len(inputs) > 1 and path in ("all", "all_held"):
            held = before if path == "all_held" else None
            pairs: list[tuple[engine.Input, float | None]] = [(i, None) for i in inputs]
            applied = await self.driver.apply_all(self.run_id, pairs, held=held)
            await self._checked(applied.decision)
            return
        for input in inputs:
            if path == "apply":
                decision = await self.driver.apply(self.definition, self.current, input)
            else:
                held = self.current if path == "held" else None
                fit = not isinstance(input, engine.Cancel)
                decision = (
                    await self.driver.apply_stored(self.run_id, input, held=held, fit=fit)
                ).decision
            await self._checked(decision)

    async def _checked(self, decision: engine.Decision) -> None:
        if decision.changed:
            await self.check(decision.instance)

    def outcome(self, key: str, *, fail_rate: float) -> engine.StepFinished:
        """What step ``key``'s current attempt returned: a failure now and then, ``Async``
        for a wait, else ``Ok`` with a result and some runtime metadata."""
        node = self.definition.nodes[key]
        state = self.current.steps[key]
        raw: object
        if issubclass(node.step, WaitForEvent):
            raw = Async()
        elif self.rng.random() < fail_rate:
            raw = Error(f"flaky {key} attempt {state.attempt}")
        else:
            event = sorted(node.routed_events)[0]
            updates = {"key": key, "attempt": state.attempt, "seed": self.seed}
            if self.rng.random() < 0.3:
                updates["blob"] = "x" * self.rng.randrange(1, 200)
            metadata = {f"m_{key}": self.rng.randrange(100)} if self.rng.random() < 0.3 else {}
            raw = Ok(event, updates, metadata=metadata)
        return engine.StepFinished(key, state.attempt, engine.interpret(node, raw))

    async def run_active(self, *, fail_rate: float = 0.0, batch: int = 3) -> None:
        """Finish the active steps in random order and random batches until none is active."""
        while True:
            instance = self.current
            if instance.is_terminal:
                return
            active = [k for k, s in instance.steps.items() if s.status is StepStatus.ACTIVE]
            if not active:
                return
            self.rng.shuffle(active)
            chosen = active[: self.rng.randint(1, batch)]
            await self.apply([self.outcome(key, fail_rate=fail_rate) for key in chosen])

    # -- writes of other kinds, straight through storage.put --------------------------------

    async def put(
        self, instance: Instance, previous: Instance | None, changes: engine.Changes | None = None
    ) -> None:
        await self.storage.put(instance, previous, changes)
        await self.check(instance)

    def next_revision(self, **fields: Any) -> Instance:
        self.tick()
        base = self.current
        return dataclasses.replace(
            base, revision=base.revision + 1, updated_at=self.clock.now(), **fields
        )


@pytest.fixture
def make_harness(pg_storage: PostgresStorage) -> Any:
    def make(workflow: type[Workflow], seed: int = 0) -> Harness:
        return Harness(pg_storage, workflow, seed)

    return make


# ---------------------------------------------------------------------------------------------
# Runs driven by the engine


@pytest.mark.parametrize("seed", range(4))
async def test_linear_chain(make_harness: Any, seed: int) -> None:
    run: Harness = make_harness(RefreshChain, seed)
    await run.start({"order": seed, "items": [1, 2, 3]})
    await run.run_active(fail_rate=0.2)
    assert run.current.status is Status.COMPLETED
    assert len(run.current.context.steps) == 7  # six steps and Done


@pytest.mark.parametrize("seeds", [range(10), range(10, 20)])
async def test_fan_out_5(make_harness: Any, seeds: range) -> None:
    for seed in seeds:  # one database for ten runs: each test's database costs ~0.5 s
        run: Harness = make_harness(RefreshFan5, seed)
        await run.start()
        await run.run_active(fail_rate=0.25, batch=3)
        assert run.current.status is Status.COMPLETED, seed
        assert not run.current.joins  # the join fired: its rows were deleted


@pytest.mark.parametrize("seed", range(4))
async def test_fan_out_30(make_harness: Any, seed: int) -> None:
    run: Harness = make_harness(RefreshFan30, seed)
    await run.start({"wide": True})
    await run.run_active(fail_rate=0.15, batch=4)
    assert run.current.status is Status.COMPLETED
    assert not run.current.joins
    assert len(run.current.context.steps) == 34  # 33 steps and Done


async def test_fan_out_join_observed_mid_way(make_harness: Any) -> None:
    """The join's state is held while members arrive, then refreshed after it fired."""
    run: Harness = make_harness(RefreshFan5, 99)
    await run.start()
    await run.apply([run.outcome("refresh_fan5_start", fail_rate=0)])
    branches = [f"refresh_fan5_branch{i}" for i in (3, 0, 4, 1)]
    for key in branches:
        await run.apply([run.outcome(key, fail_rate=0)])
    assert run.current.joins  # four of five members arrived
    await run.apply([run.outcome("refresh_fan5_branch2", fail_rate=0)])
    assert not run.current.joins
    await run.run_active()
    assert run.current.status is Status.COMPLETED


@pytest.mark.parametrize("seed", range(3))
async def test_retries_exhausted_fail_the_run(make_harness: Any, seed: int) -> None:
    run: Harness = make_harness(RefreshFragile, seed)
    await run.start()
    await run.run_active(fail_rate=1.0)
    assert run.current.status is Status.FAILED
    assert run.current.error is not None
    refreshed = await run.storage.refresh(run.held[0][0])
    assert refreshed.status is Status.FAILED


@pytest.mark.parametrize("seed", range(4))
async def test_wait_for_event_resumed(make_harness: Any, seed: int) -> None:
    run: Harness = make_harness(RefreshWaiting, seed)
    await run.start()
    await run.apply([run.outcome("refresh_prepare", fail_rate=0)])
    # one wait is resumed before it waits (buffered in the inbox), the other after
    early, late = run.rng.sample(["refresh_approval", "refresh_shipment"], 2)
    await run.apply([engine.Resume("received", {"early": True, "seed": seed}, early)])
    assert run.current.inbox
    await run.run_active()  # both waits now: the buffered resume is delivered
    assert run.current.waiting_steps == (late,)
    run.tick()
    at = run.clock.now() + timedelta(seconds=30)
    await run.apply([engine.ScheduleResume(late, "received", {"scheduled": True}, at, "s1")])
    assert run.current.scheduled
    await run.apply([engine.Resume("received", {"late": True}, late)])
    assert not run.current.scheduled
    await run.run_active()
    assert run.current.status is Status.COMPLETED
    assert run.current.context.steps[late] is not None


@pytest.mark.parametrize("seed", range(3))
async def test_cancel(make_harness: Any, seed: int) -> None:
    run: Harness = make_harness(RefreshFan5, seed)
    await run.start()
    await run.apply([run.outcome("refresh_fan5_start", fail_rate=0)])
    await run.apply([run.outcome(f"refresh_fan5_branch{i}", fail_rate=0.5) for i in (0, 1)])
    await run.apply([engine.Cancel("changed my mind")])
    assert run.current.status is Status.CANCELLED
    late = run.outcome("refresh_fan5_branch2", fail_rate=0)
    decision = await run.driver.apply(run.definition, run.current, late)
    assert not decision.changed  # terminal: nothing more is written
    stored = await run.storage.get(run.run_id)
    for held, read in run.held:
        assert_same(await run.storage.refresh(held), stored, "end", exact=read)


# ---------------------------------------------------------------------------------------------
# Writes of other kinds


async def test_rewritten_whole_by_another_writer(make_harness: Any) -> None:
    """``put`` without a previous state writes the whole run ("full"): refresh from every
    older snapshot still equals ``get``, and engine writes after it merge too."""
    run: Harness = make_harness(RefreshFan5, 7)
    await run.start({"a": 1})
    await run.apply([run.outcome("refresh_fan5_start", fail_rate=0)])
    await run.apply([run.outcome("refresh_fan5_branch0", fail_rate=0)])
    await run.put(run.next_revision(), None)  # the same run, written whole
    await run.apply([run.outcome("refresh_fan5_branch1", fail_rate=0)])
    context = Context({"a": 2, "b": [1, 2]}, dict(run.current.context.steps))
    await run.put(run.next_revision(context=context), None)  # whole, with another initial
    # whole again, without branch0's result and state: a full write leaves no stale part
    results = {k: v for k, v in run.current.context.steps.items() if k != "refresh_fan5_branch0"}
    steps = {k: v for k, v in run.current.steps.items() if k != "refresh_fan5_branch0"}
    context = Context(run.current.context.initial, results)
    await run.put(run.next_revision(context=context, steps=steps), None)
    assert "refresh_fan5_branch0" not in run.current.steps
    await run.run_active(fail_rate=0.2)
    await run.put(run.next_revision(metadata={"rewritten": True}), None)
    assert run.current.status is Status.COMPLETED


async def test_result_and_step_state_replaced(make_harness: Any) -> None:
    """A result replaced in place, with and without declared changes, and a step's state."""
    run: Harness = make_harness(RefreshChain, 3)
    await run.start()
    for _ in range(3):
        await run.apply([run.outcome(next(iter(run.current.active_steps)), fail_rate=0)])
    first = next(iter(run.current.context.steps))
    results = dict(run.current.context.steps)
    results[first] = {"replaced": 1}
    replaced = run.next_revision(context=Context(run.current.context.initial, results))
    await run.put(replaced, run.current)  # compared with previous by identity
    results = dict(run.current.context.steps)
    results[first] = {"replaced": 2, "more": "y" * 50}
    replaced = run.next_revision(context=Context(run.current.context.initial, results))
    await run.put(replaced, run.current, engine.Changes(results=[first]))
    active = next(iter(run.current.active_steps))
    steps = dict(run.current.steps)
    steps[active] = dataclasses.replace(steps[active], attempt=steps[active].attempt + 1)
    await run.put(run.next_revision(steps=steps), run.current, engine.Changes(steps=[active]))
    await run.run_active()
    assert run.current.status is Status.COMPLETED
    assert run.current.context.steps[first] == {"replaced": 2, "more": "y" * 50}


async def test_steps_removed_and_reordered(make_harness: Any) -> None:
    """Parts deleted (steps, results) and reordered: the stored order must be what ``get``
    reads, from every held snapshot."""
    run: Harness = make_harness(RefreshChain, 5)
    await run.start()
    for _ in range(4):
        await run.apply([run.outcome(next(iter(run.current.active_steps)), fail_rate=0)])
    keys = list(run.current.steps)
    # the survivors are new objects, written again at their new positions (the very same
    # objects would keep their old positions, and a part appended later could then tie
    # with one of them: the storage's own business, not refresh's)
    steps = {k: dataclasses.replace(v) for k, v in run.current.steps.items() if k != keys[1]}
    results = {k: dict(v) for k, v in run.current.context.steps.items() if k != keys[1]}
    shrunk = run.next_revision(steps=steps, context=Context(run.current.context.initial, results))
    await run.put(shrunk, run.current)
    # reordered: every state a new object, so every part is written again at its new
    # position (the same objects reordered keep their stored positions: the storage writes
    # only parts that are not the previous revision's very objects)
    reordered = {k: dataclasses.replace(v) for k, v in reversed(list(run.current.steps.items()))}
    await run.put(run.next_revision(steps=reordered), run.current)
    steps = dict(run.current.steps)
    steps[keys[1]] = StepState(StepStatus.COMPLETED, attempt=1)
    await run.put(run.next_revision(steps=steps), run.current)  # back, at the end
    await run.run_active()
    assert run.current.status is Status.COMPLETED


async def test_history_rewritten(make_harness: Any) -> None:
    """History truncated and replaced (written whole again), then appended to again."""
    run: Harness = make_harness(RefreshChain, 11)
    await run.start()
    for _ in range(3):
        await run.apply([run.outcome(next(iter(run.current.active_steps)), fail_rate=0.3)])
    history = run.current.history
    await run.put(run.next_revision(history=history[:2]), run.current)
    await run.apply([run.outcome(next(iter(run.current.active_steps)), fail_rate=0)])
    # the same length, the first entry replaced: the others are new objects too, else the
    # storage takes the history for appended to (it compares the last entry by identity)
    note = HistoryEntry(run.clock.now(), HistoryKind.STARTED, data={"note": "rewritten"})
    rest = tuple(dataclasses.replace(entry) for entry in run.current.history[1:])
    await run.put(run.next_revision(history=(note, *rest)), run.current)
    await run.put(run.next_revision(history=()), run.current)
    await run.run_active()
    assert run.current.status is Status.COMPLETED


async def test_transaction_writes_and_many_revisions(make_harness: Any) -> None:
    """A long history (a retried fan-out, one result per write, through every path):
    refresh from the very first revision after dozens of writes."""
    run: Harness = make_harness(RefreshFan5, 21)
    await run.start()
    await run.run_active(fail_rate=0.3, batch=1)
    assert run.current.status in (Status.COMPLETED, Status.FAILED)
    assert run.current.revision > 8
    assert len(run.current.history) > 10


# ---------------------------------------------------------------------------------------------
# The edges of the contract


async def test_held_current_is_returned_itself(make_harness: Any) -> None:
    run: Harness = make_harness(RefreshChain, 1)
    await run.start()
    stored = await run.storage.get(run.run_id)
    assert await run.storage.refresh(stored) is stored
    await run.apply([run.outcome(next(iter(run.current.active_steps)), fail_rate=0)])
    stored = await run.storage.get(run.run_id)
    assert await run.storage.refresh(stored) is stored
    # whatever it holds: an instance at the stored revision is taken as current
    assert await run.storage.refresh(run.current) is run.current


async def test_deleted_run_raises(make_harness: Any) -> None:
    run: Harness = make_harness(RefreshFan5, 2)
    await run.start()
    await run.apply([run.outcome("refresh_fan5_start", fail_rate=0)])
    await run.apply([run.outcome("refresh_fan5_branch0", fail_rate=0)])
    await run.storage.delete(run.run_id)
    for held, _ in run.held:
        with pytest.raises(InstanceNotFoundError):
            await run.storage.refresh(held)
    with pytest.raises(InstanceNotFoundError):
        await run.storage.get(run.run_id)


async def test_never_stored_run_raises(make_harness: Any) -> None:
    run: Harness = make_harness(RefreshChain, 0)
    await run.start()
    stranger = dataclasses.replace(run.current, run_id=f"run-{uuid.uuid4().hex}")
    with pytest.raises(InstanceNotFoundError):
        await run.storage.refresh(stranger)


async def test_runs_do_not_mix(make_harness: Any) -> None:
    """Two runs written in turn: refresh of one never sees the other's parts."""
    one: Harness = make_harness(RefreshFan5, 31)
    two: Harness = make_harness(RefreshFan5, 32)
    await one.start({"who": "one"})
    await two.start({"who": "two"})
    while not (one.current.is_terminal and two.current.is_terminal):
        for run in (one, two):
            active = list(run.current.active_steps)
            if active:
                await run.apply([run.outcome(run.rng.choice(active), fail_rate=0.2)])
        for run in (one, two):
            stored = await run.storage.get(run.run_id)
            for held, read in run.held:
                assert_same(await run.storage.refresh(held), stored, "two runs", exact=read)
    assert one.current.context.initial == {"who": "one"}

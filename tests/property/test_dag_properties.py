"""Property-based tests: random valid DAGs run to Done exactly once per step; broken ones fail.

The pure tests drive ``hephaestus._core.engine`` the way a runner would, but let Hypothesis
choose which pending step finishes next, which event it emits, and whether it first goes
``Async`` (resumed externally, by its timer, or by a resume that arrived early). Invalid graphs
are derived from valid ones by one known breakage each. A few examples also go through the real
local runner.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event as hypothesis_event
from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus import (
    Async,
    Config,
    Hephaestus,
    HistoryKind,
    Instance,
    Ok,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowDefinition,
    WorkflowDefinitionError,
    WorkflowRegistry,
)
from hephaestus._core import engine
from hephaestus.errors import IssueCode
from hephaestus.testing import FakeClock, run_until_idle
from tests.property._graphs import DONE, Blueprint, blueprints, build, closure
from tests.property._reference import interpret

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESOLVED = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})
FINISHED = frozenset({HistoryKind.STEP_COMPLETED, HistoryKind.STEP_RESUMED})


def definition_of(workflow: type[Workflow]) -> WorkflowDefinition:
    definition = workflow.definition()
    assert isinstance(definition, WorkflowDefinition)
    return definition


def keys_by_name(definition: WorkflowDefinition) -> dict[str, str]:
    """Blueprint step name -> context key."""
    return {node.step.__name__: key for key, node in definition.nodes.items()}


def allowed_configs(
    blueprint: Blueprint, definition: WorkflowDefinition, instance: Instance, key: str
) -> list[Mapping[str, str] | None]:
    """The configs ``key`` may be activated with: one of its taken incoming edges' configs.

    When no taken edge carries a config the step gets ``None``.
    """
    name = definition.nodes[key].step.__name__
    if key == definition.start.key:
        return [blueprint.start_config]
    found: list[Mapping[str, str] | None] = []
    for parent in definition.nodes[key].predecessors:
        state = instance.steps.get(parent)
        if state is None or state.status is not StepStatus.COMPLETED or state.event is None:
            continue
        source = definition.nodes[parent].step.__name__
        if name in blueprint.transitions[(source, state.event)]:
            found.append(blueprint.configs.get((source, state.event, name)))
    with_config: list[Mapping[str, str] | None] = [c for c in found if c is not None]
    return with_config or [None]


def ancestors(definition: WorkflowDefinition, key: str) -> set[str]:
    parents = {k: sorted(node.predecessors) for k, node in definition.nodes.items()}
    return closure(parents, key) - {key}


# ---------------------------------------------------------------------------------------------
# A runner simulated over the pure engine


@dataclass
class Simulation:
    """Everything a simulated run did, for the checks after it ends."""

    blueprint: Blueprint
    definition: WorkflowDefinition
    instance: Instance
    now: datetime = T0
    pending: dict[str, engine.RunStep] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    timers: dict[str, engine.StartTimer] = field(default_factory=dict)
    inbox: dict[str, list[tuple[str, dict[str, object]]]] = field(default_factory=dict)
    """Resumes sent before their step waited, oldest first: the first is delivered on Async."""
    discarded: collections.Counter[str] = field(default_factory=collections.Counter)
    buffered: int = 0
    dispatched: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, object]] = field(default_factory=dict)

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def take(self, decision: engine.Decision) -> list[engine.Command]:
        """Adopt a decision, checking every command it issues; returns the commands."""
        assert decision.changed
        assert decision.instance.revision == self.instance.revision + 1
        self.instance = decision.instance
        steps = self.instance.steps
        for command in decision.commands:
            if isinstance(command, engine.RunStep):
                key = command.step
                assert not self.definition.nodes[key].is_done, "Done is applied inline"
                assert key not in self.dispatched, f"{key} dispatched twice"
                assert (command.attempt, command.not_before) == (1, None)
                assert steps[key].status is StepStatus.ACTIVE
                # Joins never fire early: every ancestor, not only each predecessor, is settled.
                early = {
                    a
                    for a in ancestors(self.definition, key)
                    if a not in steps or steps[a].status not in RESOLVED
                }
                assert not early, f"{key} dispatched before {sorted(early)} settled"
                allowed = allowed_configs(self.blueprint, self.definition, self.instance, key)
                assert command.config in allowed, (key, command.config, allowed)
                assert steps[key].config == command.config
                self.dispatched.append(key)
                self.pending[key] = command
            elif isinstance(command, engine.StartTimer):
                assert command.step in self.waiting
                self.timers[command.step] = command
            elif isinstance(command, engine.CancelTimer):
                assert self.timers.pop(command.step, None) is not None
            else:
                raise AssertionError(f"unexpected command {command!r}")
        # Resumes kept for a step that was skipped or finished without waiting are dropped.
        for key in [k for k in self.inbox if k in steps and steps[k].status in RESOLVED]:
            self.discarded[key] += len(self.inbox.pop(key))
        return list(decision.commands)

    def buffer(self, key: str, event: str) -> None:
        """Send a resume to ``key`` before it waits (it may not even have been reached)."""
        payload: dict[str, object] = {"early": key, "n": self.buffered}
        self.buffered += 1
        self.take(
            engine.resume(
                self.definition,
                self.instance,
                event=event,
                payload=payload,
                now=self.tick(),
                step=key,
            )
        )
        assert self.instance.history[-1].kind is HistoryKind.RESUME_BUFFERED
        self.inbox.setdefault(key, []).append((event, payload))

    def finished(self, key: str, event: str, data: dict[str, object], *, how: str) -> None:
        hypothesis_event(how)  # shown by pytest --hypothesis-show-statistics
        self.choices[self.definition.nodes[key].step.__name__] = event
        self.results[key] = data
        state = self.instance.steps[key]
        assert (state.status, state.event) == (StepStatus.COMPLETED, event)


def simulate(blueprint: Blueprint, data: st.DataObject) -> Simulation:
    """Run ``blueprint`` to the end, letting Hypothesis make every runner and step choice."""
    definition = definition_of(build(blueprint))
    start = engine.start(
        definition, instance_id="prop::x", run_id="r1", family="prop", initial={}, now=T0
    )
    # Seed with the instance one revision back, so ``take`` checks the first decision too.
    sim = Simulation(
        blueprint, definition, replace(start.instance, revision=start.instance.revision - 1)
    )
    sim.take(start)
    nodes = definition.nodes
    for _ in range(8 * len(nodes)):
        if not sim.pending and not sim.waiting:
            break
        assert sim.instance.status in (Status.RUNNING, Status.WAITING)
        options = [("run", key) for key in sorted(sim.pending)]
        options += [("wake", key) for key in sorted(sim.waiting)]
        if sim.buffered < 3:
            unreached = sorted(k for k in nodes if k not in sim.instance.steps)
            options += [("buffer", key) for key in unreached if not nodes[key].is_done]
        action, key = data.draw(st.sampled_from(options), label="next")
        event = data.draw(st.sampled_from(nodes[key].step.events), label=f"{key} emits")
        if action == "run":
            _run(sim, key, event, data)
        elif action == "wake":
            _wake(sim, key, event, data)
        else:
            sim.buffer(key, event)
        assert set(sim.instance.active_steps) == set(sim.pending)
        assert set(sim.instance.waiting_steps) == sim.waiting
        assert len(sim.instance.inbox) == sum(len(v) for v in sim.inbox.values())
        # A restart at this point would re-issue exactly the outstanding work.
        recovered = engine.recover(sim.instance)
        outstanding = [*sim.pending.values(), *sim.timers.values()]
        assert len(recovered) == len(outstanding)
        assert all(command in outstanding for command in recovered)
        if sim.instance.is_terminal:
            assert not sim.pending, f"completed while {sorted(sim.pending)} still ran"
            assert not sim.waiting, f"completed while {sorted(sim.waiting)} still waited"
    # An "all" join skipped on every path to Done stalls the run: it fails, nothing left to do.
    if sim.instance.status is not Status.COMPLETED:
        assert sim.instance.status is Status.FAILED
        assert sim.instance.error is not None
        assert sim.instance.error.kind == "stalled"
    return sim


def _run(sim: Simulation, key: str, event: str, data: st.DataObject) -> None:
    command = sim.pending.pop(key)
    how = data.draw(st.sampled_from(["ok", "ok", "async", "early resume"]), label=f"{key} does")

    def apply(outcome: engine.Outcome) -> None:
        sim.take(
            engine.apply_result(
                sim.definition,
                sim.instance,
                step=key,
                attempt=command.attempt,
                outcome=outcome,
                now=sim.tick(),
            )
        )

    if how == "ok":
        result: dict[str, object] = {"by": key}
        apply(Ok(event, updates=result))
        sim.finished(key, event, result, how="ok")
    else:
        if how == "early resume":
            # The resume arrives while the step still runs; it is kept until the step waits.
            sim.buffer(key, event)
        timeout = data.draw(st.none() | st.integers(min_value=1, max_value=60), label="timeout")
        sim.waiting.add(key)
        kept = sim.inbox.pop(key, [])
        if timeout is None:
            apply(Async())
        else:
            timer_event = data.draw(st.sampled_from(sim.definition.nodes[key].step.events))
            apply(Async(timeout=timeout, timeout_event=timer_event))
        if kept:
            # The oldest kept resume is delivered at once (its timer cancelled); the rest dropped.
            sim.waiting.discard(key)
            sim.discarded[key] += len(kept) - 1
            sim.finished(key, kept[0][0], kept[0][1], how="resumed from inbox")
        else:
            assert sim.instance.steps[key].status is StepStatus.WAITING
            assert (key in sim.timers) == (timeout is not None)
    # A duplicate delivery of the same attempt's result changes nothing.
    again = engine.apply_result(
        sim.definition, sim.instance, step=key, attempt=1, outcome=Ok(event), now=sim.tick()
    )
    assert not again.changed


def _wake(sim: Simulation, key: str, event: str, data: st.DataObject) -> None:
    sim.waiting.discard(key)
    timer = sim.timers.get(key)
    if timer is not None and data.draw(st.booleans(), label=f"{key} times out"):
        sim.now = max(sim.now, timer.at)
        commands = sim.take(
            engine.fire_timer(sim.definition, sim.instance, step=key, at=timer.at, now=sim.now)
        )
        assert not any(isinstance(c, engine.CancelTimer) for c in commands)
        del sim.timers[key]
        sim.finished(key, timer.event, {}, how="timed out")
        return
    payload: dict[str, object] = {"resumed": key}
    # Omit step= when no other waiting step declares the event, so the engine must find it.
    others = any(event in sim.definition.nodes[k].events for k in sim.waiting)
    named = key if others or data.draw(st.booleans(), label="name the step") else None
    commands = sim.take(
        engine.resume(
            sim.definition, sim.instance, event=event, payload=payload, now=sim.tick(), step=named
        )
    )
    if timer is not None:
        assert engine.CancelTimer(key) in commands
        # The timer that was cancelled may still fire late; it is ignored.
        late = engine.fire_timer(sim.definition, sim.instance, step=key, at=timer.at, now=timer.at)
        assert not late.changed
    sim.finished(key, event, payload, how="resumed" if named else "resumed by event only")


# ---------------------------------------------------------------------------------------------
# Checks on a finished simulated run


def policies_by_name(definition: WorkflowDefinition) -> dict[str, str | None]:
    return {node.step.__name__: node.join for node in definition.nodes.values()}


def by_key(definition: WorkflowDefinition, names: frozenset[str]) -> set[str]:
    keys = keys_by_name(definition)
    return {keys[name] for name in names}


def check_against_reference(blueprint: Blueprint, sim: Simulation) -> None:
    """The engine ran, skipped and never reached exactly what the reference interpreter says."""
    definition, instance = sim.definition, sim.instance
    expected = interpret(blueprint, policies_by_name(definition), sim.choices)
    done = keys_by_name(definition)[DONE]
    assert instance.status.value == expected.status
    completed = set(instance.completed_steps)
    assert completed == by_key(definition, expected.ran)
    assert set(instance.steps_in(StepStatus.SKIPPED)) == by_key(definition, expected.skipped)
    assert set(definition.nodes) - set(instance.steps) == by_key(definition, expected.unreached)
    assert set(sim.dispatched) == completed - {done}
    assert dict(instance.context.steps) == (
        {**sim.results, done: {}} if done in completed else sim.results
    )
    assert not instance.joins
    assert not instance.inbox
    assert not sim.timers
    # An inferred "any" join merges exclusive alternatives: never two of them arrive at once.
    for name, policy in policies_by_name(definition).items():
        if policy == "any" and name != DONE and name not in blueprint.joins:
            assert expected.tokens.get(name, 0) <= 1, name


def check_fan_in(blueprint: Blueprint, sim: Simulation) -> None:
    """After a taken fan-out, a step downstream of every branch settles after all branch steps."""
    keys = keys_by_name(sim.definition)
    position = settled_at(sim.instance)
    children = {keys[name]: [keys[t] for t in blueprint.targets(name)] for name in blueprint.steps}
    for (source, event), targets in blueprint.transitions.items():
        if len(targets) < 2 or sim.choices.get(source) != event:
            continue
        branches = [closure(children, keys[t]) for t in targets]
        for join in set.intersection(*branches):
            feeding = {b for b in set.union(*branches) - {join} if join in closure(children, b)}
            assert all(position[b] < position[join] for b in feeding), (source, event, join)


def settled_at(instance: Instance) -> dict[str, int]:
    """History position at which each step completed or was skipped."""
    return {
        entry.step: index
        for index, entry in enumerate(instance.history)
        if entry.step is not None
        and (entry.kind in FINISHED or entry.kind is HistoryKind.STEP_SKIPPED)
    }


def check_history(sim: Simulation) -> None:
    """One completion entry per completed step, one skip per skipped step, in dependency order."""
    instance = sim.instance
    history = instance.history
    finished = collections.Counter(e.step for e in history if e.kind in FINISHED)
    skipped = collections.Counter(e.step for e in history if e.kind is HistoryKind.STEP_SKIPPED)
    for key, state in instance.steps.items():
        if state.status is StepStatus.COMPLETED:
            assert (finished[key], skipped[key]) == (1, 0), key
        else:
            assert (finished[key], skipped[key]) == (0, 1), key
    dropped = collections.Counter(e.step for e in history if e.kind is HistoryKind.RESUME_DISCARDED)
    assert dropped == sim.discarded
    assert sum(e.kind is HistoryKind.RESUME_BUFFERED for e in history) == sim.buffered
    assert history[0].kind is HistoryKind.STARTED
    final = HistoryKind.COMPLETED if instance.status is Status.COMPLETED else HistoryKind.FAILED
    assert history[-1].kind is final
    assert sum(e.kind in (HistoryKind.COMPLETED, HistoryKind.FAILED) for e in history) == 1
    for entry in history:
        if entry.kind in FINISHED and entry.step is not None:
            assert entry.event == instance.steps[entry.step].event
    position = settled_at(instance)
    for key, node in sim.definition.nodes.items():
        for parent in node.predecessors:
            assert position[parent] < position[key], f"{key} settled before {parent}"


@settings(deadline=None, max_examples=250)
@given(blueprint=blueprints(), data=st.data())
def test_random_runs_do_what_the_reference_interpreter_does(
    blueprint: Blueprint, data: st.DataObject
) -> None:
    """Any order of results, events and resumes ends as the reference says, each step run once."""
    sim = simulate(blueprint, data)
    check_against_reference(blueprint, sim)
    check_fan_in(blueprint, sim)
    check_history(sim)


# ---------------------------------------------------------------------------------------------
# Invalid graphs derived from valid ones


def _step_ancestors(blueprint: Blueprint, step: str) -> list[str]:
    parents = {
        s: [p for p in blueprint.steps if s in blueprint.targets(p)] for s in blueprint.steps
    }
    return sorted(closure(parents, step))


Expected = tuple[IssueCode, str]
"""The issue code a broken graph must raise, and a step that issue names (field or message)."""


def add_back_edge(blueprint: Blueprint, data: st.DataObject) -> tuple[Blueprint, Expected]:
    step = data.draw(st.sampled_from(blueprint.steps))
    back_to = data.draw(st.sampled_from(_step_ancestors(blueprint, step)))  # itself included
    mutated = blueprint.replace(
        events={**blueprint.events, step: (*blueprint.events[step], "back")},
        transitions={**blueprint.transitions, (step, "back"): (back_to,)},
    )
    return mutated, (IssueCode.CYCLE, back_to)


def drop_transition(blueprint: Blueprint, data: st.DataObject) -> tuple[Blueprint, Expected]:
    dropped = data.draw(st.sampled_from(sorted(blueprint.transitions)))
    transitions = {k: v for k, v in blueprint.transitions.items() if k != dropped}
    return blueprint.replace(transitions=transitions), (IssueCode.UNHANDLED_EVENT, dropped[0])


def add_unreachable_step(blueprint: Blueprint, data: st.DataObject) -> tuple[Blueprint, Expected]:
    target = data.draw(st.sampled_from((*blueprint.steps, DONE)))
    mutated = blueprint.replace(
        steps=(*blueprint.steps, "Orphan"),
        events={**blueprint.events, "Orphan": ("e0",)},
        transitions={**blueprint.transitions, ("Orphan", "e0"): (target,)},
    )
    return mutated, (IssueCode.UNREACHABLE, "Orphan")


def add_dead_end(blueprint: Blueprint, data: st.DataObject) -> tuple[Blueprint, Expected]:
    source = data.draw(st.sampled_from(sorted(blueprint.transitions)))
    targets = blueprint.transitions[source]
    mutated = blueprint.replace(
        steps=(*blueprint.steps, "Leaf"),
        events={**blueprint.events, "Leaf": ()},
        transitions={
            **blueprint.transitions,
            source: ("Leaf",) if targets == (DONE,) else (*targets, "Leaf"),
        },
    )
    return mutated, (IssueCode.DEAD_END, "Leaf")


def collide_keys(blueprint: Blueprint, data: st.DataObject) -> tuple[Blueprint, Expected]:
    step = data.draw(st.sampled_from(blueprint.steps))
    others = [context_key_of(other) for other in blueprint.steps if other != step]
    taken = data.draw(st.sampled_from([*others, "done"]))
    return blueprint.replace(step_keys={step: taken}), (IssueCode.CONTEXT_KEY_COLLISION, step)


def context_key_of(name: str) -> str:
    return name.lower()  # generated names are S<digit>, so this is what underscore() gives


def route_undeclared_event(blueprint: Blueprint, data: st.DataObject) -> tuple[Blueprint, Expected]:
    step = data.draw(st.sampled_from(blueprint.steps))
    target = data.draw(st.sampled_from((*blueprint.steps, DONE)))
    transitions = {**blueprint.transitions, (step, "undeclared"): (target,)}
    return blueprint.replace(transitions=transitions), (IssueCode.UNDECLARED_EVENT, step)


def split_without_join(blueprint: Blueprint, data: st.DataObject) -> tuple[Blueprint, Expected]:
    step = data.draw(st.sampled_from(blueprint.steps))
    mutated = blueprint.replace(
        steps=(*blueprint.steps, "Left", "Right"),
        events={
            **blueprint.events,
            step: (*blueprint.events[step], "split"),
            "Left": ("e0",),
            "Right": ("e0",),
        },
        transitions={
            **blueprint.transitions,
            (step, "split"): ("Left", "Right"),
            ("Left", "e0"): (DONE,),
            ("Right", "e0"): (DONE,),
        },
    )
    return mutated, (IssueCode.FAN_OUT_NOT_CONVERGING, step)


Mutation = Callable[[Blueprint, st.DataObject], tuple[Blueprint, Expected]]
MUTATIONS: list[Mutation] = [
    add_back_edge,
    drop_transition,
    add_unreachable_step,
    add_dead_end,
    collide_keys,
    route_undeclared_event,
    split_without_join,
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.__name__)
@settings(deadline=None, max_examples=40)
@given(blueprint=blueprints(), data=st.data())
def test_broken_graphs_are_rejected_with_their_issue_code(
    mutation: Mutation, blueprint: Blueprint, data: st.DataObject
) -> None:
    """Breaking a valid graph in one known way fails class creation with that issue code."""
    broken, (code, step) = mutation(blueprint, data)
    with pytest.raises(WorkflowDefinitionError) as caught:
        build(broken)
    assert any(
        issue.code is code and (issue.step == step or step in issue.message)
        for issue in caught.value.issues
    ), caught.value


# ---------------------------------------------------------------------------------------------
# The real local runner


@dataclass
class Recorder:
    """Counts executions per (run, step) and what each execution saw in ``context.steps``."""

    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    seen: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    configs: dict[tuple[str, str], Config] = field(default_factory=dict)

    def record(self, config: Config, context: StepContext) -> StepResult:
        self.counts[(context.run_id, context.step)] += 1
        self.seen[(context.run_id, context.step)] = frozenset(context.steps)
        self.configs[(context.run_id, context.step)] = config
        choices: Mapping[str, str] = context.initial["choices"]
        return Ok(choices[context.step], updates={"ran": context.step})


async def _run_plans(
    workflow: type[Workflow], registry: WorkflowRegistry, plans: list[dict[str, str]]
) -> list[Instance]:
    async with Hephaestus(clock=FakeClock(), workflows=registry) as app:
        for index, plan in enumerate(plans):
            await workflow.start(f"run{index}", {"choices": plan}, app=app)
        await run_until_idle(app)
        return [await workflow.get(f"run{index}", app=app) for index in range(len(plans))]


@settings(deadline=None, max_examples=25)
@given(blueprint=blueprints(max_steps=6), data=st.data())
def test_local_runner_executes_each_taken_step_once(
    blueprint: Blueprint, data: st.DataObject
) -> None:
    """Concurrent runs on the local runner complete, running each taken step exactly once."""
    recorder = Recorder()

    async def execute_async(
        self: Step, run: StepRun, config: Config, context: StepContext
    ) -> StepResult:
        return recorder.record(config, context)

    def execute_sync(self: Step, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return recorder.record(config, context)

    sync_steps = data.draw(st.frozensets(st.sampled_from(blueprint.steps)), label="sync steps")
    workflow = build(
        blueprint, execute=execute_async, sync_steps=sync_steps, sync_execute=execute_sync
    )
    definition = definition_of(workflow)
    keys = keys_by_name(definition)
    plans = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {s: st.sampled_from(blueprint.events[s]) for s in blueprint.steps}
            ),
            min_size=1,
            max_size=3,
        ),
        label="plans",
    )
    registry = WorkflowRegistry()
    registry.register(definition)
    instances = asyncio.run(
        _run_plans(workflow, registry, [{keys[s]: e for s, e in p.items()} for p in plans])
    )
    executed_steps = sum(len(set(i.completed_steps) - {keys[DONE]}) for i in instances)
    assert sum(recorder.counts.values()) == executed_steps
    policies = policies_by_name(definition)
    for plan, instance in zip(plans, instances, strict=True):
        reference = interpret(blueprint, policies, plan)
        assert instance.status.value == reference.status, instance.error
        completed = set(instance.completed_steps)
        assert completed == by_key(definition, reference.ran)
        executed = {s for (run, s), n in recorder.counts.items() if run == instance.run_id}
        assert executed == completed - {keys[DONE]}
        assert all(n == 1 for (run, _), n in recorder.counts.items() if run == instance.run_id)
        for key in executed:
            assert instance.context.steps[key] == {"ran": key}
            parents = definition.nodes[key].predecessors & completed
            assert parents <= recorder.seen[(instance.run_id, key)], key
            config = recorder.configs[(instance.run_id, key)]
            assert config in allowed_configs(blueprint, definition, instance, key), key
        assert set(instance.steps_in(StepStatus.SKIPPED)) == set(definition.nodes) - completed

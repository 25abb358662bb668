"""Hypothesis strategies for random workflow graphs, kept as plain data until built into classes.

A ``Blueprint`` names its steps ``S0``, ``S1``, ... in topological order (every transition goes
to a later step or to ``Done``), so a valid blueprint is acyclic by construction. ``build``
turns one into real ``Step`` subclasses and a ``Workflow`` subclass, which validates it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from hypothesis import strategies as st

from hephaestus import Done, Step, Unique, Workflow, WorkflowDefinitionError
from hephaestus.errors import IssueCode

__all__ = ["DONE", "Blueprint", "blueprints", "build", "closure", "taken_path"]

DONE = "Done"
"""The name standing for the built-in ``Done`` step in a blueprint."""

Execute = Callable[..., Any]
TargetSpec = type[Step] | tuple[type[Step], Mapping[str, str]]


@dataclass(frozen=True)
class Blueprint:
    """A workflow graph as data: step names, their events and where each event leads."""

    steps: tuple[str, ...]
    """Every step but ``Done``; for generated blueprints, in topological order."""
    events: Mapping[str, tuple[str, ...]]
    transitions: Mapping[tuple[str, str], tuple[str, ...]]
    """``(step, event) -> targets``; one target is a plain transition, several a fan-out."""
    start: str = "S0"
    start_config: Mapping[str, str] | None = None
    configs: Mapping[tuple[str, str, str], Mapping[str, str]] = field(default_factory=dict)
    """``(step, event, target) -> config`` the target is activated with along that edge."""
    step_keys: Mapping[str, str] = field(default_factory=dict)
    joins: Mapping[str, str] = field(default_factory=dict)
    """``step -> "all" | "any"``: the join policy declared on that step class."""

    def targets(self, step: str) -> list[str]:
        """Every step some event of ``step`` leads to, without repeats."""
        found: list[str] = []
        for (source, _), targets in self.transitions.items():
            if source == step:
                found.extend(t for t in targets if t not in found)
        return found

    def replace(self, **changes: Any) -> Blueprint:
        return dataclasses.replace(self, **changes)


def _never_called(self: Step, *args: object) -> str:
    raise AssertionError("pure engine tests never execute steps")


def build(
    blueprint: Blueprint,
    *,
    execute: Execute = _never_called,
    sync_steps: frozenset[str] = frozenset(),
    sync_execute: Execute = _never_called,
    name: str = "tests.property.Generated",
) -> type[Workflow]:
    """Create the step classes and the workflow class (which raises if the graph is invalid).

    Steps named in ``sync_steps`` get ``sync_execute``, the others ``execute``.
    """
    classes: dict[str, type[Step]] = {DONE: Done}
    for step in blueprint.steps:
        namespace: dict[str, object] = {
            "__module__": __name__,
            "events": blueprint.events[step],
            "execute": sync_execute if step in sync_steps else execute,
        }
        if step in blueprint.step_keys:
            namespace["step_key"] = blueprint.step_keys[step]
        if step in blueprint.joins:
            namespace["join"] = blueprint.joins[step]
        classes[step] = cast(type[Step], type(step, (Step,), namespace))

    def spec(source: str, event: str, target: str) -> TargetSpec:
        config = blueprint.configs.get((source, event, target))
        return classes[target] if config is None else (classes[target], config)

    transitions: dict[tuple[type[Step], str], TargetSpec | list[TargetSpec]] = {}
    for (source, event), targets in blueprint.transitions.items():
        listed = [spec(source, event, target) for target in targets]
        transitions[(classes[source], event)] = listed[0] if len(listed) == 1 else listed
    start = classes[blueprint.start]
    namespace = {
        "__module__": __name__,
        "name": name,
        "start_step": start if blueprint.start_config is None else (start, blueprint.start_config),
        "transitions": transitions,
        "unique": Unique(key="prop"),
    }
    return cast(type[Workflow], type("Generated", (Workflow,), namespace))


def closure(edges: Mapping[str, Iterable[str]], start: str) -> set[str]:
    """``start`` and everything reachable from it (an oracle independent of the engine's)."""
    seen = {start}
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def taken_path(blueprint: Blueprint, choices: Mapping[str, str]) -> set[str]:
    """The steps that run when each step emits ``choices[step]``: the oracle for the engine."""
    taken = {blueprint.start}
    for step in blueprint.steps:  # topological order: every source is settled before its targets
        if step in taken:
            taken.update(blueprint.transitions[(step, choices[step])])
    return taken


@st.composite
def blueprints(draw: st.DrawFn, max_steps: int = 8) -> Blueprint:
    """Valid acyclic graphs with exclusive events, fan-outs, joins and several paths to Done.

    The last step ``S<n-1>`` only leads to ``Done``. Three repairs make any draw valid:
    a step nobody targets gets an edge from an earlier step (reachability), and a step
    downstream of a fan-out whose events all lead to ``Done`` has one of them rerouted to the
    last step, so every fan-out branch can reach it (convergence). Steps outside fan-outs keep
    their direct edges to ``Done``, which makes ``Done`` a join as well. Some edges (and the
    start) carry a config.
    """
    count = draw(st.integers(min_value=1, max_value=max_steps))
    last = count - 1
    done = -1
    events: list[tuple[str, ...]] = []
    targets: dict[tuple[int, str], list[int]] = {}
    for index in range(count):
        names = tuple(f"e{i}" for i in range(draw(st.integers(min_value=1, max_value=3))))
        events.append(names)
        later = list(range(index + 1, count))
        for event in names:
            kind = "done" if not later else draw(st.sampled_from(["done", "one", "fan", "fan"]))
            if kind == "done":
                chosen = [done]
            elif kind == "one" or len(later) == 1:
                chosen = [draw(st.sampled_from(later))]
            else:
                chosen = draw(st.lists(st.sampled_from(later), min_size=2, max_size=3, unique=True))
            targets[(index, event)] = chosen
    # Reachability: every step after the start is the target of some earlier step.
    for index in range(1, count):
        if any(index in t for (source, _), t in targets.items() if source < index):
            continue
        source = draw(st.integers(min_value=0, max_value=index - 1))
        event = draw(st.sampled_from(events[source]))
        if targets[(source, event)] == [done]:
            targets[(source, event)] = [index]
        else:
            targets[(source, event)].append(index)
    # Convergence: everything downstream of a fan-out can reach the last step.
    region: set[int] = set()
    stack = [node for chosen in targets.values() if len(chosen) > 1 for node in chosen]
    while stack:
        node = stack.pop()
        if node in region:
            continue
        region.add(node)
        stack.extend(t for (source, _), ts in targets.items() if source == node for t in ts)
    region.discard(done)
    reaches_last = {last}
    for index in reversed(range(count - 1)):
        outgoing = [targets[(index, event)] for event in events[index]]
        if any(t in reaches_last for ts in outgoing for t in ts):
            reaches_last.add(index)
        elif index in region:
            # Every event of this step leads straight to Done; send one to the last step.
            event = draw(st.sampled_from(events[index]))
            targets[(index, event)] = [last]
            reaches_last.add(index)
    steps = tuple(f"S{i}" for i in range(count))
    transitions = {
        (steps[index], event): tuple(DONE if t == done else steps[t] for t in chosen)
        for (index, event), chosen in targets.items()
    }
    # Some edges carry a config; a join reached along several taken edges gets one of theirs.
    configs = {
        edge: {"edge": "/".join(edge)}
        for (source, event), ts in transitions.items()
        for edge in [(source, event, t) for t in ts if t != DONE]
        if draw(st.booleans())
    }
    blueprint = Blueprint(
        steps=steps,
        events={steps[i]: events[i] for i in range(count)},
        transitions=transitions,
        start_config=draw(st.none() | st.just({"edge": "start"})),
        configs=configs,
    )
    return declare_joins(draw, blueprint)


def declare_joins(draw: st.DrawFn, blueprint: Blueprint) -> Blueprint:
    """Declare join policies: some at random, and one wherever the graph leaves it open.

    A declaration on a step with one source is ignored, and one on a join the graph decides
    overrides it; an ``all`` declared over sources that never both arrive is replaced by ``any``.
    """
    policy = st.sampled_from(["all", "any"])
    joins = {
        step: chosen
        for step in blueprint.steps
        if (chosen := draw(st.none() | st.none() | policy)) is not None
    }
    for _ in range(3):
        candidate = blueprint.replace(joins=dict(joins))
        try:
            build(candidate)
        except WorkflowDefinitionError as error:
            for issue in error.issues:
                if issue.code is IssueCode.JOIN_POLICY_REQUIRED and issue.step is not None:
                    joins[issue.step] = draw(policy)
                elif issue.code is IssueCode.JOIN_NEVER_RUNS and issue.step is not None:
                    joins[issue.step] = "any"
                else:
                    raise
        else:
            return candidate
    raise AssertionError(f"no valid join declarations for {blueprint}")

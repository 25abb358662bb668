"""Turn a workflow class's attributes into a definition, collecting every problem on the way.

All rules run and every problem is reported in one ``WorkflowDefinitionError``, each with its
``IssueCode``; nothing is half-built.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from hephaestus._core.definition import (
    Node,
    Route,
    Target,
    Transition,
    VersionedDefinition,
    WorkflowDefinition,
    is_async_step,
    is_done,
    is_step_class,
    parse_target,
)
from hephaestus._core.graph import find_cycle, reachable
from hephaestus._core.joins import JoinFacts, analyse_joins
from hephaestus._core.retry import DEFAULT_RETRY, RetryPolicy
from hephaestus._core.steps import Config, Step, context_key
from hephaestus._core.unique import Unique
from hephaestus.errors import Issue, IssueCode, WorkflowDefinitionError

__all__ = ["MISSING", "WorkflowSpec", "compile_workflow"]

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()


@dataclass
class WorkflowSpec:
    """The raw, unvalidated options of a workflow class."""

    name: str
    display: str
    start: object = MISSING
    transitions: object = MISSING
    unique: object = MISSING
    tags: object = ()
    metadata: object = field(default_factory=dict)
    version: object = MISSING
    retry: object = None
    versions: object = MISSING
    current: object = MISSING
    owner: object = None


DefinitionOf = Callable[[object], "WorkflowDefinition | VersionedDefinition | None"]


def compile_workflow(
    spec: WorkflowSpec, definition_of: DefinitionOf
) -> WorkflowDefinition | VersionedDefinition:
    """Validate ``spec`` and build its definition, or raise ``WorkflowDefinitionError``."""
    issues: list[Issue] = []
    tags = _check_tags(spec.tags, issues)
    metadata = _check_metadata(spec.metadata, issues)
    unique = _check_unique(spec, issues)
    if spec.versions is not MISSING:
        versioned = _compile_versioned(
            spec,
            unique=unique,
            tags=tags,
            metadata=metadata,
            definition_of=definition_of,
            issues=issues,
        )
        if issues or versioned is None:
            raise WorkflowDefinitionError(spec.display, issues)
        return versioned
    retry = _check_retry(spec.retry, "workflow retry", issues)
    version = _check_version(spec.version, issues)
    builder = _GraphBuilder(spec, issues)
    definition = builder.build(unique, tags, metadata, version, retry)
    if issues or definition is None:
        raise WorkflowDefinitionError(spec.display, issues)
    return definition


def _name(step: object) -> str:
    return step.__qualname__ if isinstance(step, type) else repr(step)


def _reuse_hint(step: object) -> str:
    """How to use a step class at a second place of a graph, where it is one node."""
    name = _name(step).rsplit(".", 1)[-1]
    return (
        f"a step class appears once per graph: to use {name} at a second place, route to a "
        f"subclass of it (class {name}Again({name}): pass), a step of its own with the same code"
    )


def _check_tags(tags: object, issues: list[Issue]) -> tuple[str, ...]:
    if isinstance(tags, list | tuple) and all(isinstance(tag, str) for tag in tags):
        return tuple(cast(Sequence[str], tags))
    issues.append(Issue(IssueCode.INVALID_TAGS, f"tags must be a list of strings, got {tags!r}"))
    return ()


def _json_safe(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list | tuple):
        return all(_json_safe(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_safe(v) for k, v in value.items())
    return False


def _check_metadata(metadata: object, issues: list[Issue]) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        issues.append(
            Issue(IssueCode.INVALID_METADATA, f"metadata must be a dict, got {metadata!r}")
        )
        return {}
    bad_keys = [key for key in metadata if not isinstance(key, str)]
    if bad_keys:
        issues.append(
            Issue(
                IssueCode.INVALID_METADATA,
                f"metadata keys must be strings (they must survive a JSON round trip), "
                f"got {bad_keys!r}",
            )
        )
    bad_values = {k: v for k, v in metadata.items() if not _json_safe(v)}
    if bad_values:
        issues.append(
            Issue(
                IssueCode.INVALID_METADATA,
                "metadata values must be JSON-safe (strings, numbers, booleans, None, or "
                f"lists/dicts of the same), got {bad_values!r}",
            )
        )
    return dict(metadata)


def _default_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.rsplit(".", 1)[-1].lower()) or "workflow"


def _check_unique(spec: WorkflowSpec, issues: list[Issue]) -> Unique:
    unique = spec.unique
    if unique is MISSING:
        return Unique(key=_default_key(spec.display))
    if not isinstance(unique, Unique):
        issues.append(
            Issue(IssueCode.INVALID_UNIQUE, f"unique must be a Unique(...), got {unique!r}")
        )
        return Unique(key="invalid")
    issues.extend(Issue(IssueCode.INVALID_UNIQUE, problem) for problem in unique.problems())
    return unique


def _check_retry(retry: object, what: str, issues: list[Issue]) -> RetryPolicy | None:
    if retry is None:
        return None
    if not isinstance(retry, RetryPolicy):
        issues.append(
            Issue(IssueCode.INVALID_RETRY, f"{what} must be a RetryPolicy, got {retry!r}")
        )
        return None
    problems = retry.problems()
    issues.extend(Issue(IssueCode.INVALID_RETRY, f"{what}: {problem}") for problem in problems)
    return None if problems else retry


def _valid_events(events: object) -> bool:
    return (
        isinstance(events, tuple | list)
        and all(isinstance(e, str) and e for e in events)
        and len(set(events)) == len(events)
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_version(version: object, issues: list[Issue]) -> int:
    if version is MISSING:
        return 1
    if not _positive_int(version):
        issues.append(
            Issue(IssueCode.INVALID_VERSION, f"version must be a positive integer, got {version!r}")
        )
        return 1
    return cast(int, version)


def _compile_versioned(
    spec: WorkflowSpec,
    *,
    unique: Unique,
    tags: tuple[str, ...],
    metadata: dict[str, Any],
    definition_of: DefinitionOf,
    issues: list[Issue],
) -> VersionedDefinition | None:
    if spec.version is not MISSING:
        issues.append(Issue(IssueCode.INVALID_VERSIONS, "cannot use both 'version' and 'versions'"))
    if spec.retry is not None:
        issues.append(
            Issue(
                IssueCode.INVALID_OPTION,
                "a versioned workflow runs no steps itself; set retry on its version classes",
            )
        )
    if spec.start is not MISSING or spec.transitions is not MISSING:
        issues.append(
            Issue(
                IssueCode.INVALID_OPTION,
                "a versioned workflow lists its 'versions'; it defines no start or transitions",
            )
        )
    versions = spec.versions
    if not isinstance(versions, Mapping) or not versions:
        issues.append(
            Issue(
                IssueCode.INVALID_VERSIONS,
                "versions must be a non-empty dict of {version: workflow class}, "
                f"got {versions!r}",
            )
        )
        return None
    found: dict[int, WorkflowDefinition] = {}
    for key, workflow in versions.items():
        if not _positive_int(key):
            issues.append(
                Issue(
                    IssueCode.INVALID_VERSIONS,
                    f"version keys must be positive integers, got {key!r}",
                )
            )
            continue
        definition = definition_of(workflow)
        if not isinstance(definition, WorkflowDefinition):
            issues.append(
                Issue(
                    IssueCode.INVALID_VERSIONS,
                    f"version {key} must be a (non-versioned) Workflow class, got {workflow!r}",
                )
            )
            continue
        if definition.version != key:
            issues.append(
                Issue(
                    IssueCode.INVALID_VERSIONS,
                    f"version mismatch: {_name(workflow)} declares version = "
                    f"{definition.version} but is listed under {key}",
                )
            )
            continue
        found[key] = definition
    current = spec.current
    if current is MISSING:
        current = max(found) if found else 1
    elif not _positive_int(current) or current not in versions:
        issues.append(
            Issue(
                IssueCode.INVALID_VERSIONS,
                f"current = {current!r} is not a key of versions (available: "
                f"{sorted(k for k in versions if _positive_int(k))})",
            )
        )
    if issues:
        return None
    return VersionedDefinition(
        name=spec.name,
        versions=found,
        current=cast(int, current),
        unique=unique,
        tags=tags,
        metadata=metadata,
        owner=spec.owner,
    )


def _execute_problem(step: type[Step]) -> str | None:
    """Why runners could not call ``step().execute(run, config, context)``, or ``None``.

    Checked on the class, without instantiating the step: a plain or ``async`` method that
    binds ``self`` and three positional arguments passes (defaults, ``*args`` and ``**kwargs``
    included), as does a callable object. A descriptor it cannot see through is left to the
    call at run time rather than rejected on a guess.
    """
    raw = inspect.getattr_static(step, "execute")
    if isinstance(raw, staticmethod | classmethod):
        return f"is a {type(raw).__name__}, so it would not receive the step instance"
    execute: object = step.execute  # what instances get, unbound (a partialmethod resolves here)
    if inspect.isfunction(execute):
        if inspect.isgeneratorfunction(execute) or inspect.isasyncgenfunction(execute):
            return "is a generator (it yields); return the step's result instead"
        arguments: tuple[object, ...] = (step, None, None, None)  # self, run, config, context
    elif not callable(execute):
        return f"is not callable (got {execute!r})"
    elif hasattr(type(raw), "__get__"):
        return None
    else:
        arguments = (None, None, None)  # a callable object: instances get it as it is
    try:
        signature = inspect.signature(execute)
    except (TypeError, ValueError):
        return None  # no signature to read (some builtins): the call decides at run time
    try:
        signature.bind(*arguments)
    except TypeError as exc:
        call = "(self, run, config, context)" if len(arguments) == 4 else "(run, config, context)"
        return f"takes {signature}, which cannot be called with {call}: {exc}"
    return None


@dataclass
class _Edge:
    source: type[Step]
    event: str
    targets: list[tuple[type[Step], Config]]
    route: Route | None


class _GraphBuilder:
    """Extracts the step graph from ``start``/``transitions`` and checks the graph rules."""

    def __init__(self, spec: WorkflowSpec, issues: list[Issue]) -> None:
        self.spec = spec
        self.issues = issues
        self.steps: list[type[Step]] = []  # every step, in order of first appearance
        self.edges: list[_Edge] = []

    def add(self, code: IssueCode, message: str, step: type[Step] | None = None) -> None:
        self.issues.append(Issue(code, message, None if step is None else _name(step)))

    def note_step(self, step: type[Step]) -> None:
        if step not in self.steps:
            self.steps.append(step)

    def build(
        self,
        unique: Unique,
        tags: tuple[str, ...],
        metadata: dict[str, Any],
        version: int,
        retry: RetryPolicy | None,
    ) -> WorkflowDefinition | None:
        before = len(self.issues)
        start = self.parse_start()
        self.parse_transitions()
        if start is None:
            return None
        # With a malformed start or transition the graph is incomplete, so graph and event
        # rules would report dead ends and unreachable steps that are only parse artefacts.
        parsed = len(self.issues) == before
        self.check_steps()
        keys = self.check_keys()
        adjacency = self.adjacency()
        if parsed:
            self.check_graph(start[0], adjacency)
            self.check_events()
            self.check_configs(start)
        if self.issues:
            return None
        definition = self.assemble(
            start=start,
            keys=keys,
            adjacency=adjacency,
            unique=unique,
            tags=tags,
            metadata=metadata,
            version=version,
            retry=retry,
        )
        return None if self.issues else definition

    def parse_start(self) -> tuple[type[Step], Config] | None:
        raw = self.spec.start
        if raw is MISSING:
            self.add(IssueCode.MISSING_START, "workflow must define start = <Step>")
            return None
        start = parse_target(raw)
        if start is None:
            self.add(
                IssueCode.INVALID_START,
                f"start must be a Step subclass or (Step, config dict), got {raw!r}",
            )
            return None
        self.note_step(start[0])
        return start

    def parse_transitions(self) -> None:
        raw = self.spec.transitions
        if raw is MISSING:
            return
        if not isinstance(raw, Mapping):
            self.add(
                IssueCode.INVALID_TRANSITIONS,
                f"transitions must be a dict of {{(Step, event): target}}, got {raw!r}",
            )
            return
        for key, value in raw.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                self.add(
                    IssueCode.INVALID_SOURCE,
                    f"transition keys must be (Step, event) pairs, got {key!r}",
                )
                continue
            source, event = key
            if not is_step_class(source):
                self.add(
                    IssueCode.INVALID_SOURCE,
                    f"transition source must be a Step subclass, got {source!r}",
                )
                continue
            if not isinstance(event, str) or not event:
                self.add(
                    IssueCode.INVALID_EVENT,
                    f"transition event must be a non-empty string, got {event!r}",
                    source,
                )
                continue
            self.note_step(source)
            edge = self.parse_value(source, event, value)
            if edge is not None:
                self.edges.append(edge)

    def parse_value(self, source: type[Step], event: str, value: object) -> _Edge | None:
        where = f"({_name(source)}, {event!r})"
        if isinstance(value, Route):
            bad = [t for t in value.targets if not is_step_class(t)]
            if bad or not value.targets:
                self.add(
                    IssueCode.INVALID_TARGET,
                    f"route for {where} must declare Step subclasses, got {value.targets!r}",
                    source,
                )
                return None
            for target in value.targets:
                self.note_step(target)
            return _Edge(source, event, [(t, None) for t in value.targets], value)
        items: list[object] = list(value) if isinstance(value, list) else [value]
        if not items:
            self.add(IssueCode.INVALID_TARGET, f"{where} has an empty target list", source)
            return None
        targets: list[tuple[type[Step], Config]] = []
        for item in items:
            parsed = parse_target(item)
            if parsed is None:
                hint = " (use a list for fan-out)" if isinstance(item, tuple) else ""
                self.add(
                    IssueCode.INVALID_TARGET,
                    f"{where} target must be a Step subclass, (Step, config dict), a list of "
                    f"those, or a route(...); got {item!r}{hint}",
                    source,
                )
                continue
            if any(parsed[0] is existing for existing, _ in targets):
                self.add(
                    IssueCode.INVALID_TARGET,
                    f"{where} lists {_name(parsed[0])} twice; {_reuse_hint(parsed[0])}",
                    source,
                )
                continue
            targets.append(parsed)
            self.note_step(parsed[0])
        if len(targets) != len(items):
            return None
        return _Edge(source, event, targets, None)

    def check_steps(self) -> None:
        done_steps = [step for step in self.steps if is_done(step)]
        if len(done_steps) > 1:
            self.add(
                IssueCode.INVALID_STEP,
                f"a workflow ends in a single Done step, got {[_name(s) for s in done_steps]}",
            )
        for step in self.steps:
            for attribute in ("events", "optional_events"):
                events = getattr(step, attribute)
                if not _valid_events(events):
                    self.add(
                        IssueCode.INVALID_EVENTS,
                        f"{_name(step)}.{attribute} must be a tuple of distinct non-empty "
                        f"strings, got {events!r}",
                        step,
                    )
            if step.execute is Step.execute:
                self.add(
                    IssueCode.MISSING_EXECUTE, f"{_name(step)} does not implement execute()", step
                )
            else:
                problem = _execute_problem(step)
                if problem is not None:
                    self.add(
                        IssueCode.INVALID_EXECUTE_SIGNATURE,
                        f"{_name(step)}.execute {problem}; define it as "
                        "def execute(self, run, config, context) (or async def)",
                        step,
                    )
            _check_retry(step.retry, f"{_name(step)}.retry", self.issues)
            join = getattr(step, "join", None)
            if join not in (None, "all", "any"):
                self.add(
                    IssueCode.INVALID_JOIN,
                    f'{_name(step)}.join must be "all", "any" or None, got {join!r}',
                    step,
                )
            elif join is not None and is_done(step):
                self.add(
                    IssueCode.INVALID_JOIN,
                    f"{_name(step)}.join: Done always runs when any branch arrives; remove "
                    "the declaration",
                    step,
                )
            timeout = step.timeout
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
            ):
                self.add(
                    IssueCode.INVALID_OPTION,
                    f"{_name(step)}.timeout must be a positive number of seconds, got {timeout!r}",
                    step,
                )

    def check_keys(self) -> dict[type[Step], str]:
        keys: dict[type[Step], str] = {}
        owners: dict[str, list[type[Step]]] = {}
        for step in self.steps:
            key = context_key(step)
            if not isinstance(key, str) or not key:
                self.add(
                    IssueCode.INVALID_STEP,
                    f"{_name(step)}.step_key must be a non-empty string, got {key!r}",
                    step,
                )
                continue
            keys[step] = key
            owners.setdefault(key, []).append(step)
        for key, steps in owners.items():
            if len(steps) > 1:
                self.add(
                    IssueCode.CONTEXT_KEY_COLLISION,
                    f"context key {key!r} is used by {', '.join(_name(s) for s in steps)}; "
                    "set step_key on one of them",
                )
        return keys

    def adjacency(self) -> dict[type[Step], list[type[Step]]]:
        adjacency: dict[type[Step], list[type[Step]]] = {step: [] for step in self.steps}
        for edge in self.edges:
            successors = adjacency[edge.source]
            for target, _ in edge.targets:
                if target not in successors:
                    successors.append(target)
        return adjacency

    def check_graph(self, start: type[Step], adjacency: dict[type[Step], list[type[Step]]]) -> None:
        ids = {step: f"{index}" for index, step in enumerate(self.steps)}
        by_id = {v: k for k, v in ids.items()}
        adj = {ids[s]: [ids[t] for t in targets] for s, targets in adjacency.items()}
        cycle = find_cycle(adj, [ids[s] for s in self.steps])
        if cycle is not None:
            path = " -> ".join(_name(by_id[i]) for i in cycle)
            self.add(
                IssueCode.CYCLE,
                f"cycle detected in workflow graph: {path}. Workflows are acyclic; if "
                f"{_name(by_id[cycle[0]])} is meant to run again there rather than loop, "
                f"{_reuse_hint(by_id[cycle[0]])}",
            )
        seen = reachable(adj, [ids[start]])
        unreachable = sorted(_name(s) for s in self.steps if ids[s] not in seen)
        if unreachable:
            self.add(
                IssueCode.UNREACHABLE,
                f"steps unreachable from start {_name(start)}: {', '.join(unreachable)}",
            )
        for step in self.steps:
            if not adjacency[step] and not is_done(step):
                self.add(
                    IssueCode.DEAD_END,
                    f"path ends at {_name(step)}, which is not Done: route its events onward",
                    step,
                )
        for edge in self.edges:
            if edge.route is not None or len(edge.targets) < 2:
                continue
            branches = [reachable(adj, [ids[target]]) for target, _ in edge.targets]
            common = set.intersection(*branches) - {ids[s] for s in self.steps if is_done(s)}
            if not common:
                self.add(
                    IssueCode.FAN_OUT_NOT_CONVERGING,
                    f"fan-out branches from ({_name(edge.source)}, {edge.event!r}) must converge "
                    "on a common step before Done",
                    edge.source,
                )

    def check_events(self) -> None:
        routed: dict[type[Step], set[str]] = {}
        for edge in self.edges:
            routed.setdefault(edge.source, set()).add(edge.event)
        for step in self.steps:
            if is_done(step) or not (
                _valid_events(step.events) and _valid_events(step.optional_events)
            ):
                continue
            declared = set(step.events) | set(step.optional_events)
            for event in sorted(routed.get(step, set()) - declared):
                self.add(
                    IssueCode.UNDECLARED_EVENT,
                    f"{_name(step)} does not declare event {event!r} (declared: "
                    f"{sorted(declared)})",
                    step,
                )
            for event in step.events:
                if event not in routed.get(step, set()):
                    self.add(
                        IssueCode.UNHANDLED_EVENT,
                        f"{_name(step)} declares event {event!r} but no transition handles it",
                        step,
                    )

    def check_configs(self, start: tuple[type[Step], Config]) -> None:
        routed: dict[type[Step], frozenset[str]] = {}
        for edge in self.edges:
            routed[edge.source] = routed.get(edge.source, frozenset()) | {edge.event}
        uses = [start] + [t for e in self.edges if e.route is None for t in e.targets]
        for step, config in uses:
            for problem in step.validate_config(config, routed.get(step, frozenset())):
                self.add(IssueCode.INVALID_CONFIG, f"{_name(step)} config: {problem}", step)

    def join_policies(self, nodes: dict[str, Node]) -> dict[str, Node]:
        """Give every join its declared or inferred policy; report joins that need one."""
        for key, node in nodes.items():
            if node.is_done and len(node.predecessors) > 1:
                nodes[key] = replace(node, join="any")
        for key, facts in analyse_joins(nodes).items():
            node = nodes[key]
            declared = node.step.join
            sources = ", ".join(_name(nodes[s].step) for s in facts.sources)
            if declared is None and facts.inferred is None:
                self.add(
                    IssueCode.JOIN_POLICY_REQUIRED,
                    f"{_name(node.step)} joins {sources}, and the graph does not say whether it "
                    f"waits for all of them ({_join_reason(nodes, facts)}): declare "
                    'join = "all" (run only when every source arrives, otherwise skip it) or '
                    'join = "any" (run when at least one arrives) on the step class',
                    node.step,
                )
                continue
            policy = declared or facts.inferred
            if policy == "all" and facts.exclusive is not None:
                a, b = (_name(nodes[s].step) for s in facts.exclusive)
                self.add(
                    IssueCode.JOIN_NEVER_RUNS,
                    f'{_name(node.step)} has join = "all" but {a} and {b} are exclusive '
                    "alternatives that never both arrive, so it could never run: declare "
                    'join = "any"',
                    node.step,
                )
            nodes[key] = replace(node, join=policy)
        return nodes

    def assemble(
        self,
        *,
        start: tuple[type[Step], Config],
        keys: dict[type[Step], str],
        adjacency: dict[type[Step], list[type[Step]]],
        unique: Unique,
        tags: tuple[str, ...],
        metadata: dict[str, Any],
        version: int,
        retry: RetryPolicy | None,
    ) -> WorkflowDefinition:
        predecessors: dict[str, set[str]] = {keys[s]: set() for s in self.steps}
        for source, targets in adjacency.items():
            for target in targets:
                predecessors[keys[target]].add(keys[source])
        transitions: dict[type[Step], dict[str, Transition]] = {s: {} for s in self.steps}
        for edge in self.edges:
            transitions[edge.source][edge.event] = Transition(
                targets=tuple(Target(keys[t], c) for t, c in edge.targets),
                route=edge.route,
                declared=frozenset(keys[t] for t, _ in edge.targets),
            )
        nodes = {
            keys[step]: Node(
                key=keys[step],
                step=step,
                events=frozenset(step.events) | frozenset(step.optional_events),
                transitions=transitions[step],
                successors=tuple(keys[t] for t in adjacency[step]),
                predecessors=frozenset(predecessors[keys[step]]),
                is_async=is_async_step(step),
                retry=step.retry or retry or DEFAULT_RETRY,
                timeout=None if step.timeout is None else float(step.timeout),
                is_done=is_done(step),
                routed_events=(
                    frozenset(step.events) if is_done(step) else frozenset(transitions[step])
                ),
            )
            for step in self.steps
        }
        nodes = self.join_policies(nodes)
        done = next(keys[s] for s in self.steps if is_done(s))
        return WorkflowDefinition(
            name=self.spec.name,
            family=self.spec.name,
            version=version,
            start=Target(keys[start[0]], start[1]),
            nodes=nodes,
            done=done,
            unique=unique,
            tags=tags,
            metadata=metadata,
            retry=retry,
            owner=self.spec.owner,
        )


def _join_reason(nodes: Mapping[str, Node], facts: JoinFacts) -> str:
    """Why the graph leaves a join's policy open, naming a witness pair of sources."""

    def pair(keys: tuple[str, str] | None) -> str:
        return (
            "" if keys is None else f"{_name(nodes[keys[0]].step)} and {_name(nodes[keys[1]].step)}"
        )

    if facts.neither is not None:
        return (
            f"{pair(facts.neither)} are neither exclusive alternatives (different events of one "
            "step) nor parallel branches of one fan-out"
        )
    return (
        f"{pair(facts.exclusive)} are exclusive alternatives while {pair(facts.parallel)} are "
        "parallel branches"
    )

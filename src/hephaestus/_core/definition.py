"""Compiled workflow definitions: the validated graph the engine runs.

A workflow class is turned into a ``WorkflowDefinition`` once, when the class is created.
Nodes are keyed by context key (a string), so instances never hold class references.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, Literal, cast

from hephaestus._core.records import record
from hephaestus._core.steps import Config, Done, Step

if TYPE_CHECKING:
    from hephaestus._core.retry import RetryPolicy
    from hephaestus._core.unique import Unique

__all__ = [
    "JoinPolicy",
    "Node",
    "Route",
    "RouteResult",
    "Target",
    "TargetSpec",
    "Transition",
    "VersionedDefinition",
    "WorkflowDefinition",
    "route",
]

JoinPolicy = Literal["all", "any"]

TargetSpec = type[Step] | tuple[type[Step], Config]
"""A step, or a step with the config it is activated with."""
RouteResult = TargetSpec | Sequence[TargetSpec] | None


@record
class Route:
    """A dynamic transition: ``fn(context)`` picks among the declared ``targets`` at run time."""

    targets: tuple[type[Step], ...]
    fn: Callable[[Any], RouteResult]

    def __call__(self, context: Any) -> RouteResult:
        return self.fn(context)


def route(*targets: type[Step]) -> Callable[[Callable[[Any], RouteResult]], Route]:
    """Declare a dynamic transition and every step it may route to.

    ```python
    @route(ExpressShipping, StandardShipping)
    def pick_shipping(context):
        return ExpressShipping if context.initial["express"] else StandardShipping
    ```

    The function receives the run's ``Context`` and returns one declared target, a list of them
    (fan-out), ``(step, config)`` pairs, or ``None``. Returning an undeclared step fails the run.
    """

    def wrap(fn: Callable[[Any], RouteResult]) -> Route:
        return Route(targets=tuple(targets), fn=fn)

    return wrap


@record
class Target:
    key: str
    config: Config = None


@record
class Transition:
    """Where one ``(step, event)`` leads: fixed ``targets``, or a ``route`` among ``declared``."""

    targets: tuple[Target, ...]
    route: Route | None
    declared: frozenset[str]


@record
class Node:
    """One step of a workflow graph."""

    key: str
    step: type[Step]
    events: frozenset[str]
    """Declared events plus optional ones: everything the step declares."""
    transitions: Mapping[str, Transition]
    successors: tuple[str, ...]
    predecessors: frozenset[str]
    is_async: bool
    retry: RetryPolicy
    timeout: float | None
    is_done: bool
    routed_events: frozenset[str] = frozenset()
    """The events a transition of this workflow routes from this step: the only ones it may
    complete with, be resumed with, or time out with (``Done`` completes with ``done``)."""
    join: Literal["all", "any"] | None = None
    """The join policy of a step with several source steps (``None`` for every other step)."""


@record
class WorkflowDefinition:
    """A validated, runnable workflow (one version of it)."""

    name: str
    family: str
    version: int
    start: Target
    nodes: Mapping[str, Node]
    done: str
    unique: Unique
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    owner: object = None
    """The workflow class this was compiled from (for display and the facade only)."""

    def step_class(self, key: str) -> type[Step]:
        return self.nodes[key].step


@record
class VersionedDefinition:
    """An umbrella over several versions; starts pick one and pin the instance to it."""

    name: str
    versions: Mapping[int, WorkflowDefinition]
    current: int
    unique: Unique
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    owner: object = None


def is_step_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Step)


def is_async_step(step: type[Step]) -> bool:
    return inspect.iscoroutinefunction(step.execute)


def is_done(step: type[Step]) -> bool:
    return issubclass(step, Done)


def parse_target(value: object) -> tuple[type[Step], Config] | None:
    """Normalise one target form; ``None`` when ``value`` is not a valid target."""
    if is_step_class(value):
        return cast(type[Step], value), None
    if isinstance(value, tuple) and len(value) == 2 and is_step_class(value[0]):
        config = value[1]
        if config is None or isinstance(config, Mapping):
            return cast(type[Step], value[0]), cast(Config, config)
    return None

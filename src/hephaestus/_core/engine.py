"""The engine: pure functions from (definition, instance, input) to (new instance, commands).

Nothing here performs I/O, reads a clock or awaits: time comes in as ``now``; work to do goes
out as commands (``RunStep``, ``StartTimer``, ``CancelTimer``, ``AbortStep``) that a runner
carries out. Every runner (local asyncio, Oban) therefore shares the same semantics:

* **Branch-aware joins.** When a step completes, each of its outgoing edges is resolved as
  *taken* (the event routes there) or *not taken*. A step becomes ready once every incoming
  edge is resolved and at least one was taken; if none was taken it is *skipped*, and its own
  outgoing edges resolve as not taken. Fan-in after fan-out therefore waits for all branches,
  and exclusive branches still reach ``Done``.
* **Per-step waiting.** Any number of steps may wait at once; a resume targets one of them;
  ready branches keep running meanwhile. A resume that arrives before its step waits is
  buffered and delivered when it does.
* **Terminal statuses are absorbing**; results, timers and resumes that arrive late are ignored
  (runner input) or refused (caller input).
* **Completed means Done ran.** A run with nothing active or waiting that did not reach Done
  has stalled and is marked failed with kind ``stalled``.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from hephaestus._core.definition import Node, Target, WorkflowDefinition, parse_target
from hephaestus._core.instance import (
    Context,
    ErrorInfo,
    HistoryEntry,
    HistoryKind,
    Instance,
    JoinState,
    PendingResume,
    Status,
    StepState,
    StepStatus,
)
from hephaestus._core.records import record
from hephaestus._core.steps import Async, Config, Error, Ok, context_key
from hephaestus.errors import (
    AmbiguousResumeError,
    InstanceNotActiveError,
    InvalidEventError,
    ResumeError,
    StepNotWaitingError,
)

__all__ = [
    "AbortStep",
    "CancelTimer",
    "Command",
    "Decision",
    "Failure",
    "Outcome",
    "RunStep",
    "StartTimer",
    "apply_result",
    "begin",
    "cancel",
    "failure_from_exception",
    "fire_timer",
    "interpret",
    "pending",
    "recover",
    "resume",
    "start",
]


@record
class RunStep:
    """Execute ``step`` (attempt ``attempt``), not before ``not_before`` when set."""

    step: str
    attempt: int
    config: Config
    not_before: datetime | None = None


@record
class StartTimer:
    """At ``at``, call ``fire_timer`` for ``step``."""

    step: str
    at: datetime
    event: str


@record
class CancelTimer:
    step: str


@record
class AbortStep:
    """Stop an in-flight execution of ``step``; its result would be ignored anyway."""

    step: str


Command = RunStep | StartTimer | CancelTimer | AbortStep


@record
class Failure:
    """A failed attempt, as the engine sees it."""

    error: ErrorInfo
    retryable: bool = True


Outcome = Ok | Async | Failure


@record
class Decision:
    """The engine's answer: the next instance state and what the runner must do.

    ``changed`` is false for stale input (a late result, an old timer): nothing to persist.
    """

    instance: Instance
    commands: tuple[Command, ...] = ()
    changed: bool = True


def _unchanged(instance: Instance) -> Decision:
    return Decision(instance, (), changed=False)


# ---------------------------------------------------------------------------------------------
# Entry points


def pending(
    definition: WorkflowDefinition,
    *,
    instance_id: str,
    run_id: str,
    family: str,
    initial: Mapping[str, Any],
    now: datetime,
    unique_key: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Instance:
    """A new run that has not taken its first decision (revision 1, status ``pending``).

    Runners that persist a run before starting it (a transactional outbox) store this and
    call ``begin`` later; ``start`` does both at once.
    """
    return Instance(
        id=instance_id,
        run_id=run_id,
        workflow=definition.name,
        workflow_version=definition.version,
        family=family,
        status=Status.PENDING,
        context=Context(initial=dict(initial), steps={}),
        created_at=now,
        updated_at=now,
        revision=1,
        unique_key=unique_key,
        metadata=dict(metadata or {}),
    )


def start(
    definition: WorkflowDefinition,
    *,
    instance_id: str,
    run_id: str,
    family: str,
    initial: Mapping[str, Any],
    now: datetime,
    unique_key: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Decision:
    """A new run with its start step active (or already completed when start is ``Done``).

    The returned instance has revision 1: it is meant to be created in storage as is.
    """
    new = pending(
        definition,
        instance_id=instance_id,
        run_id=run_id,
        family=family,
        initial=initial,
        now=now,
        unique_key=unique_key,
        metadata=metadata,
    )
    return _begin(definition, replace_revision(new, 0), now)


def begin(definition: WorkflowDefinition, instance: Instance, now: datetime) -> Decision:
    """Take a ``pending`` run's first decision: activate its start step."""
    if instance.status is not Status.PENDING:
        return _unchanged(instance)
    return _begin(definition, instance, now)


def replace_revision(instance: Instance, revision: int) -> Instance:
    return Instance(
        id=instance.id,
        run_id=instance.run_id,
        workflow=instance.workflow,
        workflow_version=instance.workflow_version,
        family=instance.family,
        status=instance.status,
        context=instance.context,
        created_at=instance.created_at,
        updated_at=instance.updated_at,
        revision=revision,
        unique_key=instance.unique_key,
        metadata=instance.metadata,
    )


def _begin(definition: WorkflowDefinition, instance: Instance, now: datetime) -> Decision:
    draft = _Draft(definition, instance, now)
    draft.history.append(HistoryEntry(now, HistoryKind.STARTED))
    start_target = definition.start
    draft.activate(start_target.key, start_target.config)
    return draft.finish()


def apply_result(
    definition: WorkflowDefinition,
    instance: Instance,
    *,
    step: str,
    attempt: int,
    outcome: Outcome,
    now: datetime,
) -> Decision:
    """Apply the outcome of one step attempt; stale outcomes change nothing."""
    state = instance.steps.get(step)
    if (
        instance.is_terminal
        or state is None
        or state.status is not StepStatus.ACTIVE
        or state.attempt != attempt
    ):
        return _unchanged(instance)
    draft = _Draft(definition, instance, now)
    if isinstance(outcome, Ok):
        draft.complete(step, outcome.event, outcome.updates, outcome.metadata)
    elif isinstance(outcome, Async):
        draft.wait(step, outcome)
    else:
        draft.attempt_failed(step, outcome)
    return draft.finish()


def resume(
    definition: WorkflowDefinition,
    instance: Instance,
    *,
    event: str,
    payload: Mapping[str, Any] | None,
    now: datetime,
    step: str | None = None,
) -> Decision:
    """Deliver an external event to a waiting step (or buffer it for a step not waiting yet).

    Raises ``InstanceNotActiveError`` for a finished run and a ``ResumeError`` subclass when no
    step can take the event; nothing changes in either case.
    """
    if instance.is_terminal:
        raise InstanceNotActiveError(
            f"instance {instance.id} is {instance.status}; it cannot be resumed",
            instance_id=instance.id,
            status=instance.status,
        )
    if payload is not None and not (
        isinstance(payload, Mapping) and all(isinstance(k, str) for k in payload)
    ):
        raise ResumeError(
            f"resume payload must be a dict with string keys, got {payload!r}",
            instance_id=instance.id,
            step=step,
        )
    target = _resume_target(definition, instance, event, step)
    draft = _Draft(definition, instance, now)
    state = instance.steps.get(target)
    data = dict(payload or {})
    if state is not None and state.status is StepStatus.WAITING:
        draft.deliver(target, event, data, source="external")
    else:
        draft.inbox = (*draft.inbox, PendingResume(target, event, data, now))
        draft.history.append(
            HistoryEntry(now, HistoryKind.RESUME_BUFFERED, target, event, data=data)
        )
    return draft.finish()


def fire_timer(
    definition: WorkflowDefinition, instance: Instance, *, step: str, at: datetime, now: datetime
) -> Decision:
    """A step's timer expired; stale timers (step resumed, run over) change nothing."""
    state = instance.steps.get(step)
    if (
        instance.is_terminal
        or state is None
        or state.status is not StepStatus.WAITING
        or state.timer_at != at
        or state.timer_event is None
    ):
        return _unchanged(instance)
    draft = _Draft(definition, instance, now)
    draft.deliver(step, state.timer_event, {}, source="timer", timer_fired=True)
    return draft.finish()


def cancel(instance: Instance, now: datetime, reason: str | None = None) -> Decision:
    """Cancel a run: stop its executions and timers. Finished runs raise."""
    if instance.is_terminal:
        raise InstanceNotActiveError(
            f"instance {instance.id} is {instance.status}; it cannot be cancelled",
            instance_id=instance.id,
            status=instance.status,
        )
    steps = dict(instance.steps)
    commands = _close_open_steps(steps)
    entry = HistoryEntry(
        now, HistoryKind.CANCELLED, data=None if reason is None else {"reason": reason}
    )
    return Decision(
        _rebuild(
            instance,
            now,
            status=Status.CANCELLED,
            steps=steps,
            history=(*instance.history, entry),
        ),
        tuple(commands),
    )


def recover(instance: Instance) -> tuple[Command, ...]:
    """The commands that resume a persisted run after a restart (at-least-once execution)."""
    if instance.is_terminal:
        return ()
    commands: list[Command] = []
    for key, state in instance.steps.items():
        if state.status is StepStatus.ACTIVE:
            commands.append(RunStep(key, state.attempt, state.config, state.run_after))
        elif (
            state.status is StepStatus.WAITING
            and state.timer_at is not None
            and state.timer_event is not None
        ):
            commands.append(StartTimer(key, state.timer_at, state.timer_event))
    return tuple(commands)


# ---------------------------------------------------------------------------------------------
# Interpreting what a step returned


_MAX_TIMEOUT_SECONDS = 100 * 365 * 86_400.0
"""Longer (or infinite) timers could not be dated: ``now + timeout`` would overflow."""


def interpret(node: Node, raw: object) -> Outcome:
    """Validate a step's return value against its declaration; bad shapes fail the step."""
    if isinstance(raw, str):
        raw = Ok(raw)
    name = node.step.__qualname__
    if isinstance(raw, Ok):
        if (
            type(raw.event) is str
            and type(raw.updates) is dict
            and type(raw.metadata) is dict
            and raw.event in node.events
            and all(type(k) is str for k in raw.updates)
            and all(type(k) is str for k in raw.metadata)
        ):
            return raw  # the common case, without the generic Mapping checks below
        if not isinstance(raw.event, str) or raw.event not in node.events:
            return _invalid(f"{name} returned undeclared event {raw.event!r}", node)
        for what, value in (("updates", raw.updates), ("metadata", raw.metadata)):
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                return _invalid(
                    f"{name} returned {what} {value!r}; expected a dict with string keys", node
                )
        return raw
    if isinstance(raw, Async):
        timeout = raw.timeout
        if timeout is not None:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 <= seconds <= _MAX_TIMEOUT_SECONDS  # also false for NaN
            ):
                return _invalid(f"{name} returned Async with invalid timeout {timeout!r}", node)
            if not isinstance(raw.timeout_event, str) or raw.timeout_event not in node.events:
                return _invalid(
                    f"{name} returned Async with timeout event {raw.timeout_event!r}, "
                    "which it does not declare",
                    node,
                )
            return Async(timeout=float(seconds), timeout_event=raw.timeout_event)
        return raw
    if isinstance(raw, Error):
        return Failure(ErrorInfo(kind="error", message=str(raw.reason)), retryable=raw.retryable)
    return _invalid(
        f"{name} returned {raw!r}; expected Ok(...), Async(...), Error(...) or an event name",
        node,
    )


def _invalid(message: str, node: Node) -> Failure:
    declared = sorted(node.events)
    return Failure(
        ErrorInfo(kind="invalid_result", message=f"{message} (declared events: {declared})"),
        retryable=False,
    )


def failure_from_exception(exc: BaseException, kind: str = "exception") -> Failure:
    """A retryable failure carrying the exception's type, message and traceback."""
    kind_type = type(exc)
    return Failure(
        ErrorInfo(
            kind=kind,
            message=str(exc) or kind_type.__name__,
            type=f"{kind_type.__module__}.{kind_type.__qualname__}",
            traceback="".join(traceback.format_exception(exc)),
        )
    )


# ---------------------------------------------------------------------------------------------
# Internals


def _resume_target(
    definition: WorkflowDefinition, instance: Instance, event: str, step: str | None
) -> str:
    nodes = definition.nodes
    if step is not None:
        node = nodes.get(step)
        if node is None or node.is_done:
            raise StepNotWaitingError(
                f"{definition.name} has no step {step!r} that can be resumed",
                instance_id=instance.id,
                step=step,
            )
        if event not in node.events:
            raise InvalidEventError(
                f"step {step!r} does not declare event {event!r} (declared: {sorted(node.events)})",
                instance_id=instance.id,
                step=step,
            )
        state = instance.steps.get(step)
        if state is not None and state.status not in (StepStatus.WAITING, StepStatus.ACTIVE):
            raise StepNotWaitingError(
                f"step {step!r} of {instance.id} is {state.status}; it cannot be resumed",
                instance_id=instance.id,
                step=step,
            )
        return step
    waiting = instance.waiting_steps
    matching = [key for key in waiting if event in nodes[key].events]
    if len(matching) == 1:
        return matching[0]
    if len(matching) > 1:
        raise AmbiguousResumeError(
            f"steps {matching} of {instance.id} all wait for {event!r}; pass step=",
            instance_id=instance.id,
        )
    upcoming = [
        key
        for key, node in nodes.items()
        if not node.is_done
        and event in node.events
        and (instance.steps.get(key) is None or instance.steps[key].status is StepStatus.ACTIVE)
    ]
    if len(upcoming) == 1:
        return upcoming[0]
    if len(upcoming) > 1:
        raise AmbiguousResumeError(
            f"steps {upcoming} of {instance.id} may take {event!r}; pass step=",
            instance_id=instance.id,
        )
    if waiting:
        accepted = {key: sorted(nodes[key].events) for key in waiting}
        raise InvalidEventError(
            f"no waiting step of {instance.id} declares {event!r} (waiting: {accepted})",
            instance_id=instance.id,
        )
    raise StepNotWaitingError(
        f"no step of {instance.id} waits for or can still take {event!r}",
        instance_id=instance.id,
    )


def _close_open_steps(steps: dict[str, StepState]) -> list[Command]:
    """Mark active and waiting steps cancelled; return the commands that stop them."""
    commands: list[Command] = []
    for key, state in steps.items():
        if state.status is StepStatus.ACTIVE:
            steps[key] = _with_status(state, StepStatus.CANCELLED)
            commands.append(AbortStep(key))
        elif state.status is StepStatus.WAITING:
            steps[key] = _with_status(state, StepStatus.CANCELLED)
            if state.timer_at is not None:
                commands.append(CancelTimer(key))
    return commands


def _with_status(state: StepState, status: StepStatus) -> StepState:
    return StepState(
        status=status,
        attempt=state.attempt,
        config=state.config,
        event=state.event,
        error=state.error,
    )


def _rebuild(
    instance: Instance,
    now: datetime,
    *,
    status: Status,
    steps: Mapping[str, StepState],
    history: tuple[HistoryEntry, ...],
    joins: Mapping[str, JoinState] | None = None,
    inbox: tuple[PendingResume, ...] | None = None,
    context: Context | None = None,
    runtime_metadata: Mapping[str, Any] | None = None,
    error: ErrorInfo | None = None,
) -> Instance:
    return Instance(
        id=instance.id,
        run_id=instance.run_id,
        workflow=instance.workflow,
        workflow_version=instance.workflow_version,
        family=instance.family,
        status=status,
        context=instance.context if context is None else context,
        created_at=instance.created_at,
        updated_at=now,
        revision=instance.revision + 1,
        steps=steps,
        joins=instance.joins if joins is None else joins,
        inbox=instance.inbox if inbox is None else inbox,
        runtime_metadata=(
            instance.runtime_metadata if runtime_metadata is None else runtime_metadata
        ),
        history=history,
        unique_key=instance.unique_key,
        metadata=instance.metadata,
        error=instance.error if error is None else error,
    )


class _Draft:
    """A mutable working copy used inside one engine call, frozen again by ``finish``."""

    __slots__ = (
        "commands",
        "context_steps",
        "definition",
        "done",
        "error",
        "history",
        "inbox",
        "instance",
        "joins",
        "joins_copied",
        "metadata",
        "now",
        "steps",
    )

    def __init__(self, definition: WorkflowDefinition, instance: Instance, now: datetime) -> None:
        self.definition = definition
        self.instance = instance
        self.now = now
        self.steps: dict[str, StepState] = dict(instance.steps)
        self.joins: Mapping[str, JoinState] = instance.joins
        self.joins_copied = False
        self.context_steps: dict[str, Mapping[str, Any]] | None = None
        self.metadata: dict[str, Any] | None = None
        self.inbox = instance.inbox
        self.history: list[HistoryEntry] = []
        self.commands: list[Command] = []
        self.error: ErrorInfo | None = None
        self.done = False

    # -- step lifecycle -------------------------------------------------------------------

    def activate(self, key: str, config: Config) -> None:
        node = self.definition.nodes[key]
        if node.is_done:
            self.steps[key] = StepState(StepStatus.ACTIVE, config=config)
            self.complete(key, "done", {}, {})
            return
        self.steps[key] = StepState(StepStatus.ACTIVE, config=config)
        self.commands.append(RunStep(key, 1, config))

    def complete(
        self,
        key: str,
        event: str,
        updates: Mapping[str, Any],
        metadata: Mapping[str, Any],
        *,
        kind: HistoryKind = HistoryKind.STEP_COMPLETED,
        source: str | None = None,
    ) -> None:
        node = self.definition.nodes[key]
        state = self.steps[key]
        self.steps[key] = StepState(
            StepStatus.COMPLETED, attempt=state.attempt, config=state.config, event=event
        )
        data = dict(updates)
        if self.context_steps is None:
            self.context_steps = dict(self.instance.context.steps)
        self.context_steps[key] = data
        if metadata:
            if self.metadata is None:
                self.metadata = dict(self.instance.runtime_metadata)
            self.metadata.update(metadata)
        self.history.append(
            HistoryEntry(self.now, kind, key, event, state.attempt, data or None, source)
        )
        self.discard_inbox(key)
        if node.is_done:
            self.done = True
            return
        targets = self.route(node, event)
        if targets is not None:
            self.resolve_outgoing(node, targets)

    def wait(self, key: str, outcome: Async) -> None:
        state = self.steps[key]
        timer_at = None
        if outcome.timeout is not None:
            seconds = (
                outcome.timeout.total_seconds()
                if isinstance(outcome.timeout, timedelta)
                else outcome.timeout
            )
            timer_at = self.now + timedelta(seconds=seconds)
        self.steps[key] = StepState(
            StepStatus.WAITING,
            attempt=state.attempt,
            config=state.config,
            timer_at=timer_at,
            timer_event=outcome.timeout_event if timer_at is not None else None,
        )
        self.history.append(
            HistoryEntry(self.now, HistoryKind.STEP_WAITING, key, attempt=state.attempt)
        )
        if timer_at is not None:
            self.commands.append(StartTimer(key, timer_at, outcome.timeout_event))
        for pending in self.inbox:
            if pending.step == key:
                self.inbox = tuple(p for p in self.inbox if p is not pending)
                self.deliver(key, pending.event, pending.payload, source="external")
                break

    def deliver(
        self,
        key: str,
        event: str,
        payload: Mapping[str, Any],
        *,
        source: str,
        timer_fired: bool = False,
    ) -> None:
        state = self.steps[key]
        if state.timer_at is not None and not timer_fired:
            self.commands.append(CancelTimer(key))
        self.complete(key, event, payload, {}, kind=HistoryKind.STEP_RESUMED, source=source)

    def attempt_failed(self, key: str, failure: Failure) -> None:
        node = self.definition.nodes[key]
        state = self.steps[key]
        error = ErrorInfo(
            kind=failure.error.kind,
            message=failure.error.message,
            type=failure.error.type,
            traceback=failure.error.traceback,
            step=key,
            attempt=state.attempt,
        )
        if failure.retryable and state.attempt < node.retry.max_attempts:
            run_after = self.now + timedelta(seconds=node.retry.delay_after(state.attempt))
            attempt = state.attempt + 1
            self.steps[key] = StepState(
                StepStatus.ACTIVE,
                attempt=attempt,
                config=state.config,
                run_after=run_after,
                error=error,
            )
            self.history.append(
                HistoryEntry(
                    self.now, HistoryKind.STEP_RETRYING, key, attempt=state.attempt, error=error
                )
            )
            self.commands.append(RunStep(key, attempt, state.config, run_after))
            return
        self.steps[key] = StepState(
            StepStatus.FAILED, attempt=state.attempt, config=state.config, error=error
        )
        self.history.append(
            HistoryEntry(self.now, HistoryKind.STEP_FAILED, key, attempt=state.attempt, error=error)
        )
        self.error = error

    # -- routing and joins -----------------------------------------------------------------

    def route(self, node: Node, event: str) -> list[Target] | None:
        """The targets ``event`` leads to; ``None`` when routing failed (the run fails)."""
        transition = node.transitions.get(event)
        if transition is None:
            return []
        if transition.route is None:
            return list(transition.targets)
        context = Context(self.instance.context.initial, self.context_steps or {})
        try:
            result = transition.route(context)
        except Exception as exc:
            failure = failure_from_exception(exc, kind="route_error").error
            self.fail_routing(
                node,
                f"route for ({node.step.__qualname__}, {event!r}) raised "
                f"{failure.type}: {failure.message}",
                failure.traceback,
            )
            return None
        items: Sequence[object]
        if result is None:
            items = []
        elif isinstance(result, list) or (
            isinstance(result, tuple) and parse_target(result) is None
        ):
            items = result
        else:
            items = [result]
        targets: list[Target] = []
        for item in items:
            parsed = parse_target(item)
            key = None if parsed is None else context_key(parsed[0])
            if (
                parsed is None
                or key not in transition.declared
                or self.definition.nodes[key].step is not parsed[0]
            ):
                self.fail_routing(
                    node,
                    f"route for ({node.step.__qualname__}, {event!r}) returned {item!r}, "
                    f"which is not one of its declared targets {sorted(transition.declared)}",
                )
                return None
            if all(t.key != key for t in targets):
                targets.append(Target(key, parsed[1]))
        return targets

    def fail_routing(self, node: Node, message: str, trace: str | None = None) -> None:
        state = self.steps[node.key]
        self.error = ErrorInfo(
            kind="route_error",
            message=message,
            traceback=trace,
            step=node.key,
            attempt=state.attempt,
        )

    def resolve_outgoing(self, node: Node, targets: list[Target]) -> None:
        taken = {t.key: t.config for t in targets}
        work = [(node.key, succ, succ in taken, taken.get(succ)) for succ in node.successors]
        nodes = self.definition.nodes
        index = 0
        while index < len(work):
            source, key, is_taken, config = work[index]
            index += 1
            if key in self.steps:
                continue
            target = nodes[key]
            if len(target.predecessors) > 1:
                if not self.joins_copied:
                    self.joins = dict(self.joins)
                    self.joins_copied = True
                joins = cast(dict[str, JoinState], self.joins)
                join = joins.get(key)
                resolved = frozenset({source}) if join is None else join.resolved | {source}
                any_taken = is_taken or (join is not None and join.taken)
                if not (is_taken and config is not None) and join is not None:
                    config = join.config
                if len(resolved) < len(target.predecessors):
                    joins[key] = JoinState(resolved, any_taken, config)
                    continue
                joins.pop(key, None)
                is_taken = any_taken
            if is_taken:
                self.activate(key, config)
            else:
                self.steps[key] = StepState(StepStatus.SKIPPED)
                self.history.append(HistoryEntry(self.now, HistoryKind.STEP_SKIPPED, key))
                self.discard_inbox(key)
                work.extend((key, succ, False, None) for succ in target.successors)

    def discard_inbox(self, key: str) -> None:
        if not self.inbox:
            return
        dropped = [p for p in self.inbox if p.step == key]
        if not dropped:
            return
        self.inbox = tuple(p for p in self.inbox if p.step != key)
        for pending in dropped:
            self.history.append(
                HistoryEntry(
                    self.now, HistoryKind.RESUME_DISCARDED, key, pending.event, data=pending.payload
                )
            )

    # -- freezing ------------------------------------------------------------------------

    def finish(self) -> Decision:
        instance = self.instance
        status: Status
        error = None
        if self.error is not None:
            status = Status.FAILED
            error = self.error
            self.commands.extend(_close_open_steps(self.steps))
            self.history.append(HistoryEntry(self.now, HistoryKind.FAILED, error=error))
        elif self.done:
            status = Status.COMPLETED
            self.history.append(HistoryEntry(self.now, HistoryKind.COMPLETED))
        else:
            status = self.open_status()
            if status is Status.FAILED:
                skipped = [k for k, s in self.steps.items() if s.status is StepStatus.SKIPPED]
                error = ErrorInfo(
                    kind="stalled",
                    message=(
                        "the run stalled: no step is active or waiting and Done was not reached "
                        f"(skipped: {skipped})"
                    ),
                )
                self.history.append(HistoryEntry(self.now, HistoryKind.FAILED, error=error))
        context = None
        if self.context_steps is not None:
            context = Context(instance.context.initial, self.context_steps)
        new = _rebuild(
            instance,
            self.now,
            status=status,
            steps=self.steps,
            history=instance.history + tuple(self.history),
            joins=self.joins,
            inbox=self.inbox,
            context=context,
            runtime_metadata=self.metadata,
            error=error,
        )
        return Decision(new, tuple(self.commands))

    def open_status(self) -> Status:
        waiting = False
        for state in reversed(self.steps.values()):
            if state.status is StepStatus.ACTIVE:
                return Status.RUNNING
            if state.status is StepStatus.WAITING:
                waiting = True
        return Status.WAITING if waiting else Status.FAILED

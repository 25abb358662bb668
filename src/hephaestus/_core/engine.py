"""The engine: pure functions from (definition, instance, input) to (new instance, commands).

Nothing here performs I/O, reads a clock or awaits: time comes in as ``now``; work to do goes
out as commands (``RunStep``, ``StartTimer``, ``CancelTimer``, ``AbortStep``) that a runner
carries out. Every runner (local asyncio, Oban) therefore shares the same semantics:

* **Joins by policy.** When a step completes, each of its outgoing edges is resolved as
  *taken* (the event routes there) or *not taken*. A step resolves once every incoming edge is
  resolved: an ``any`` join (and every step with one source, and ``Done``) runs if at least one
  edge was taken, an ``all`` join only if every edge was taken; otherwise it is *skipped*, and
  its own outgoing edges resolve as not taken. A fan-in after a fan-out therefore waits for all
  branches and runs only if all arrived, and exclusive branches still reach ``Done``.
* **Per-step waiting.** Any number of steps may wait at once; a resume targets one of them;
  ready branches keep running meanwhile. A resume that arrives before its step waits is
  buffered and delivered when it does.
* **Scheduled resumes** (``schedule_resume``) live in the instance with their own timer: when
  due they are delivered like a resume (buffered if the step is not waiting yet); they are
  dropped, and their timers cancelled, when the step resolves first or the run ends.
* **Terminal statuses are absorbing**; results, timers and resumes that arrive late are ignored
  (runner input) or refused (caller input).
* **Completed means Done ran.** A run with nothing active or waiting that did not reach Done
  has stalled and is marked failed with kind ``stalled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hephaestus._core.commands import (
    AbortStep,
    Begin,
    Cancel,
    CancelTimer,
    Changes,
    Command,
    Decision,
    Failure,
    FireTimer,
    Input,
    Outcome,
    Resume,
    RunStep,
    ScheduleResume,
    StartTimer,
    StepFinished,
)
from hephaestus._core.draft import Draft, close_open_steps, drop_scheduled, rebuild
from hephaestus._core.instance import (
    NO_DATA,
    Context,
    HistoryEntry,
    HistoryKind,
    Instance,
    PendingResume,
    ScheduledResume,
    Status,
    StepStatus,
)
from hephaestus._core.results import failure_from_exception, interpret
from hephaestus._core.steps import Async, Ok
from hephaestus._core.values import ReadOnlyMapping, check_mapping
from hephaestus.errors import (
    AmbiguousResumeError,
    InstanceNotActiveError,
    InvalidEventError,
    ResumeError,
    StepNotWaitingError,
)

if TYPE_CHECKING:
    from datetime import datetime

    from hephaestus._core.definition import WorkflowDefinition

__all__ = [
    "AbortStep",
    "Begin",
    "Cancel",
    "CancelTimer",
    "Changes",
    "Command",
    "Decision",
    "Failure",
    "FireTimer",
    "Input",
    "Outcome",
    "Resume",
    "RunStep",
    "ScheduleResume",
    "StartTimer",
    "StepFinished",
    "apply_result",
    "begin",
    "cancel",
    "decide",
    "failure_from_exception",
    "fire_timer",
    "interpret",
    "pending",
    "recover",
    "resume",
    "schedule_resume",
    "start",
]


_NO_CONTEXT = Context(NO_DATA, NO_DATA)
"""The context of every run started without data, until a step adds some (records are shared,
never mutated)."""


def _unchanged(instance: Instance) -> Decision:
    return Decision(instance, (), changed=False)


# ---------------------------------------------------------------------------------------------
# Entry points


def decide(
    definition: WorkflowDefinition, instance: Instance, input: Input, now: datetime
) -> Decision:
    """Apply any runner input to ``instance``: the one entry point a runner's driver needs.

    Raises what the specific entry point raises for caller input (``resume``,
    ``schedule_resume``, ``cancel``); runner input (``StepFinished``, ``FireTimer``,
    ``Begin``) that is stale changes nothing.
    """
    if type(input) is StepFinished:  # the input of nearly every decision: no pattern matching
        return apply_result(
            definition,
            instance,
            step=input.step,
            attempt=input.attempt,
            outcome=input.outcome,
            now=now,
        )
    match input:
        case StepFinished(step, attempt, outcome):
            return apply_result(
                definition, instance, step=step, attempt=attempt, outcome=outcome, now=now
            )
        case FireTimer(step, at, timer):
            return fire_timer(definition, instance, step=step, at=at, now=now, timer=timer)
        case Resume(event, payload, step):
            return resume(definition, instance, event=event, payload=payload, now=now, step=step)
        case ScheduleResume(step, event, payload, at, id):
            return schedule_resume(
                definition,
                instance,
                step=step,
                event=event,
                payload=payload,
                at=at,
                now=now,
                id=id,
            )
        case Cancel(reason):
            return cancel(instance, now, reason)
        case Begin():
            return begin(definition, instance, now)


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
    trace_context: Mapping[str, str] | None = None,
) -> Instance:
    """A new run that has not taken its first decision (revision 1, status ``pending``).

    Runners that persist a run before starting it (a transactional outbox) store this and
    call ``begin`` later; ``start`` does both at once.
    """
    return _fresh(
        definition,
        instance_id=instance_id,
        run_id=run_id,
        family=family,
        initial=initial,
        now=now,
        unique_key=unique_key,
        metadata=metadata,
        trace_context=trace_context,
        revision=1,
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
    trace_context: Mapping[str, str] | None = None,
) -> Decision:
    """A new run with its start step active (or already completed when start is ``Done``).

    The returned instance has revision 1: it is meant to be created in storage as is.
    """
    new = _fresh(
        definition,
        instance_id=instance_id,
        run_id=run_id,
        family=family,
        initial=initial,
        now=now,
        unique_key=unique_key,
        metadata=metadata,
        trace_context=trace_context,
        revision=0,
    )
    return _begin(definition, new, now)


def begin(definition: WorkflowDefinition, instance: Instance, now: datetime) -> Decision:
    """Take a ``pending`` run's first decision: activate its start step."""
    if instance.status is not Status.PENDING:
        return _unchanged(instance)
    return _begin(definition, instance, now)


def _fresh(
    definition: WorkflowDefinition,
    *,
    instance_id: str,
    run_id: str,
    family: str,
    initial: Mapping[str, Any],
    now: datetime,
    unique_key: str | None,
    metadata: Mapping[str, Any] | None,
    trace_context: Mapping[str, str] | None,
    revision: int,
) -> Instance:
    return Instance(
        id=instance_id,
        run_id=run_id,
        workflow=definition.name,
        workflow_version=definition.version,
        family=family,
        status=Status.PENDING,
        context=Context(dict(initial), NO_DATA) if initial else _NO_CONTEXT,
        created_at=now,
        updated_at=now,
        revision=revision,
        unique_key=unique_key,
        metadata=dict(metadata) if metadata else NO_DATA,
        trace_context=dict(trace_context) if trace_context else NO_DATA,
    )


def _begin(definition: WorkflowDefinition, instance: Instance, now: datetime) -> Decision:
    draft = Draft(definition, instance, now)
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
    draft = Draft(definition, instance, now)
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

    Raises ``InstanceNotActiveError`` for a finished run, a ``ResumeError`` subclass when no
    step can take the event and ``UnencodableValueError`` for a payload no storage can hold
    (see ``hephaestus._core.values``); nothing changes in any case.
    """
    _check_resumable(instance, payload, step)
    target = _resume_target(definition, instance, event, step)
    data = check_mapping(payload, "payload")  # a private copy, or UnencodableValueError
    draft = Draft(definition, instance, now)
    state = instance.steps.get(target)
    if state is not None and state.status is StepStatus.WAITING:
        draft.deliver(target, event, data, source="external")
    else:
        draft.inbox = (*draft.inbox, PendingResume(target, event, data, now))
        draft.history.append(
            HistoryEntry(
                now, HistoryKind.RESUME_BUFFERED, target, event, data=ReadOnlyMapping(data)
            )
        )
    return draft.finish()


def schedule_resume(
    definition: WorkflowDefinition,
    instance: Instance,
    *,
    step: str,
    event: str,
    payload: Mapping[str, Any] | None,
    at: datetime,
    now: datetime,
    id: str | None = None,
) -> Decision:
    """Schedule ``event`` for ``step`` at ``at``: a durable, caller-side delayed resume.

    The event must be one a transition routes from ``step``, and ``step`` must be waiting or
    still able to wait (``InvalidEventError`` / ``StepNotWaitingError``; a finished run raises
    ``InstanceNotActiveError``; a payload no storage can hold, ``UnencodableValueError``);
    nothing changes when it raises. The decision stores a
    ``ScheduledResume`` (the last of ``instance.scheduled``) and emits ``StartTimer`` with its
    id as ``timer``; the runner calls ``fire_timer(..., timer=id)`` when it is due.
    """
    _check_resumable(instance, payload, step)
    target = _resume_target(definition, instance, event, step)
    data = check_mapping(payload, "payload")  # a private copy, or UnencodableValueError
    item = ScheduledResume(
        id=str(instance.revision + 1) if id is None else id,
        step=target,
        event=event,
        payload=data,
        at=at,
    )
    draft = Draft(definition, instance, now)
    draft.scheduled = (*draft.scheduled, item)
    draft.history.append(
        HistoryEntry(
            now,
            HistoryKind.RESUME_SCHEDULED,
            target,
            event,
            data={"id": item.id, "at": at.isoformat()},
            source="scheduled",
        )
    )
    draft.commands.append(StartTimer(target, at, event, item.id))
    return draft.finish()


def fire_timer(
    definition: WorkflowDefinition,
    instance: Instance,
    *,
    step: str,
    at: datetime,
    now: datetime,
    timer: str | None = None,
) -> Decision:
    """A timer expired: the step's own timeout, or the scheduled resume ``timer`` names.

    Stale timers (step resumed, scheduled resume dropped, run over) change nothing.
    """
    if timer is not None:
        return _fire_scheduled(definition, instance, step=step, timer=timer, now=now)
    state = instance.steps.get(step)
    if (
        instance.is_terminal
        or state is None
        or state.status is not StepStatus.WAITING
        or state.timer_at != at
        or state.timer_event is None
    ):
        return _unchanged(instance)
    draft = Draft(definition, instance, now)
    draft.deliver(step, state.timer_event, {}, source="timer", armed=False)
    return draft.finish()


def _fire_scheduled(
    definition: WorkflowDefinition, instance: Instance, *, step: str, timer: str, now: datetime
) -> Decision:
    item = next((s for s in instance.scheduled if s.id == timer and s.step == step), None)
    if instance.is_terminal or item is None:
        return _unchanged(instance)
    draft = Draft(definition, instance, now)
    draft.scheduled = tuple(s for s in draft.scheduled if s is not item)
    state = instance.steps.get(step)
    if state is not None and state.status is StepStatus.WAITING:
        draft.deliver(step, item.event, item.payload, source="scheduled")
    elif state is None or state.status is StepStatus.ACTIVE:
        # Not waiting yet: kept like an early resume, delivered when the step waits.
        draft.inbox = (
            *draft.inbox,
            PendingResume(step, item.event, item.payload, now, source="scheduled"),
        )
        draft.history.append(
            HistoryEntry(
                now,
                HistoryKind.RESUME_BUFFERED,
                step,
                item.event,
                data=item.payload,
                source="scheduled",
            )
        )
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
    touched: list[str] = []
    commands = close_open_steps(steps, touched)
    commands.extend(drop_scheduled(instance.scheduled))
    entry = HistoryEntry(
        now,
        HistoryKind.CANCELLED,
        data=None
        if reason is None
        else ReadOnlyMapping(check_mapping({"reason": reason}, "cancel")),
    )
    return Decision(
        rebuild(
            instance,
            now,
            status=Status.CANCELLED,
            steps=steps,
            history=(*instance.history, entry),
            scheduled=(),
        ),
        tuple(commands),
        changes=Changes(history=(entry,), steps=tuple(touched)),
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
    commands.extend(StartTimer(s.step, s.at, s.event, s.id) for s in instance.scheduled)
    return tuple(commands)


# ---------------------------------------------------------------------------------------------
# Internals


def _check_resumable(
    instance: Instance, payload: Mapping[str, Any] | None, step: str | None
) -> None:
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
        if event not in node.routed_events:
            raise InvalidEventError(
                f"no transition of {definition.name} routes event {event!r} from step "
                f"{step!r} (routable: {sorted(node.routed_events)})",
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
    matching = [key for key in waiting if event in nodes[key].routed_events]
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
        and event in node.routed_events
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
        accepted = {key: sorted(nodes[key].routed_events) for key in waiting}
        raise InvalidEventError(
            f"no waiting step of {instance.id} can take {event!r}: no transition routes it "
            f"(waiting steps and their routable events: {accepted})",
            instance_id=instance.id,
        )
    unrouted = sorted(
        key
        for key, node in nodes.items()
        if event in node.events
        and (instance.steps.get(key) is None or instance.steps[key].status is StepStatus.ACTIVE)
    )
    if unrouted:
        raise InvalidEventError(
            f"steps {unrouted} of {instance.id} declare {event!r} but no transition of "
            f"{definition.name} routes it from them, so it cannot be delivered",
            instance_id=instance.id,
        )
    raise StepNotWaitingError(
        f"no step of {instance.id} waits for or can still take {event!r}",
        instance_id=instance.id,
    )

"""The working copy an engine call mutates, and the routing and join rules it applies.

A ``Draft`` lives for one engine call: it copies what it changes, applies step completions,
routing, joins (by each join's policy) and failure, and ``finish`` freezes the result into a new
``Instance`` plus commands. Nothing outside the engine uses it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from hephaestus._core.commands import (
    AbortStep,
    CancelTimer,
    Changes,
    Command,
    Decision,
    Failure,
    RunStep,
    StartTimer,
)
from hephaestus._core.definition import Node, Target, WorkflowDefinition, parse_target
from hephaestus._core.instance import (
    Context,
    ErrorInfo,
    HistoryEntry,
    HistoryKind,
    Instance,
    JoinState,
    PendingResume,
    ScheduledResume,
    Status,
    StepState,
    StepStatus,
)
from hephaestus._core.results import failure_from_exception
from hephaestus._core.steps import Async, Config, context_key
from hephaestus._core.values import ReadOnlyMapping, readonly_context

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Draft", "close_open_steps", "drop_scheduled", "rebuild"]

_NONE: frozenset[str] = frozenset()


def _frozen(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """History data shares the stored dict; a read-only view keeps steps from changing it."""
    return ReadOnlyMapping(data) if data else None


def close_open_steps(steps: dict[str, StepState], touched: list[str]) -> list[Command]:
    """Mark active and waiting steps cancelled (noting them in ``touched``); return the
    commands that stop them."""
    commands: list[Command] = []
    for key, state in steps.items():
        if state.status is StepStatus.ACTIVE:
            steps[key] = _with_status(state, StepStatus.CANCELLED)
            touched.append(key)
            commands.append(AbortStep(key))
        elif state.status is StepStatus.WAITING:
            steps[key] = _with_status(state, StepStatus.CANCELLED)
            touched.append(key)
            if state.timer_at is not None:
                commands.append(CancelTimer(key))
    return commands


def drop_scheduled(scheduled: tuple[ScheduledResume, ...]) -> list[Command]:
    """The commands that disarm the timers of ``scheduled`` (the run ended before they fired)."""
    return [CancelTimer(item.step, item.id) for item in scheduled]


def _with_status(state: StepState, status: StepStatus) -> StepState:
    return StepState(
        status=status,
        attempt=state.attempt,
        config=state.config,
        event=state.event,
        error=state.error,
    )


def rebuild(
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
    scheduled: tuple[ScheduledResume, ...] | None = None,
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
        trace_context=instance.trace_context,
        scheduled=instance.scheduled if scheduled is None else scheduled,
    )


class Draft:
    """A mutable working copy used inside one engine call, frozen again by ``finish``."""

    __slots__ = (
        "activated",
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
        "scheduled",
        "steps",
        "touched_joins",
        "touched_results",
        "touched_steps",
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
        self.scheduled = instance.scheduled
        self.history: list[HistoryEntry] = []
        self.commands: list[Command] = []
        self.error: ErrorInfo | None = None
        self.done = False
        # What this decision changes (``Changes``): keys written, repeats allowed.
        self.touched_steps: list[str] = []
        self.touched_results: list[str] = []
        self.touched_joins: list[str] = []
        self.activated: list[str] = []

    def set_step(self, key: str, state: StepState) -> None:
        self.steps[key] = state
        self.touched_steps.append(key)

    # -- step lifecycle -------------------------------------------------------------------

    def activate(self, key: str, config: Config) -> None:
        node = self.definition.nodes[key]
        self.activated.append(key)
        self.steps[key] = StepState(StepStatus.ACTIVE, config=config)
        self.touched_steps.append(key)
        if node.is_done:
            self.complete(key, "done", {}, {})
            return
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
        self.set_step(
            key,
            StepState(
                StepStatus.COMPLETED, attempt=state.attempt, config=state.config, event=event
            ),
        )
        data = dict(updates)
        if self.context_steps is None:
            self.context_steps = dict(self.instance.context.steps)
        self.context_steps[key] = data
        self.touched_results.append(key)
        if metadata:
            if self.metadata is None:
                self.metadata = dict(self.instance.runtime_metadata)
            self.metadata.update(metadata)
        self.history.append(
            HistoryEntry(
                self.now,
                kind,
                key,
                event,
                state.attempt,
                ReadOnlyMapping(data) if data else None,  # steps see history: keep it read-only
                source,
            )
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
        self.set_step(
            key,
            StepState(
                StepStatus.WAITING,
                attempt=state.attempt,
                config=state.config,
                timer_at=timer_at,
                timer_event=outcome.timeout_event if timer_at is not None else None,
            ),
        )
        self.history.append(
            HistoryEntry(self.now, HistoryKind.STEP_WAITING, key, attempt=state.attempt)
        )
        for pending in self.inbox:
            if pending.step == key:  # a resume that came early: deliver it, arm no timer
                self.inbox = tuple(p for p in self.inbox if p is not pending)
                self.deliver(
                    key, pending.event, pending.payload, source=pending.source, armed=False
                )
                return
        if timer_at is not None:
            self.commands.append(StartTimer(key, timer_at, outcome.timeout_event))

    def deliver(
        self,
        key: str,
        event: str,
        payload: Mapping[str, Any],
        *,
        source: str,
        armed: bool = True,
    ) -> None:
        """Complete a waiting step with a resume; ``armed``: its timer is still pending."""
        state = self.steps[key]
        if state.timer_at is not None and armed:
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
            self.set_step(
                key,
                StepState(
                    StepStatus.ACTIVE,
                    attempt=attempt,
                    config=state.config,
                    run_after=run_after,
                    error=error,
                ),
            )
            self.history.append(
                HistoryEntry(
                    self.now, HistoryKind.STEP_RETRYING, key, attempt=state.attempt, error=error
                )
            )
            self.commands.append(RunStep(key, attempt, state.config, run_after))
            return
        failed = StepState(
            StepStatus.FAILED, attempt=state.attempt, config=state.config, error=error
        )
        self.set_step(key, failed)
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
        context = readonly_context(self.instance.context.initial, self.context_steps or {})
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
                if join is None:
                    resolved = frozenset({source})
                    missed = _NONE if is_taken else frozenset({source})
                else:
                    resolved = join.resolved | {source}
                    missed = join.missed if is_taken else join.missed | {source}
                any_taken = is_taken or (join is not None and join.taken)
                if not (is_taken and config is not None) and join is not None:
                    config = join.config
                self.touched_joins.append(key)
                if len(resolved) < len(target.predecessors):
                    joins[key] = JoinState(resolved, any_taken, config, missed)
                    continue
                joins.pop(key, None)
                # An "all" join runs only if no edge was missed; "any" if one was taken. Either
                # way it resolves only now, once every incoming edge is resolved.
                is_taken = any_taken and not (missed and target.join == "all")
                if any_taken and not is_taken:
                    data = {"policy": "all", "missing": sorted(missed)}
                    self.set_step(key, StepState(StepStatus.SKIPPED))
                    self.history.append(
                        HistoryEntry(self.now, HistoryKind.STEP_SKIPPED, key, data=data)
                    )
                    self.discard_inbox(key)
                    work.extend((key, succ, False, None) for succ in target.successors)
                    continue
            if is_taken:
                self.activate(key, config)
            else:
                self.set_step(key, StepState(StepStatus.SKIPPED))
                self.history.append(HistoryEntry(self.now, HistoryKind.STEP_SKIPPED, key))
                self.discard_inbox(key)
                work.extend((key, succ, False, None) for succ in target.successors)

    def discard_inbox(self, key: str) -> None:
        """Drop what was kept for ``key`` (buffered and scheduled resumes): it resolved."""
        if self.scheduled:
            self.discard_scheduled(key)
        if not self.inbox:
            return
        dropped = [p for p in self.inbox if p.step == key]
        if not dropped:
            return
        self.inbox = tuple(p for p in self.inbox if p.step != key)
        for pending in dropped:
            self.history.append(
                HistoryEntry(
                    self.now,
                    HistoryKind.RESUME_DISCARDED,
                    key,
                    pending.event,
                    data=_frozen(pending.payload),
                )
            )

    def discard_scheduled(self, key: str) -> None:
        dropped = [item for item in self.scheduled if item.step == key]
        if not dropped:
            return
        self.scheduled = tuple(item for item in self.scheduled if item.step != key)
        for item in dropped:
            self.commands.append(CancelTimer(key, item.id))
            self.history.append(
                HistoryEntry(
                    self.now,
                    HistoryKind.RESUME_DISCARDED,
                    key,
                    item.event,
                    data=item.payload,
                    source="scheduled",
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
            self.commands.extend(close_open_steps(self.steps, self.touched_steps))
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
        if status in (Status.FAILED, Status.COMPLETED) and self.scheduled:
            self.commands.extend(drop_scheduled(self.scheduled))
            self.scheduled = ()
        context = None
        if self.context_steps is not None:
            context = Context(instance.context.initial, self.context_steps)
        appended = tuple(self.history)
        new = rebuild(
            instance,
            self.now,
            status=status,
            steps=self.steps,
            history=instance.history + appended,
            joins=self.joins,
            inbox=self.inbox,
            context=context,
            runtime_metadata=self.metadata,
            error=error,
            scheduled=self.scheduled,
        )
        changes = Changes(
            appended, self.touched_steps, self.touched_results, self.touched_joins, self.activated
        )
        return Decision(new, tuple(self.commands), True, changes)

    def open_status(self) -> Status:
        waiting = False
        for state in reversed(self.steps.values()):
            if state.status is StepStatus.ACTIVE:
                return Status.RUNNING
            if state.status is StepStatus.WAITING:
                waiting = True
        return Status.WAITING if waiting else Status.FAILED

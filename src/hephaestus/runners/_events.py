"""Telemetry events derived from each decision (shared by every runner).

The driver calls ``emit_decision`` after it persists a decision, and ``emit_step_start`` when a
step attempt begins; everything is read from what the decision says it changed (its
``changes``: the history entries it appended, the steps it activated) and the new instance.
Events are therefore the same whichever runner executes a run, and a recovered run adds no
``started`` entry, so it emits no second ``workflow.start``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from hephaestus import telemetry
from hephaestus._core.instance import HistoryKind, Instance, Status, StepStatus

if TYPE_CHECKING:
    from hephaestus._core.commands import Decision
    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus._core.instance import ErrorInfo, HistoryEntry

__all__ = ["FAILURE_LOG", "base_metadata", "emit_decision", "emit_step_start", "log_failures"]

FAILURE_LOG = logging.getLogger("hephaestus.runs")
"""Where failed runs and steps that failed for good are logged, at WARNING, whatever telemetry
handlers are attached: without any logging set up, Python's last-resort handler prints them."""

_COMPLETIONS = (HistoryKind.STEP_COMPLETED, HistoryKind.STEP_RESUMED)


def base_metadata(
    definition: WorkflowDefinition, instance: Instance, runner: str
) -> dict[str, Any]:
    """Metadata every event of ``instance`` carries.

    Workflow-declared metadata, overlaid by the caller's (given at ``start``), overlaid by the
    core fields, which always win.
    """
    return {
        **definition.metadata,
        **instance.metadata,
        "instance_id": instance.id,
        "run_id": instance.run_id,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        "tags": definition.tags,
        "runner": runner,
        "trace_context": instance.trace_context,
    }


def _step_fields(definition: WorkflowDefinition, key: str) -> dict[str, Any]:
    node = definition.nodes.get(key)
    cls = None if node is None else node.step
    return {
        "step": key,
        "step_key": key,
        "step_class": None if cls is None else f"{cls.__module__}.{cls.__qualname__}",
    }


def emit_step_start(
    definition: WorkflowDefinition, instance: Instance, step: str, attempt: int, *, runner: str
) -> None:
    """``step.start``: a runner is about to execute attempt ``attempt`` of ``step``.

    ``active_steps_count`` is how many steps of the run are dispatched and not finished (this
    one included; steps waiting for an event are not counted), ``concurrent`` whether others
    are: as the seed's event reports them.
    """
    active = sum(1 for state in instance.steps.values() if state.status is StepStatus.ACTIVE)
    active = max(active, 1)  # this attempt runs, whatever state the runner's copy shows
    telemetry.emit(
        "hephaestus.step.start",
        {"system_time": time.time()},
        {
            **base_metadata(definition, instance, runner),
            **_step_fields(definition, step),
            "attempt": attempt,
            "concurrent": active > 1,
            "active_steps_count": active,
        },
    )


def _waited(after: Instance, entry: HistoryEntry) -> float:
    for earlier in reversed(after.history):
        if earlier.kind is HistoryKind.STEP_WAITING and earlier.step == entry.step:
            return max(0.0, (entry.at - earlier.at).total_seconds())
    return 0.0


def _run_duration(instance: Instance, entry: HistoryEntry) -> float:
    return max(0.0, (entry.at - instance.created_at).total_seconds())


def emit_decision(
    definition: WorkflowDefinition,
    decision: Decision,
    step_duration: float | None = None,
    *,
    runner: str,
) -> None:
    """Emit the events a persisted decision stands for, from what it says it changed.

    ``step_duration`` is how long the step attempt whose result this decision applied ran.
    ``Done`` is completed inline by the engine (no runner executes it), so it emits no step
    events: ``workflow.stop`` stands for it. A decision that leaves the run waiting, whatever
    led there (a step's ``Async``, the last running branch of a fan-out ending, a resume whose
    join still waits), ends with ``workflow.suspend``: the one place handlers learn the run
    sleeps.
    """
    after = decision.instance
    changes = decision.changes
    entries = changes.history
    base = base_metadata(definition, after, runner)
    duration = 0.0 if step_duration is None else step_duration
    done = definition.done
    emit = telemetry.emit
    for entry in entries:
        kind = entry.kind
        step = entry.step
        if step == done:
            continue
        if kind is HistoryKind.STARTED:
            emit(
                "hephaestus.workflow.start",
                {"system_time": time.time()},
                {**base, "initial_step": definition.start.key},
            )
        elif kind is HistoryKind.STEP_COMPLETED or kind is HistoryKind.STEP_RESUMED:
            fields = {**base, **_step_fields(definition, step or "")}
            if kind is HistoryKind.STEP_COMPLETED:
                emit(
                    "hephaestus.step.stop",
                    {"duration": duration},
                    {**fields, "attempt": entry.attempt, "event": entry.event},
                )
            else:
                emit(
                    "hephaestus.step.resume",
                    {"system_time": time.time(), "wait_duration": _waited(after, entry)},
                    {**fields, "event": entry.event, "source": entry.source},
                )
            error = after.error
            if error is not None and error.kind == "route_error" and error.step == step:
                continue  # routing raised: the run fails, nothing was activated
            targets = tuple(changes.activated)
            emit(
                "hephaestus.workflow.transition",
                {"targets_count": len(targets)},
                {
                    **base,
                    "from_step": step,
                    "event": entry.event,
                    "targets": targets,
                    "fan_out": len(targets) > 1,
                },
            )
        elif kind is HistoryKind.STEP_WAITING:
            state = after.steps.get(step or "")
            timeout = None
            if state is not None and state.timer_at is not None:
                timeout = (state.timer_at - entry.at).total_seconds()
            emit(
                "hephaestus.step.async",
                {"duration": duration},
                {
                    **base,
                    **_step_fields(definition, step or ""),
                    "attempt": entry.attempt,
                    "timeout": timeout,
                    "instance_status": after.status.value,
                },
            )
        elif kind is HistoryKind.STEP_RETRYING or kind is HistoryKind.STEP_FAILED:
            retry_in = None
            state = after.steps.get(step or "")
            if kind is HistoryKind.STEP_RETRYING and state is not None and state.run_after:
                retry_in = max(0.0, (state.run_after - entry.at).total_seconds())
            emit(
                "hephaestus.step.exception",
                {"duration": duration},
                {
                    **base,
                    **_step_fields(definition, step or ""),
                    "attempt": entry.attempt,
                    "error": entry.error,
                    "kind": None if entry.error is None else entry.error.kind,
                    "will_retry": kind is HistoryKind.STEP_RETRYING,
                    "retry_in": retry_in,
                },
            )
        elif kind is HistoryKind.COMPLETED:
            steps = sum(
                1
                for key, state in after.steps.items()
                if state.status is StepStatus.COMPLETED and key != done
            )
            emit(
                "hephaestus.workflow.stop",
                {"duration": _run_duration(after, entry), "step_count": steps},
                {**base, "status": "completed"},
            )
        elif kind is HistoryKind.FAILED:
            error = entry.error
            emit(
                "hephaestus.workflow.exception",
                {"duration": _run_duration(after, entry)},
                {
                    **base,
                    "status": "failed",
                    "error": error,
                    "kind": None if error is None else error.kind,
                    "failed_step": None if error is None else error.step,
                },
            )
        elif kind is HistoryKind.CANCELLED:
            reason = None if entry.data is None else entry.data.get("reason")
            emit(
                "hephaestus.workflow.cancel",
                {"duration": _run_duration(after, entry)},
                {**base, "status": "cancelled", "reason": reason},
            )
    if entries and after.status is Status.WAITING:
        waiting = tuple(
            key for key, state in after.steps.items() if state.status is StepStatus.WAITING
        )
        emit(
            "hephaestus.workflow.suspend",
            {"system_time": time.time()},
            {**base, "status": "waiting", "waiting_steps": waiting},
        )


def _reason(error: ErrorInfo | None) -> str:
    if error is None:
        return "no error recorded"
    kind = error.type or error.kind
    return f"{kind}: {error.message}"


def log_failures(decision: Decision) -> None:
    """Log, at WARNING on ``FAILURE_LOG``, a run that failed and a step that failed for good
    (retries exhausted, or not retryable), with the run's ids and the error: one line each,
    one in all when the step's failure failed the run."""
    entries = decision.changes.history
    if not FAILURE_LOG.isEnabledFor(logging.WARNING) or not any(
        entry.kind is HistoryKind.FAILED or entry.kind is HistoryKind.STEP_FAILED
        for entry in entries
    ):
        return
    after = decision.instance
    run_failed = next((e for e in entries if e.kind is HistoryKind.FAILED), None)
    run_error = None if run_failed is None else run_failed.error
    extra = {
        "instance_id": after.id,
        "run_id": after.run_id,
        "workflow": after.workflow,
    }
    for entry in entries:
        if entry.kind is not HistoryKind.STEP_FAILED:
            continue
        if run_error is not None and run_error.step == entry.step:
            continue  # said by the run's line below
        FAILURE_LOG.warning(
            "step %s of %s (run %s, %s) failed at attempt %s and will not be retried: %s",
            entry.step,
            after.id,
            after.run_id,
            after.workflow,
            entry.attempt,
            _reason(entry.error),
            extra={**extra, "step": entry.step, "attempt": entry.attempt},
        )
    if run_failed is not None:
        where = ""
        if run_error is not None and run_error.step is not None:
            where = f" at step {run_error.step}"
            if run_error.attempt is not None:
                where += f" (attempt {run_error.attempt}, not retried further)"
        FAILURE_LOG.warning(
            "run %s (run %s, %s) failed%s: %s",
            after.id,
            after.run_id,
            after.workflow,
            where,
            _reason(run_error),
            extra={**extra, "step": None if run_error is None else run_error.step},
        )

"""Telemetry events derived from a run's new history entries (shared by every runner).

Deriving events from history keeps them consistent across runners and recoveries: a recovered
run adds no ``started`` entry, so it emits no second ``workflow.start``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hephaestus import telemetry
from hephaestus._core.instance import HistoryEntry, HistoryKind, Instance

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["emit_history", "event_metadata"]


def event_metadata(instance: Instance, **fields: Any) -> dict[str, Any]:
    """Caller metadata, overlaid with the core fields (which always win)."""
    return {
        **instance.metadata,
        "instance_id": instance.id,
        "run_id": instance.run_id,
        "workflow": instance.workflow,
        "workflow_version": instance.workflow_version,
        **fields,
    }


def _run_duration(instance: Instance, entry: HistoryEntry) -> float:
    return max(0.0, (entry.at - instance.created_at).total_seconds())


def emit_history(
    instance: Instance,
    entries: Iterable[HistoryEntry],
    step_duration: float | None = None,
    *,
    done_step: str,
) -> None:
    """Emit the telemetry events that ``entries`` (just appended to ``instance``) stand for.

    ``done_step`` is the key of the workflow's ``Done`` step. The engine completes it inline
    (no runner executes it, so it has no ``step.start``); ``workflow.stop`` stands for it.
    """
    duration = 0.0 if step_duration is None else step_duration
    for entry in entries:
        kind = entry.kind
        if kind is HistoryKind.STEP_COMPLETED and entry.step == done_step:
            continue
        if kind is HistoryKind.STARTED:
            first = next(iter(instance.steps), None)
            telemetry.emit(
                "hephaestus.workflow.start",
                {"system_time": time.time()},
                event_metadata(instance, initial_step=first),
            )
        elif kind is HistoryKind.STEP_COMPLETED:
            telemetry.emit(
                "hephaestus.step.stop",
                {"duration": duration},
                event_metadata(instance, step=entry.step, attempt=entry.attempt, event=entry.event),
            )
        elif kind is HistoryKind.STEP_WAITING:
            state = instance.steps.get(entry.step or "")
            timeout = None
            if state is not None and state.timer_at is not None:
                timeout = (state.timer_at - entry.at).total_seconds()
            telemetry.emit(
                "hephaestus.step.async",
                {"duration": duration},
                event_metadata(instance, step=entry.step, attempt=entry.attempt, timeout=timeout),
            )
        elif kind in (HistoryKind.STEP_RETRYING, HistoryKind.STEP_FAILED):
            retry_in = None
            state = instance.steps.get(entry.step or "")
            if kind is HistoryKind.STEP_RETRYING and state is not None and state.run_after:
                retry_in = max(0.0, (state.run_after - entry.at).total_seconds())
            telemetry.emit(
                "hephaestus.step.exception",
                {"duration": duration},
                event_metadata(
                    instance,
                    step=entry.step,
                    attempt=entry.attempt,
                    error=entry.error,
                    will_retry=kind is HistoryKind.STEP_RETRYING,
                    retry_in=retry_in,
                ),
            )
        elif kind is HistoryKind.STEP_RESUMED:
            telemetry.emit(
                "hephaestus.step.resume",
                {"system_time": time.time()},
                event_metadata(instance, step=entry.step, event=entry.event, source=entry.source),
            )
        elif kind is HistoryKind.COMPLETED:
            telemetry.emit(
                "hephaestus.workflow.stop",
                {"duration": _run_duration(instance, entry)},
                event_metadata(instance, status="completed"),
            )
        elif kind is HistoryKind.FAILED:
            telemetry.emit(
                "hephaestus.workflow.exception",
                {"duration": _run_duration(instance, entry)},
                event_metadata(instance, status="failed", error=entry.error),
            )
        elif kind is HistoryKind.CANCELLED:
            telemetry.emit(
                "hephaestus.workflow.cancel",
                {"duration": _run_duration(instance, entry)},
                event_metadata(instance, status="cancelled"),
            )

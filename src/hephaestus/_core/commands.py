"""What the engine tells a runner to do, and what a runner tells the engine a step did."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hephaestus._core.records import record
from hephaestus._core.steps import Async, Ok

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime
    from typing import Any

    from hephaestus._core.instance import ErrorInfo, HistoryEntry, Instance
    from hephaestus._core.steps import Config

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
    """At ``at``, call ``fire_timer`` for ``step`` (passing ``timer``).

    ``timer`` is ``None`` for the step's own timeout (``Async(timeout=)``), else the id of a
    ``ScheduledResume``: a step may have both, so runners key timers by ``(step, timer)``.
    """

    step: str
    at: datetime
    event: str
    timer: str | None = None


@record
class CancelTimer:
    """Disarm the timer ``StartTimer(step, ..., timer=timer)`` armed."""

    step: str
    timer: str | None = None


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
class Changes:
    """What one decision changed, so that storage writes and telemetry need no comparing.

    ``history``: the entries it appended (the tail of ``instance.history``); ``steps``: the
    steps whose state it added or replaced; ``results``: the ``context.steps`` entries it
    wrote; ``joins``: the join states it added, replaced or removed; ``activated``: the steps
    it made active, in order (``Done`` included when reached). The engine never removes a step
    state or a result. ``steps``, ``results`` and ``joins`` may name a key more than once (a
    step activated and completed in one decision): the engine does not pay to remove repeats
    that only a storage writing parts needs removed.
    """

    history: tuple[HistoryEntry, ...] = ()
    steps: Sequence[str] = ()
    results: Sequence[str] = ()
    joins: Sequence[str] = ()
    activated: Sequence[str] = ()


NO_CHANGES = Changes()


@record
class Decision:
    """The engine's answer: the next instance state and what the runner must do.

    ``changed`` is false for stale input (a late result, an old timer): nothing to persist.
    ``changes`` says what differs from the instance the decision was taken on (for a new run,
    everything in it).
    """

    instance: Instance
    commands: tuple[Command, ...] = ()
    changed: bool = True
    changes: Changes = NO_CHANGES


# -- inputs: what a runner applies to a run (``engine.decide``) --------------------------------


@record
class Begin:
    """Take a ``pending`` run's first decision (a run created in a caller's transaction)."""


@record
class StepFinished:
    """Attempt ``attempt`` of ``step`` ended with ``outcome``."""

    step: str
    attempt: int
    outcome: Outcome


@record
class Resume:
    """An external event for a waiting step (``step=None``: the one that can take it)."""

    event: str
    payload: Mapping[str, Any] | None = None
    step: str | None = None


@record
class ScheduleResume:
    """Deliver ``event`` to ``step`` at ``at`` (durably, with the run).

    ``id`` names the scheduled resume; by default the engine derives one from the run's
    revision. A caller that must know it before the run's owner applies the input (it is
    sent to another process) gives one of its own.
    """

    step: str
    event: str
    payload: Mapping[str, Any] | None
    at: datetime
    id: str | None = None


@record
class FireTimer:
    """The timer a ``StartTimer`` armed is due."""

    step: str
    at: datetime
    timer: str | None = None


@record
class Cancel:
    """Stop the run (``reason`` is kept in its history)."""

    reason: str | None = None


Input = Begin | StepFinished | Resume | ScheduleResume | FireTimer | Cancel
"""Everything that can advance a stored run; ``engine.decide`` applies any of them."""

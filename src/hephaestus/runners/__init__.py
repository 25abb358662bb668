"""Who executes steps: the ``Runner`` protocol, the runner kit, and the local asyncio runner.

A runner owns execution and is the single writer of the runs it executes. The kit is what
every runner shares, so that a new runner (the local one, the Oban one, yours) is a thin
adapter over one implementation:

- ``StepExecutor`` runs one step attempt and reports its ``Outcome`` (timeouts, threads,
  cancellation, exceptions turned into failures, the read-only view a step sees);
- ``Driver`` applies an ``Input`` to a run: load → decide (``engine.decide``) → save, in a
  unit of work the runner can add its own writes to (``Driver.apply_stored``), then emits
  telemetry; the runner carries out the decision's ``Command``\\ s;
- the types: commands (``RunStep``, ``StartTimer``, ``CancelTimer``, ``AbortStep``), inputs
  (``Begin``, ``StepFinished``, ``Resume``, ``ScheduleResume``, ``FireTimer``, ``Cancel``),
  ``Decision`` and its ``Changes``, outcomes (``Ok``, ``Async``, ``Failure``), and
  ``TimerHandle`` (what ``Clock.call_at`` returns);
- ``recover_commands``: what a stored active run needs re-issued when a runner takes it over
  (a ``pending`` run needs none: apply ``Begin()`` to it).

A runner written outside the package needs nothing else (``tests/runners`` has one, and the
runner contract suite every runner passes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hephaestus._clock import TimerHandle
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
from hephaestus._core.engine import recover as recover_commands
from hephaestus.runners._driver import Applied, Driver
from hephaestus.runners._executor import StepExecutor
from hephaestus.runners._local import LocalRunner

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hephaestus._clock import Clock
    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus._core.instance import Instance
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import Storage, Work

__all__ = [
    "AbortStep",
    "Applied",
    "Begin",
    "Cancel",
    "CancelTimer",
    "Changes",
    "Command",
    "Decision",
    "Driver",
    "Failure",
    "FireTimer",
    "Input",
    "JoiningRunner",
    "LocalRunner",
    "Outcome",
    "Resume",
    "RunStep",
    "Runner",
    "RuntimeEnv",
    "ScheduleResume",
    "StartTimer",
    "StepExecutor",
    "StepFinished",
    "TimerHandle",
    "recover_commands",
]


@dataclass(frozen=True, slots=True)
class RuntimeEnv:
    """What the app hands its runner when it opens."""

    storage: Storage
    registry: WorkflowRegistry
    clock: Clock
    recover: bool = True
    telemetry: bool = True
    """Whether to emit telemetry events (``Hephaestus(telemetry=False)`` turns them off); the
    ``Driver`` honours it."""
    resources: Mapping[str, Any] = field(default_factory=dict)
    """The app's resources for steps (``Hephaestus(resources=...)``, a live read-only view);
    a runner hands the env to ``StepExecutor.open`` so that steps see them as
    ``run.resources``."""


@runtime_checkable
class Runner(Protocol):
    """Executes runs. Every method is called on the app's event loop.

    Test helpers (``hephaestus.testing``) ask a runner that also implements
    ``hephaestus.testing.IdleAware`` (``wait_idle()``) when it is idle, and watch the storage
    of any other; it is not part of this protocol.
    """

    async def open(self, env: RuntimeEnv) -> None:
        """Start; with ``env.recover``, pick up every active run found in storage."""

    async def close(self) -> None:
        """Stop executing; runs stay in storage as they are, to be recovered later."""

    async def start(self, definition: WorkflowDefinition, run: Instance) -> None:
        """Store the new run ``run`` (``engine.pending``: not stored yet, revision 1) and
        execute it. Storing decides uniqueness (``InstanceAlreadyRunningError``); when this
        returns the run is durable. A runner may begin it first (``Begin``) and store the
        result, or store it pending and begin it later."""

    # Runs started and inputs sent inside a caller's transaction (``conn=``) do not come
    # through ``start`` or ``apply``: they wait in storage (a ``pending`` run, an inbox entry)
    # and a ``JoinableStorage`` announces them (``watch``, ``awaiting``); a runner takes them
    # with ``Driver.apply_next``, as the local runner does.

    async def apply(self, run_id: str, input: Resume | ScheduleResume | Cancel) -> Decision:
        """Apply a caller's input to a stored run and carry out the decision; returns it.

        Raises the engine's errors when the input cannot be applied (nothing changes then).
        A ``Cancel`` applies even to a run that no longer fits its definition.
        """


@runtime_checkable
class JoiningRunner(Protocol):
    """A runner that adds its own writes to a caller's transaction (``conn=``); optional.

    After a run is started, or a resume or cancel queued for a run, in a caller's transaction,
    the app runs the statements ``joined`` yields on the caller's connection, in the same
    transaction: they commit or roll back with the caller's work. The Oban runner inserts the
    job that takes the run there, so no process needs to hear the storage's announcement.
    """

    def joined(self, run_id: str) -> Work[None]:
        """Statements (as ``CallerTransaction`` work) to run after the storage's own."""
        ...

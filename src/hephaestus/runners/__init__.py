"""Who executes steps: the ``Runner`` protocol and the local asyncio runner.

A runner owns execution and is the single writer of the instances it runs: it applies engine
decisions, persists them through storage and carries out the commands they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hephaestus.runners._local import LocalRunner

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from hephaestus._clock import Clock
    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus._core.engine import Decision
    from hephaestus._core.instance import ScheduledResume
    from hephaestus._core.registry import WorkflowRegistry
    from hephaestus.storage import Storage

__all__ = ["LocalRunner", "Runner", "RuntimeEnv"]


@dataclass(frozen=True, slots=True)
class RuntimeEnv:
    """What the app hands its runner when it opens."""

    storage: Storage
    registry: WorkflowRegistry
    clock: Clock
    recover: bool = True
    telemetry: bool = True
    """Whether to emit telemetry events (``Hephaestus(telemetry=False)`` turns them off).

    A runner emits them with ``hephaestus.runners._events``: ``emit_step_start`` as it begins
    a step attempt, ``emit_decision`` after it persists each decision.
    """


@runtime_checkable
class Runner(Protocol):
    """Executes runs. Every method is called on the app's event loop."""

    async def open(self, env: RuntimeEnv) -> None:
        """Start; with ``env.recover``, pick up every active run found in storage."""

    async def close(self) -> None:
        """Stop executing; runs stay in storage as they are, to be recovered later."""

    async def start(self, definition: WorkflowDefinition, decision: Decision) -> None:
        """Persist a new run atomically (uniqueness included), then execute it."""

    async def resume(
        self, run_id: str, *, event: str, payload: Mapping[str, Any] | None, step: str | None
    ) -> None:
        """Deliver an external event; raises the engine's errors when it cannot be delivered."""

    async def schedule_resume(
        self,
        run_id: str,
        *,
        step: str,
        event: str,
        payload: Mapping[str, Any] | None,
        at: datetime,
    ) -> ScheduledResume:
        """Persist a resume of ``step`` due at ``at`` (``engine.schedule_resume``) and arm it.

        Raises the engine's errors when it cannot be delivered; nothing changes then. The runner
        fires it with ``engine.fire_timer(..., timer=id)``, also after a restart (from
        ``engine.recover``).
        """

    async def cancel(self, run_id: str, *, reason: str | None) -> None:
        """Cancel a run, stopping its executions and timers."""

    async def wait_idle(self) -> None:
        """Return once nothing is executing or about to (pending timers aside)."""

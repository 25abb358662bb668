"""What steps see: a read-only ``StepRun``, never the engine's ``Instance``, on every storage."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Config,
    Done,
    Instance,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Workflow,
)
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus import Hephaestus

SEEN: list[dict[str, Any]] = []
"""What each attempt of ``Inspect`` and ``Tamper`` saw, in order."""


def _observe(run: StepRun, context: StepContext) -> dict[str, Any]:
    return {
        "type": type(run),
        "id": run.id,
        "run_id": run.run_id,
        "workflow": run.workflow,
        "workflow_version": run.workflow_version,
        "step": run.step,
        "attempt": run.attempt,
        "metadata": dict(run.metadata),
        "same_context": run.context is context,
        "keys": (run.idempotency_key, context.idempotency_key),
        "internals": [
            name for name in ("status", "steps", "history", "revision") if hasattr(run, name)
        ],
    }


class Inspect(Step):
    """Fails its first attempt, so the second sees ``attempt == 2``; runs in a worker thread."""

    events = ("seen",)
    retry = RetryPolicy(max_attempts=2, initial_delay=1)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        SEEN.append(_observe(run, context))
        if run.attempt == 1:
            raise RuntimeError("first attempt fails")
        return Ok("seen")


class Tamper(Step):
    """Tries every way to change the run through its view; records what each attempt raised."""

    events = ("tampered",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        seen = _observe(run, context)
        metadata: Any = run.metadata  # Any: the type checker would refuse these writes already
        initial: Any = context.initial
        refusals: list[str] = []
        changes: list[Callable[[], object]] = [
            lambda: setattr(run, "id", "order::other"),
            lambda: setattr(run, "status", Status.FAILED),
            lambda: delattr(run, "workflow"),
            lambda: operator.setitem(metadata, "tier", "bronze"),
            lambda: operator.setitem(initial, "total", 0),
        ]
        for change in changes:
            try:
                change()
            except (AttributeError, TypeError) as exc:
                refusals.append(type(exc).__name__)
        run.metadata["tags"].append("tampered")  # a copy: nothing stored changes
        run.context.initial["lines"].append(99)
        seen["refusals"] = refusals
        SEEN.append(seen)
        return Ok("tampered")


class Viewed(Workflow):
    unique = Unique(key="viewed")
    version = 3
    start_step = Inspect
    transitions = {
        (Inspect, "seen"): Tamper,
        (Tamper, "tampered"): Done,
    }


@pytest.fixture(autouse=True)
def _forget_seen() -> None:
    SEEN.clear()


async def test_steps_receive_a_step_run_with_the_runs_identity(app: Hephaestus) -> None:
    """Each attempt gets a ``StepRun`` of its run, step and attempt, with the caller's metadata."""
    await Viewed.start("a1", {"lines": [1]}, metadata={"tier": "gold", "tags": ["x"]})
    await run_until_idle(app, skip_timers=True)
    stored = await Viewed.get("a1")
    assert stored.status is Status.COMPLETED
    first, second, tamper = SEEN
    for seen, step, attempt in (
        (first, "inspect", 1),
        (second, "inspect", 2),
        (tamper, "tamper", 1),
    ):
        assert seen["type"] is StepRun
        assert (seen["id"], seen["run_id"]) == ("viewed::a1", stored.run_id)
        assert (seen["workflow"], seen["workflow_version"]) == (stored.workflow, 3)
        assert (seen["step"], seen["attempt"]) == (step, attempt)
        assert seen["metadata"] == {"tier": "gold", "tags": ["x"]}
        assert seen["same_context"]
        assert seen["keys"][0] == seen["keys"][1] == f"viewed::a1/{stored.run_id}/{step}/{attempt}"
        assert seen["internals"] == []


async def test_a_step_cannot_change_the_stored_run_through_its_view(app: Hephaestus) -> None:
    """Setting, deleting or writing through a ``StepRun`` is refused or lands on a copy."""
    await Viewed.start("a2", {"lines": [1]}, metadata={"tier": "gold", "tags": ["x"]})
    await run_until_idle(app, skip_timers=True)
    stored: Instance = await Viewed.get("a2")
    assert SEEN[-1]["refusals"] == [
        "AttributeError",
        "AttributeError",
        "AttributeError",
        "TypeError",
        "TypeError",
    ]
    assert stored.status is Status.COMPLETED
    assert stored.id == "viewed::a2"
    assert stored.metadata == {"tier": "gold", "tags": ["x"]}
    assert stored.context.initial == {"lines": [1]}

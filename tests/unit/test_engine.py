"""Pure engine tests: definitions and results in, (instance, commands) out, with time fixed.

This module tests starting, completing, branching and joining, and holds what the other
``test_engine_*`` modules share: helpers, steps and workflows. Routes are tested in
``test_engine_routes.py``; interpret and retries in ``test_engine_results.py``; Async, resume and
timers in ``test_engine_waiting.py``; stale input, cancel, recover and revision bookkeeping in
``test_engine_lifecycle.py``.
"""

# Workflow ``transitions`` are class-level declarations read once, when the class is created:

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Async,
    Done,
    HistoryKind,
    Ok,
    Status,
    Step,
    StepContext,
    StepRun,
    StepState,
    StepStatus,
    WaitForEvent,
    Workflow,
    WorkflowDefinition,
)
from hephaestus._core import engine

if TYPE_CHECKING:
    from hephaestus import Config, Instance, StepResult
    from hephaestus._core.definition import Node

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
TIMER_AT = NOW + timedelta(seconds=60)


# ---------------------------------------------------------------------------------------------
# Helpers


def definition(workflow: type[Workflow]) -> WorkflowDefinition:
    """The compiled (non-versioned) definition of ``workflow``."""
    compiled = workflow.definition()
    assert isinstance(compiled, WorkflowDefinition)
    return compiled


def node(workflow: type[Workflow], key: str) -> Node:
    return definition(workflow).nodes[key]


def start(
    workflow: type[Workflow],
    *,
    initial: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    now: datetime = NOW,
) -> engine.Decision:
    defn = definition(workflow)
    return engine.start(
        defn,
        instance_id="order::1",
        run_id="run-1",
        family=defn.family,
        initial=initial or {},
        now=now,
        unique_key="order::1",
        metadata=metadata,
    )


def begin(workflow: type[Workflow], *, initial: dict[str, Any] | None = None) -> Instance:
    return start(workflow, initial=initial).instance


def returns(
    workflow: type[Workflow], instance: Instance, key: str, raw: object, *, now: datetime = NOW
) -> engine.Decision:
    """Apply what step ``key`` returned (checked by ``interpret``) for its current attempt."""
    defn = definition(workflow)
    return engine.apply_result(
        defn,
        instance,
        step=key,
        attempt=instance.steps[key].attempt,
        outcome=engine.interpret(defn.nodes[key], raw),
        now=now,
    )


def complete(
    workflow: type[Workflow],
    instance: Instance,
    key: str,
    event: str,
    updates: dict[str, Any] | None = None,
    *,
    now: datetime = NOW,
) -> Instance:
    """Complete step ``key`` with ``event`` and return the new instance."""
    decision = returns(workflow, instance, key, Ok(event, updates or {}), now=now)
    assert decision.changed
    return decision.instance


def resume(
    workflow: type[Workflow],
    instance: Instance,
    event: str,
    payload: dict[str, Any] | None = None,
    *,
    step: str | None = None,
    now: datetime = NOW,
) -> engine.Decision:
    return engine.resume(
        definition(workflow), instance, event=event, payload=payload, now=now, step=step
    )


def statuses(instance: Instance) -> dict[str, StepStatus]:
    return {key: state.status for key, state in instance.steps.items()}


def kinds(instance: Instance) -> list[tuple[HistoryKind, str | None]]:
    return [(entry.kind, entry.step) for entry in instance.history]


def run_steps(commands: tuple[engine.Command, ...]) -> list[str]:
    return [c.step for c in commands if isinstance(c, engine.RunStep)]


# ---------------------------------------------------------------------------------------------
# Steps (the tests hand results to the engine; execute() only satisfies the contract)


class Emits(Step):
    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return self.events[0]


class Validate(Emits):
    events = ("valid",)


class Charge(Emits):
    events = ("charged",)


class Review(Emits):
    events = ("approved", "rejected")


class Approve(Emits):
    events = ("ok",)


class Reject(Emits):
    events = ("ok",)


class Refund(Emits):
    events = ("ok",)


class Archive(Emits):
    events = ("ok",)


class Notify(Emits):
    events = ("ok",)


class Split(Emits):
    events = ("ok",)


class Left(Emits):
    events = ("ok",)


class Right(Emits):
    events = ("ok",)


class Mid(Emits):
    events = ("ok",)


class Join(Emits):
    events = ("ok",)


class Maybe(Emits):
    events = ("ok", "skip")


class Hold(WaitForEvent):
    """Waits for ``received``; may time out with ``timeout``."""


class Poll(Emits):
    """Emits ``ok``; declares an optional ``expired`` that a workflow may leave unrouted."""

    events = ("ok",)
    optional_events = ("expired",)


# ---------------------------------------------------------------------------------------------
# Workflows


class LinearFlow(Workflow):
    start_step = Validate
    transitions = {(Validate, "valid"): Charge, (Charge, "charged"): Done}


class ConfiguredFlow(Workflow):
    start_step = (Validate, {"limit": 5})
    transitions = {(Validate, "valid"): (Charge, {"currency": "EUR"}), (Charge, "charged"): Done}


class DoneOnlyFlow(Workflow):
    start_step = Done


class BranchFlow(Workflow):
    start_step = Review
    transitions = {
        (Review, "approved"): Approve,
        (Review, "rejected"): Reject,
        (Approve, "ok"): Done,
        (Reject, "ok"): Done,
    }


class DeepBranchFlow(Workflow):
    start_step = Review
    transitions = {
        (Review, "approved"): Approve,
        (Review, "rejected"): Reject,
        (Reject, "ok"): Refund,
        (Refund, "ok"): Archive,
        (Approve, "ok"): Done,
        (Archive, "ok"): Done,
    }


class ExclusiveJoinFlow(Workflow):
    start_step = Review
    transitions = {
        (Review, "approved"): Approve,
        (Review, "rejected"): Reject,
        (Approve, "ok"): Notify,
        (Reject, "ok"): Notify,
        (Notify, "ok"): Done,
    }


class FanInFlow(Workflow):
    start_step = Split
    transitions = {
        (Split, "ok"): [Left, Right],
        (Left, "ok"): (Join, {"mode": "merge"}),
        (Right, "ok"): Join,
        (Join, "ok"): Done,
    }


class SkipOrJoinFlow(Workflow):
    """Spec §4.2 example 4: S->[B,C]; B:ok->J; B:skip->Done; C->J; J->Done."""

    start_step = Split
    transitions = {
        (Split, "ok"): [Maybe, Right],
        (Maybe, "ok"): Join,
        (Maybe, "skip"): Done,
        (Right, "ok"): Join,
        (Join, "ok"): Done,
    }


class Escalate(Emits):
    events = ("ok",)


class LegalSignoff(WaitForEvent):
    """Waits for ``received`` from legal."""


class FinanceSignoff(WaitForEvent):
    """Waits for ``received`` from finance."""


class ApprovalFlow(Workflow):
    start_step = Validate
    transitions = {
        (Validate, "valid"): Hold,
        (Hold, "received"): Done,
        (Hold, "timeout"): Escalate,
        (Escalate, "ok"): Done,
    }


class SignoffFlow(Workflow):
    start_step = Split
    transitions = {
        (Split, "ok"): [LegalSignoff, FinanceSignoff],
        (LegalSignoff, "received"): Join,
        (FinanceSignoff, "received"): Join,
        (Join, "ok"): Done,
    }


class FanFlow(Workflow):
    start_step = Split
    transitions = {
        (Split, "ok"): [Hold, Left, Right],
        (Hold, "received"): Join,
        (Hold, "timeout"): Join,
        (Left, "ok"): Mid,
        (Mid, "ok"): Join,
        (Right, "ok"): Join,
        (Join, "ok"): Done,
    }


class BufferFlow(Workflow):
    start_step = Review
    transitions = {
        (Review, "approved"): Hold,
        (Review, "rejected"): Reject,
        (Hold, "received"): Done,
        (Reject, "ok"): Done,
    }


class OptionalFlow(Workflow):
    start_step = Poll
    transitions = {(Poll, "ok"): Done}


def waiting_for_approval(timeout: float | None = None) -> Instance:
    """An ApprovalFlow run whose ``hold`` step waits (with a timer when ``timeout`` is set)."""
    instance = complete(ApprovalFlow, begin(ApprovalFlow), "validate", "valid")
    return returns(ApprovalFlow, instance, "hold", Async(timeout=timeout)).instance


def fanned_out() -> Instance:
    """A FanFlow run right after ``split``: hold, left and right are all active."""
    return complete(FanFlow, begin(FanFlow), "split", "ok")


# ---------------------------------------------------------------------------------------------
# start


def test_start_activates_and_dispatches_the_start_step() -> None:
    """start() returns a running instance whose start step is active, plus one RunStep."""
    defn = definition(LinearFlow)
    decision = start(LinearFlow, initial={"order": 7}, metadata={"tenant": "acme"})
    instance = decision.instance

    assert decision.changed
    assert decision.commands == (engine.RunStep("validate", 1, None),)
    assert instance.status is Status.RUNNING
    assert instance.steps == {"validate": StepState(StepStatus.ACTIVE)}
    assert (instance.id, instance.run_id, instance.unique_key) == ("order::1", "run-1", "order::1")
    assert (instance.workflow, instance.workflow_version, instance.family) == (
        defn.name,
        1,
        defn.family,
    )
    assert instance.context.initial == {"order": 7}
    assert instance.context.steps == {}
    assert instance.metadata == {"tenant": "acme"}
    assert instance.created_at == instance.updated_at == NOW
    assert instance.revision == 1
    assert [(e.kind, e.at) for e in instance.history] == [(HistoryKind.STARTED, NOW)]


def test_pending_then_begin_equals_start() -> None:
    """pending() persists a run before its first decision; begin() then acts like start()."""
    defn = definition(LinearFlow)
    pending = engine.pending(
        defn, instance_id="order::1", run_id="run-1", family=defn.family, initial={}, now=NOW
    )
    assert (pending.status, pending.revision, pending.steps) == (Status.PENDING, 1, {})
    assert pending.history == ()
    assert engine.recover(pending) == ()

    decision = engine.begin(defn, pending, NOW)
    assert decision.commands == (engine.RunStep("validate", 1, None),)
    assert decision.instance.revision == 2
    assert decision.instance.status is Status.RUNNING
    assert kinds(decision.instance) == [(HistoryKind.STARTED, None)]

    again = engine.begin(defn, decision.instance, NOW)
    assert not again.changed
    assert again.instance is decision.instance


def test_start_at_done_completes_immediately() -> None:
    """A workflow whose start step is Done is completed by start() with nothing to run."""
    decision = start(DoneOnlyFlow)
    instance = decision.instance

    assert decision.commands == ()
    assert instance.status is Status.COMPLETED
    assert statuses(instance) == {"done": StepStatus.COMPLETED}
    assert instance.context.steps == {"done": {}}
    assert kinds(instance) == [
        (HistoryKind.STARTED, None),
        (HistoryKind.STEP_COMPLETED, "done"),
        (HistoryKind.COMPLETED, None),
    ]


def test_start_and_edge_configs_reach_run_step_and_step_state() -> None:
    """The start config and a transition's config travel in RunStep and StepState.config."""
    decision = start(ConfiguredFlow)
    assert decision.commands == (engine.RunStep("validate", 1, {"limit": 5}),)
    assert decision.instance.steps["validate"].config == {"limit": 5}

    decision = returns(ConfiguredFlow, decision.instance, "validate", "valid")
    assert decision.commands == (engine.RunStep("charge", 1, {"currency": "EUR"}),)
    assert decision.instance.steps["charge"].config == {"currency": "EUR"}


# ---------------------------------------------------------------------------------------------
# Linear completion


def test_linear_run_records_updates_metadata_and_history_until_done() -> None:
    """Each completion stores its updates, merges metadata, logs history; Done completes the run."""
    instance = begin(LinearFlow)

    decision = returns(
        LinearFlow, instance, "validate", Ok("valid", {"total": 42}, metadata={"region": "eu"})
    )
    instance = decision.instance
    assert decision.commands == (engine.RunStep("charge", 1, None),)
    assert instance.status is Status.RUNNING
    assert instance.context.steps == {"validate": {"total": 42}}
    assert instance.runtime_metadata == {"region": "eu"}

    decision = returns(
        LinearFlow, instance, "charge", Ok("charged", metadata={"region": "us", "psp": "x"})
    )
    instance = decision.instance
    assert decision.commands == ()
    assert instance.status is Status.COMPLETED
    assert instance.error is None
    assert instance.context.steps == {"validate": {"total": 42}, "charge": {}, "done": {}}
    assert instance.runtime_metadata == {"region": "us", "psp": "x"}
    assert statuses(instance) == {
        "validate": StepStatus.COMPLETED,
        "charge": StepStatus.COMPLETED,
        "done": StepStatus.COMPLETED,
    }
    assert [(e.kind, e.step, e.event, e.attempt, e.data) for e in instance.history] == [
        (HistoryKind.STARTED, None, None, None, None),
        (HistoryKind.STEP_COMPLETED, "validate", "valid", 1, {"total": 42}),
        (HistoryKind.STEP_COMPLETED, "charge", "charged", 1, None),
        (HistoryKind.STEP_COMPLETED, "done", "done", 1, None),
        (HistoryKind.COMPLETED, None, None, None, None),
    ]
    assert instance.steps["charge"].event == "charged"


# ---------------------------------------------------------------------------------------------
# Exclusive branches


@pytest.mark.parametrize(
    ("event", "taken", "not_taken"),
    [("approved", "approve", "reject"), ("rejected", "reject", "approve")],
)
def test_exclusive_branch_skips_the_other_and_still_reaches_done(
    event: str, taken: str, not_taken: str
) -> None:
    """Taking one branch skips the other, and Done still runs (spec §4.2 item 2 fixed)."""
    instance = complete(BranchFlow, begin(BranchFlow), "review", event)
    assert statuses(instance) == {
        "review": StepStatus.COMPLETED,
        taken: StepStatus.ACTIVE,
        not_taken: StepStatus.SKIPPED,
    }
    assert (HistoryKind.STEP_SKIPPED, not_taken) in kinds(instance)

    decision = returns(BranchFlow, instance, taken, "ok")
    assert decision.instance.status is Status.COMPLETED
    assert decision.instance.steps["done"].status is StepStatus.COMPLETED
    assert "done" in decision.instance.context.steps
    assert not_taken not in decision.instance.context.steps


def test_skip_propagates_down_a_chain_of_untaken_steps() -> None:
    """Every step only reachable through a skipped step is skipped too, in graph order."""
    instance = complete(DeepBranchFlow, begin(DeepBranchFlow), "review", "approved")
    assert [key for kind, key in kinds(instance) if kind is HistoryKind.STEP_SKIPPED] == [
        "reject",
        "refund",
        "archive",
    ]
    assert "done" not in instance.steps
    instance = complete(DeepBranchFlow, instance, "approve", "ok")
    assert instance.status is Status.COMPLETED
    assert instance.steps["done"].status is StepStatus.COMPLETED


def test_long_branch_reaches_done_after_the_short_one_is_skipped() -> None:
    """On the longer branch, Done waits for the last step of that branch and then runs."""
    instance = complete(DeepBranchFlow, begin(DeepBranchFlow), "review", "rejected")
    assert instance.steps["approve"].status is StepStatus.SKIPPED
    for key in ("reject", "refund"):
        instance = complete(DeepBranchFlow, instance, key, "ok")
        assert "done" not in instance.steps
    instance = complete(DeepBranchFlow, instance, "archive", "ok")
    assert instance.status is Status.COMPLETED
    assert list(instance.context.steps) == ["review", "reject", "refund", "archive", "done"]


@pytest.mark.parametrize(("event", "taken"), [("approved", "approve"), ("rejected", "reject")])
def test_join_reached_from_exclusive_branches_runs(event: str, taken: str) -> None:
    """A step joining two exclusive branches runs after the taken one (spec §4.2 item 3 fixed)."""
    instance = complete(ExclusiveJoinFlow, begin(ExclusiveJoinFlow), "review", event)
    decision = returns(ExclusiveJoinFlow, instance, taken, "ok")
    assert decision.commands == (engine.RunStep("notify", 1, None),)
    instance = complete(ExclusiveJoinFlow, decision.instance, "notify", "ok")
    assert instance.status is Status.COMPLETED
    assert "notify" in instance.context.steps


# ---------------------------------------------------------------------------------------------
# Fan-out / fan-in


@pytest.mark.parametrize("order", [("left", "right"), ("right", "left")])
def test_fan_in_waits_for_every_branch(order: tuple[str, str]) -> None:
    """A join after a fan-out activates only once both branches completed, in either order."""
    decision = returns(FanInFlow, begin(FanInFlow), "split", "ok")
    assert decision.commands == (
        engine.RunStep("left", 1, None),
        engine.RunStep("right", 1, None),
    )
    first, second = order

    decision = returns(FanInFlow, decision.instance, first, "ok")
    assert decision.commands == ()
    assert "join" not in decision.instance.steps
    assert decision.instance.status is Status.RUNNING

    decision = returns(FanInFlow, decision.instance, second, "ok")
    assert decision.commands == (engine.RunStep("join", 1, {"mode": "merge"}),)
    assert decision.instance.steps["join"] == StepState(StepStatus.ACTIVE, config={"mode": "merge"})
    assert decision.instance.joins == {}

    instance = complete(FanInFlow, decision.instance, "join", "ok")
    assert instance.status is Status.COMPLETED


def test_skip_event_before_other_branch_skips_the_all_join_once_resolved() -> None:
    """S->[B,C]; B:skip->Done: J (all) waits for C, is then skipped, and Done completes the run."""
    assert node(SkipOrJoinFlow, "join").join == "all"
    instance = complete(SkipOrJoinFlow, begin(SkipOrJoinFlow), "split", "ok")
    instance = complete(SkipOrJoinFlow, instance, "maybe", "skip")
    assert "join" not in instance.steps  # never resolved before all its sources are
    assert "done" not in instance.steps  # Done also waits for J
    assert instance.status is Status.RUNNING

    decision = returns(SkipOrJoinFlow, instance, "right", "ok")
    assert decision.commands == ()
    instance = decision.instance
    assert instance.status is Status.COMPLETED
    assert instance.steps["join"].status is StepStatus.SKIPPED
    assert list(instance.context.steps) == ["split", "maybe", "right", "done"]
    skip = next(e for e in instance.history if e.kind is HistoryKind.STEP_SKIPPED)
    assert (skip.step, skip.data) == ("join", {"policy": "all", "missing": ["maybe"]})


def test_skip_event_after_other_branch_skips_the_all_join() -> None:
    """C first, then B:skip resolves J's last edge: J (all) is skipped and Done runs."""
    instance = complete(SkipOrJoinFlow, begin(SkipOrJoinFlow), "split", "ok")
    instance = complete(SkipOrJoinFlow, instance, "right", "ok")
    decision = returns(SkipOrJoinFlow, instance, "maybe", "skip")
    assert decision.commands == ()
    assert decision.instance.status is Status.COMPLETED
    assert decision.instance.steps["join"].status is StepStatus.SKIPPED


def test_both_branches_taken_run_the_join_and_done_once() -> None:
    """Spec §4.2 example 4 with B:ok: J waits for B and C, then Done runs after J."""
    instance = complete(SkipOrJoinFlow, begin(SkipOrJoinFlow), "split", "ok")
    instance = complete(SkipOrJoinFlow, instance, "maybe", "ok")
    assert "join" not in instance.steps
    instance = complete(SkipOrJoinFlow, instance, "right", "ok")
    assert instance.steps["join"].status is StepStatus.ACTIVE
    assert "done" not in instance.steps
    instance = complete(SkipOrJoinFlow, instance, "join", "ok")
    assert instance.status is Status.COMPLETED
    assert [key for kind, key in kinds(instance) if key == "done"] == ["done"]


# ---------------------------------------------------------------------------------------------
# Identity


def test_idempotency_key_is_stable_per_attempt_and_distinct_across_attempts() -> None:
    """The same (instance, run, step, attempt) gives the same key; any difference changes it."""

    def key(run_id: str = "run-1", step: str = "charge", attempt: int = 1) -> str:
        return StepContext(
            initial={}, steps={}, instance_id="order::1", run_id=run_id, step=step, attempt=attempt
        ).idempotency_key

    assert key() == key()
    assert key() == "order::1/run-1/charge/1"
    assert len({key(), key(attempt=2), key(run_id="run-2"), key(step="ship")}) == 4

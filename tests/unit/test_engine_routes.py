"""Pure engine tests of dynamic routes: one target, a fan-out, a config, none, or a wrong one."""

# Workflow ``transitions`` are class-level declarations read once, when the class is created:

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hephaestus import (
    Done,
    HistoryKind,
    Ok,
    Status,
    StepStatus,
    Workflow,
    route,
)
from hephaestus._core import engine
from tests.unit.test_engine import (
    Approve,
    Emits,
    begin,
    complete,
    returns,
    run_steps,
    statuses,
)

if TYPE_CHECKING:
    from hephaestus import Context
    from hephaestus._core.definition import RouteResult


class Pick(Emits):
    events = ("picked",)


class Express(Emits):
    events = ("ok",)


class Standard(Emits):
    events = ("ok",)


class Ship(Emits):
    events = ("ok",)
    join = "any"  # after a route that sends one shipping or both: run when any arrives


_ROUTES: dict[str, RouteResult] = {
    "express": Express,
    "both": [Express, Standard],
    "twice": [Express, Express],
    "configured": (Standard, {"speed": "slow"}),
    "none": None,
    "undeclared": Ship,
    "foreign": Approve,
}


@route(Express, Standard)
def choose_shipping(context: Context) -> RouteResult:
    case = context.steps["pick"]["case"]
    if case == "raise":
        raise RuntimeError("no carrier available")
    return _ROUTES[case]


class RouteFlow(Workflow):
    start_step = Pick
    transitions = {
        (Pick, "picked"): choose_shipping,
        (Express, "ok"): Ship,
        (Standard, "ok"): Ship,
        (Ship, "ok"): Done,
    }


# ---------------------------------------------------------------------------------------------
# Dynamic routes


def pick(case: str) -> engine.Decision:
    return returns(RouteFlow, begin(RouteFlow), "pick", Ok("picked", {"case": case}))


def test_route_to_one_target_skips_the_other_declared_targets() -> None:
    """A route returning one declared step activates it and skips the others."""
    decision = pick("express")
    assert decision.commands == (engine.RunStep("express", 1, None),)
    assert decision.instance.steps["standard"].status is StepStatus.SKIPPED
    decision = returns(RouteFlow, decision.instance, "express", "ok")
    assert run_steps(decision.commands) == ["ship"]
    instance = complete(RouteFlow, decision.instance, "ship", "ok")
    assert instance.status is Status.COMPLETED


@pytest.mark.parametrize(
    ("case", "expected"), [("both", ["express", "standard"]), ("twice", ["express"])]
)
def test_route_returning_a_list_fans_out(case: str, expected: list[str]) -> None:
    """A route returning a list activates each (distinct) target; the join waits for them."""
    decision = pick(case)
    assert run_steps(decision.commands) == expected
    instance = complete(RouteFlow, decision.instance, "express", "ok")
    if case == "both":
        assert "ship" not in instance.steps
        instance = complete(RouteFlow, instance, "standard", "ok")
    assert instance.steps["ship"].status is StepStatus.ACTIVE


def test_route_returning_step_and_config_passes_the_config() -> None:
    """A route returning (step, config) activates the step with that config."""
    decision = pick("configured")
    assert decision.commands == (engine.RunStep("standard", 1, {"speed": "slow"}),)
    assert decision.instance.steps["standard"].config == {"speed": "slow"}
    assert decision.instance.steps["express"].status is StepStatus.SKIPPED


def test_route_returning_none_stalls_and_fails_the_run() -> None:
    """A route with no target leaves nothing to run: the run fails with kind 'stalled'."""
    decision = pick("none")
    instance = decision.instance
    assert decision.commands == ()
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.kind == "stalled"
    assert statuses(instance) == {
        "pick": StepStatus.COMPLETED,
        "express": StepStatus.SKIPPED,
        "standard": StepStatus.SKIPPED,
        "ship": StepStatus.SKIPPED,
        "done": StepStatus.SKIPPED,
    }
    assert instance.history[-1].kind is HistoryKind.FAILED
    assert instance.history[-1].error == instance.error


@pytest.mark.parametrize("case", ["undeclared", "foreign"])
def test_route_returning_an_undeclared_step_fails_the_run(case: str) -> None:
    """A route naming a step outside its declared targets fails the run with 'route_error'."""
    decision = pick(case)
    instance = decision.instance
    assert decision.commands == ()
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert (instance.error.kind, instance.error.step, instance.error.attempt) == (
        "route_error",
        "pick",
        1,
    )
    assert "not one of its declared targets" in instance.error.message
    assert instance.active_steps == ()


def test_route_that_raises_fails_the_run_with_its_traceback() -> None:
    """An exception inside a route function fails the run with 'route_error' and its traceback."""
    instance = pick("raise").instance
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.kind == "route_error"
    assert "RuntimeError: no carrier available" in instance.error.message
    assert instance.error.traceback is not None
    assert "no carrier available" in instance.error.traceback

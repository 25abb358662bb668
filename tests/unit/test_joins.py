"""Join policies: inferred or declared at definition time, applied by the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import Done, HistoryKind, Status, StepStatus, Workflow, route
from hephaestus._core import engine
from hephaestus.errors import IssueCode
from tests.unit.test_engine import begin, complete, definition, returns, run_steps
from tests.unit.test_validation import define, make_step, only, rejected

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hephaestus import Step

Validate = make_step("Validate", "ok")
Charge = make_step("Charge", "charged", "declined")
Reserve = make_step("Reserve", "reserved")
Notify = make_step("Notify", "notified")
Join = make_step("Join", "joined")
Ship = make_step("Ship", "shipped")
RejectOrder = make_step("RejectOrder", "rejected")


class OrderFlow(Workflow):
    start_step = Validate
    transitions = {
        (Validate, "ok"): [Charge, Reserve, Notify],
        (Charge, "charged"): Join,
        (Charge, "declined"): RejectOrder,
        (Reserve, "reserved"): Join,
        (Notify, "notified"): Join,
        (Join, "joined"): Ship,
        (Ship, "shipped"): Done,
        (RejectOrder, "rejected"): Done,
    }


def test_declined_charge_skips_the_join_and_shipping_and_rejects_the_order() -> None:
    """After [Charge, Reserve, Notify] -> Join, a declined charge rejects and never ships."""
    instance = complete(OrderFlow, begin(OrderFlow), "validate", "ok")
    instance = complete(OrderFlow, instance, "charge", "declined")
    assert "join" not in instance.steps  # resolved only once every branch is
    instance = complete(OrderFlow, instance, "reserve", "reserved")
    instance = complete(OrderFlow, instance, "reject_order", "rejected")
    assert instance.status is Status.RUNNING  # Notify still runs: Done waits for it
    decision = returns(OrderFlow, instance, "notify", "notified")
    assert decision.commands == ()
    instance = decision.instance
    assert instance.status is Status.COMPLETED
    assert instance.steps["join"].status is StepStatus.SKIPPED
    assert instance.steps["ship"].status is StepStatus.SKIPPED
    assert instance.steps["reject_order"].status is StepStatus.COMPLETED
    skipped = [e for e in instance.history if e.kind is HistoryKind.STEP_SKIPPED]
    assert [(e.step, e.data) for e in skipped] == [
        ("join", {"policy": "all", "missing": ["charge"]}),
        ("ship", None),
    ]
    assert not instance.joins


def test_every_branch_arriving_runs_the_all_join() -> None:
    """With every branch taken, the `all` join runs once, after the last one."""
    instance = complete(OrderFlow, begin(OrderFlow), "validate", "ok")
    instance = complete(OrderFlow, instance, "charge", "charged")
    instance = complete(OrderFlow, instance, "notify", "notified")
    decision = returns(OrderFlow, instance, "reserve", "reserved")
    assert run_steps(decision.commands) == ["join"]
    instance = complete(OrderFlow, decision.instance, "join", "joined")
    instance = complete(OrderFlow, instance, "ship", "shipped")
    assert instance.status is Status.COMPLETED
    assert instance.steps["reject_order"].status is StepStatus.SKIPPED


def test_policies_are_inferred_where_the_graph_decides() -> None:
    """A merge after parallel branches is `all`, Done is always `any`, other steps have none."""
    nodes = definition(OrderFlow).nodes
    assert {key: node.join for key, node in nodes.items() if node.join} == {
        "join": "all",
        "done": "any",
    }


Review = make_step("Review", "approved", "rejected")
Approve = make_step("Approve", "ok")
Archive = make_step("Archive", "ok")
Merge = make_step("Merge", "ok")


class ExclusiveFlow(Workflow):
    start_step = Review
    transitions = {
        (Review, "approved"): Approve,
        (Review, "rejected"): Archive,
        (Approve, "ok"): Merge,
        (Archive, "ok"): Merge,
        (Merge, "ok"): Done,
    }


@pytest.mark.parametrize(("event", "taken"), [("approved", "approve"), ("rejected", "archive")])
def test_exclusive_merge_is_any_and_runs_after_the_taken_branch(event: str, taken: str) -> None:
    """A merge of exclusive alternatives is inferred `any` and runs when the taken one arrives."""
    assert definition(ExclusiveFlow).nodes["merge"].join == "any"
    instance = complete(ExclusiveFlow, begin(ExclusiveFlow), "review", event)
    decision = returns(ExclusiveFlow, instance, taken, "ok")
    assert run_steps(decision.commands) == ["merge"]
    instance = complete(ExclusiveFlow, decision.instance, "merge", "ok")
    assert instance.status is Status.COMPLETED


def mixed(join: Any = None) -> dict[str, Any]:
    """A fan-out whose first branch chooses between two steps that both lead to the join."""
    split = make_step("Split", "ok")
    choose = make_step("Choose", "left", "right")
    left, right, other = (make_step(n, "ok") for n in ("Left", "Right", "Other"))
    merged = make_step("Merged", "ok", join=join)
    transitions: Mapping[tuple[type[Step], str], Any] = {
        (split, "ok"): [choose, other],
        (choose, "left"): left,
        (choose, "right"): right,
        (left, "ok"): merged,
        (right, "ok"): merged,
        (other, "ok"): merged,
        (merged, "ok"): Done,
    }
    return {"start_step": split, "transitions": transitions}


def test_a_mix_of_exclusive_and_parallel_sources_needs_a_declaration() -> None:
    """Left/Right are exclusive, Other is parallel to both: the class is refused with a hint."""
    issue = only(rejected(**mixed()), IssueCode.JOIN_POLICY_REQUIRED)
    assert issue.step == "Merged"
    assert "Merged joins Other, Left, Right" in issue.message
    assert "Left and Right are exclusive alternatives while Other and Left are parallel" in (
        issue.message
    )
    assert 'join = "all"' in issue.message
    assert 'join = "any"' in issue.message


def test_a_declared_any_settles_a_mixed_join_and_all_would_never_run() -> None:
    """Declaring `any` settles the mix; `all` is refused, as Left and Right never both arrive."""
    assert definition(define(**mixed("any"))).nodes["merged"].join == "any"
    issue = only(rejected(**mixed("all")), IssueCode.JOIN_NEVER_RUNS)
    assert issue.step == "Merged"
    assert "Left and Right are exclusive" in issue.message


def test_a_declared_all_over_exclusive_sources_is_refused() -> None:
    """An `all` join whose sources never both arrive could never run: its own issue code."""
    choose = make_step("Choose", "a", "b")
    a, b = make_step("A", "ok"), make_step("B", "ok")
    meet = make_step("Meet", "ok", join="all")
    issue = only(
        rejected(
            start_step=choose,
            transitions={
                (choose, "a"): a,
                (choose, "b"): b,
                (a, "ok"): meet,
                (b, "ok"): meet,
                (meet, "ok"): Done,
            },
        ),
        IssueCode.JOIN_NEVER_RUNS,
    )
    assert issue.step == "Meet"


@pytest.mark.parametrize("value", ["both", 1, True])
def test_an_invalid_join_value_is_refused(value: object) -> None:
    """`join` must be "all", "any" or None."""
    step = make_step("Odd", "ok", join=value)
    issue = only(
        rejected(start_step=step, transitions={(step, "ok"): Done}), IssueCode.INVALID_JOIN
    )
    assert issue.step == "Odd"


def test_a_declaration_on_a_step_with_one_source_is_ignored() -> None:
    """A step class may be reused where it is not a join: its declaration then has no effect."""
    step = make_step("Solo", "ok", join="all")
    first = make_step("First", "ok")
    flow = define(start_step=first, transitions={(first, "ok"): step, (step, "ok"): Done})
    assert definition(flow).nodes["solo"].join is None


@pytest.mark.parametrize("policy", ["all", "any"])
def test_a_merge_after_a_dynamic_route_needs_a_declaration(policy: str) -> None:
    """A route may send one target or several, so the graph does not decide the merge."""
    pick = make_step("Pick", "ok")
    a, b = make_step("A", "ok"), make_step("B", "ok")

    @route(a, b)
    def either(context: object) -> type[Step]:
        return a

    def attrs(meet: type[Step]) -> dict[str, Any]:
        return {
            "start_step": pick,
            "transitions": {
                (pick, "ok"): either,
                (a, "ok"): meet,
                (b, "ok"): meet,
                (meet, "ok"): Done,
            },
        }

    issue = only(rejected(**attrs(make_step("Meet", "ok"))), IssueCode.JOIN_POLICY_REQUIRED)
    assert issue.step == "Meet"
    assert "A and B are neither exclusive" in issue.message
    declared = define(**attrs(make_step("Meet", "ok", join=policy)))
    assert definition(declared).nodes["meet"].join == policy


def test_nested_fan_outs_infer_all() -> None:
    """Sources on different branches of nested fan-outs are all parallel: the join is `all`."""
    top = make_step("Top", "ok")
    inner = make_step("Inner", "ok")
    x, y, z = (make_step(n, "ok") for n in ("X", "Y", "Z"))
    meet = make_step("Meet", "ok")
    flow = define(
        start_step=top,
        transitions={
            (top, "ok"): [inner, z],
            (inner, "ok"): [x, y],
            (x, "ok"): meet,
            (y, "ok"): meet,
            (z, "ok"): meet,
            (meet, "ok"): Done,
        },
    )
    assert definition(flow).nodes["meet"].join == "all"


def test_a_wide_fan_in_is_inferred_quickly() -> None:
    """A 1,000-branch fan-out into one join is inferred `all` without pairwise work."""
    split = make_step("Wide", "ok")
    branches = [make_step(f"B{i}", "ok") for i in range(1000)]
    meet = make_step("Meet", "ok")
    transitions: dict[tuple[type[Step], str], Any] = {(split, "ok"): branches}
    transitions.update({(b, "ok"): meet for b in branches})
    transitions[(meet, "ok")] = Done
    flow = define(start_step=split, transitions=transitions)
    instance = complete(flow, begin(flow), "wide", "ok")
    for index in range(999):
        instance = complete(flow, instance, f"b{index}", "ok")
    decision = returns(flow, instance, "b999", "ok")
    assert decision.commands == (engine.RunStep("meet", 1, None),)


def test_a_fan_out_target_that_is_also_the_join_needs_a_declaration() -> None:
    """A -> [B, C] with B -> C: C's sources are not separate branches, so C must declare."""

    def attrs(join: str | None) -> dict[str, Any]:
        a, b, c = make_step("A", "next"), make_step("B", "next"), make_step("C", "next", join=join)
        transitions = {(a, "next"): [b, c], (b, "next"): c, (c, "next"): Done}
        return {"start_step": a, "transitions": transitions}

    assert only(rejected(**attrs(None)), IssueCode.JOIN_POLICY_REQUIRED).step == "C"
    assert definition(define(**attrs("all"))).nodes["c"].join == "all"

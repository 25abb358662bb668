"""Context keys derived from class names (spec §1.2)."""

from __future__ import annotations

import pytest

from hephaestus import Config, Step, StepContext, StepResult, StepRun, context_key
from hephaestus._core.naming import underscore


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("StepA", "step_a"),
        ("StepB", "step_b"),
        ("BranchA", "branch_a"),
        ("WaitForEvent", "wait_for_event"),
        ("PassWithContextStep", "pass_with_context_step"),
        ("Done", "done"),
        ("Join", "join"),
        ("Start", "start"),
        ("LinearWorkflow", "linear_workflow"),
        ("OnboardFlow", "onboard_flow"),
        ("HTTPClient", "http_client"),
        ("SAPExample", "sap_example"),
        ("ValidateOrder", "validate_order"),
    ],
)
def test_underscore_matches_the_spec_examples(name: str, expected: str) -> None:
    """underscore snake-cases class names exactly as the pinned examples of spec §1.2."""
    assert underscore(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("V2Flow", "v2_flow"),
        ("Step1Example", "step1_example"),
        ("HTTP2Client", "http2_client"),
        ("StepA1", "step_a1"),
        ("ABC", "abc"),
        ("A", "a"),
        ("already_snake", "already_snake"),
        ("Step_A", "step_a"),
    ],
)
def test_underscore_digits_acronyms_and_underscores(name: str, expected: str) -> None:
    """Digits end a word, acronyms stay together, and existing underscores are not doubled."""
    assert underscore(name) == expected


class ChargeCard(Step):
    events = ("charged",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "charged"


class RenamedStep(ChargeCard):
    step_key = "payment"


def test_context_key_is_the_underscored_class_name() -> None:
    """Without step_key, a step's context key is its snake-cased class name."""
    assert context_key(ChargeCard) == "charge_card"


def test_context_key_uses_the_step_key_override() -> None:
    """step_key overrides the derived context key."""
    assert context_key(RenamedStep) == "payment"


def test_context_key_ignores_the_enclosing_scope() -> None:
    """Only the class's own name counts, not the scope it was defined in."""

    class LocalStep(ChargeCard):
        pass

    assert context_key(LocalStep) == "local_step"

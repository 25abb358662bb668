"""A workflow whose charge fails while ``HX_CLI_DECLINE`` is set: failed runs to re-run."""

from __future__ import annotations

import os

from hephaestus import (
    Config,
    Done,
    RetryPolicy,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Workflow,
)

DECLINE = "HX_CLI_DECLINE"


class ChargeCard(Step):
    events = ("charged",)
    retry = RetryPolicy(max_attempts=1)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        if os.environ.get(DECLINE):
            raise RuntimeError(f"card declined for {context.initial['amount']}")
        return "charged"


class PaymentFlow(Workflow):
    unique = Unique(key="pay")
    start_step = ChargeCard
    transitions = {(ChargeCard, "charged"): Done}

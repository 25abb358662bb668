"""The connector contract: definition-time checks, unknown actions, results, use from a step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from hephaestus import (
    Config,
    Done,
    Hephaestus,
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
from hephaestus.connectors import Connector, call
from hephaestus.errors import ConnectorDefinitionError, ConnectorError, UnsupportedActionError
from hephaestus.testing import run_until_idle

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping


class Ledger(Connector):
    """Books amounts; counts executions so a test can see nothing ran."""

    def __init__(self) -> None:
        self.executed: list[str] = []

    def supported_actions(self) -> Collection[str]:
        return ("book", "refuse", "garble")

    async def execute(
        self, action: str, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        self.executed.append(action)
        if action == "refuse":
            raise ConnectorError("ledger closed")
        if action == "garble":
            return ["not", "a", "mapping"]  # type: ignore[return-value]
        return {"booked": params["amount"], "currency": config.get("currency", "EUR")}


class SyncLedger(Connector):
    def supported_actions(self) -> Collection[str]:
        return ["book"]

    def execute(
        self, action: str, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return {"booked": params["amount"]}


class Structural:
    """Not a subclass: matches the protocol by its two methods."""

    def supported_actions(self) -> Collection[str]:
        return ("ping",)

    async def execute(
        self, action: str, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return {"pong": True}


async def test_call_runs_a_supported_action_plain_or_async() -> None:
    """``call`` passes params and config and returns the mapping; a plain execute works too."""
    ledger = Ledger()
    assert await call(ledger, "book", {"amount": 5}, {"currency": "USD"}) == {
        "booked": 5,
        "currency": "USD",
    }
    assert await call(SyncLedger(), "book", {"amount": 7}) == {"booked": 7}
    assert await call(Structural(), "ping") == {"pong": True}
    assert isinstance(Structural(), Connector)


async def test_an_unsupported_action_is_a_typed_error_and_nothing_runs() -> None:
    """An action outside ``supported_actions()`` raises before ``execute`` is called."""
    ledger = Ledger()
    with pytest.raises(UnsupportedActionError, match=r"Ledger does not support action 'pay'"):
        await call(ledger, "pay", {"amount": 1})
    assert ledger.executed == []
    with pytest.raises(LookupError, match="supported: 'book', 'refuse', 'garble'"):
        await call(ledger, "pay")


async def test_refusals_and_non_mapping_results_are_connector_errors() -> None:
    """A connector refuses with ``ConnectorError``; a result that is not a mapping is one too."""
    with pytest.raises(ConnectorError, match="ledger closed"):
        await call(Ledger(), "refuse")
    with pytest.raises(ConnectorError, match=r"returned list, not a mapping"):
        await call(Ledger(), "garble")


def test_a_connector_class_missing_a_method_is_refused_when_defined() -> None:
    """Each missing method is named at class definition; subclasses of a full one are fine."""
    with pytest.raises(ConnectorDefinitionError, match=r"Half does not define execute\(\)"):

        class Half(Connector):
            def supported_actions(self) -> Collection[str]:
                return ()

    with pytest.raises(TypeError, match=r"supported_actions and execute\(\)"):

        class Empty(Connector):
            pass

    class Audited(Ledger):
        pass

    assert isinstance(Audited(), Connector)


LEDGER = Ledger()


class BookPayment(Step):
    events = ("booked",)
    retry = RetryPolicy(max_attempts=1)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        action = context.initial.get("action", "book")
        result = await call(LEDGER, action, {"amount": context.initial["amount"]}, config)
        return Ok("booked", dict(result))


class Payment(Workflow):
    unique = Unique(key="payment")
    start_step = (BookPayment, {"currency": "GBP"})
    transitions = {(BookPayment, "booked"): Done}


async def test_a_step_uses_a_connector_and_its_errors_fail_the_attempt() -> None:
    """From a step, a supported action completes the run; an unsupported one fails it, typed."""
    async with Hephaestus(workflows=[Payment]) as app:
        await Payment.start("1", {"amount": 12})
        await Payment.start("2", {"amount": 3, "action": "pay"})
        await run_until_idle(app)
        done, failed = await Payment.get("1"), await Payment.get("2")
    assert done.status is Status.COMPLETED
    assert done.context.steps["book_payment"] == {"booked": 12, "currency": "GBP"}
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.type is not None
    assert failed.error.type.endswith("UnsupportedActionError")
    assert "does not support action 'pay'" in failed.error.message

"""``StepRun``: the small read-only view of its run that a step receives (``step_view``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from hephaestus import Context, Instance, Status, StepContext, StepRun
from hephaestus._core.values import step_view

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PUBLIC = (
    "id",
    "run_id",
    "workflow",
    "workflow_version",
    "step",
    "attempt",
    "metadata",
    "idempotency_key",
    "context",
)


def make_instance(**changes: Any) -> Instance:
    """A running order, version 2, with caller metadata and one completed step's results."""
    fields: dict[str, Any] = {
        "id": "order::42",
        "run_id": "run7",
        "workflow": "shop.OrderFlow",
        "workflow_version": 2,
        "family": "shop.OrderFlow",
        "status": Status.RUNNING,
        "context": Context({"lines": [1, 2]}, {"validate": {"total": 3}}),
        "created_at": NOW,
        "updated_at": NOW,
        "metadata": {"tenant": "acme", "tags": ["vip"]},
    }
    return Instance(**(fields | changes))


def test_step_view_carries_the_runs_identity() -> None:
    """The view names the run, its workflow and version, the step and the attempt."""
    run, context = step_view(make_instance(), "charge", 3)
    assert isinstance(run, StepRun)
    assert (run.id, run.run_id) == ("order::42", "run7")
    assert (run.workflow, run.workflow_version) == ("shop.OrderFlow", 2)
    assert (run.step, run.attempt) == ("charge", 3)
    assert dict(run.metadata) == {"tenant": "acme", "tags": ["vip"]}
    assert run.context is context
    assert dict(context.initial) == {"lines": [1, 2]}
    assert dict(context.steps) == {"validate": {"total": 3}}


def test_idempotency_key_is_the_contexts() -> None:
    """``run.idempotency_key`` equals ``context.idempotency_key``, distinct per attempt."""
    first, first_context = step_view(make_instance(), "charge", 1)
    second, _ = step_view(make_instance(), "charge", 2)
    assert first.idempotency_key == first_context.idempotency_key == "order::42/run7/charge/1"
    assert second.idempotency_key == "order::42/run7/charge/2"


@pytest.mark.parametrize("name", PUBLIC)
def test_attributes_cannot_be_set_or_deleted(name: str) -> None:
    """Every public attribute refuses assignment and deletion."""
    run, _ = step_view(make_instance(), "charge", 1)
    with pytest.raises(AttributeError):
        setattr(run, name, "changed")
    with pytest.raises(AttributeError):
        delattr(run, name)
    assert getattr(run, name) != "changed"


def test_no_attribute_can_be_added() -> None:
    """A step cannot hang its own state on the view (it has no ``__dict__``)."""
    run, _ = step_view(make_instance(), "charge", 1)
    with pytest.raises(AttributeError):
        run.status = Status.FAILED  # type: ignore[attr-defined]
    assert not hasattr(run, "__dict__")


def test_metadata_is_read_only_and_hands_out_copies() -> None:
    """Writing the metadata is refused; changing a nested value read from it changes a copy."""
    instance = make_instance()
    run, _ = step_view(instance, "charge", 1)
    metadata: Any = run.metadata
    with pytest.raises(TypeError):
        metadata["tenant"] = "other"
    run.metadata["tags"].append("changed")
    assert instance.metadata == {"tenant": "acme", "tags": ["vip"]}
    assert run.metadata["tags"] == ["vip"]


def test_empty_metadata_is_a_read_only_empty_mapping() -> None:
    """A run started without metadata shows an empty mapping that refuses writes."""
    run, _ = step_view(make_instance(metadata={}), "charge", 1)
    metadata: Any = run.metadata
    assert dict(metadata) == {}
    with pytest.raises(TypeError):
        metadata["tenant"] = "other"


def test_engine_internals_are_not_on_the_view() -> None:
    """Fields of the engine's record beyond the view's own are deliberately absent."""
    run, _ = step_view(make_instance(), "charge", 1)
    internal = {field.name for field in dataclasses.fields(Instance)} - set(PUBLIC)
    assert "status" in internal
    assert "history" in internal
    assert [name for name in sorted(internal) if hasattr(run, name)] == []
    assert not isinstance(run, Instance)


def test_built_directly_for_a_test_metadata_defaults_to_empty() -> None:
    """``StepRun(context, workflow, version)`` is enough to call a step's execute in a test."""
    context = StepContext({}, {}, instance_id="order::1", run_id="r1", step="ship", attempt=2)
    run = StepRun(context, "shop.OrderFlow", 1)
    assert (run.id, run.step, run.attempt, dict(run.metadata)) == ("order::1", "ship", 2, {})
    assert repr(run) == (
        "StepRun(id='order::1', run_id='r1', workflow='shop.OrderFlow', workflow_version=1, "
        "step='ship', attempt=2)"
    )

"""The shared empty mapping that records hold where they carry no data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from hephaestus import Done, WaitForEvent, Workflow, WorkflowDefinition
from hephaestus._core import engine
from hephaestus._core.instance import NO_DATA
from hephaestus._core.values import copy_instance

if TYPE_CHECKING:
    from collections.abc import Callable

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Parcel(Workflow):
    start_step = WaitForEvent
    transitions = {(WaitForEvent, "received"): Done}


def test_the_shared_empty_mapping_refuses_every_change() -> None:
    """Nobody can put data into the mapping every empty record field shares."""
    shared: dict[str, object] = NO_DATA  # type: ignore[assignment]
    changes: tuple[Callable[[], object], ...] = (
        lambda: shared.__setitem__("a", 1),
        lambda: shared.update(a=1),
        lambda: shared.setdefault("a", 1),
        shared.clear,
        shared.popitem,
        lambda: shared.pop("a"),
    )
    for change in changes:
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert NO_DATA == {}
    assert json.dumps(NO_DATA) == "{}"
    assert isinstance(NO_DATA, dict)


def test_a_run_without_data_shares_it_and_callers_get_dicts_of_their_own() -> None:
    """A fresh run's empty fields are the shared mapping; a copy handed out has plain dicts."""
    definition = Parcel.definition()
    assert isinstance(definition, WorkflowDefinition)
    instance = engine.start(
        definition, instance_id="parcel::a", run_id="r", family="f", initial={}, now=NOW
    ).instance
    assert instance.metadata is NO_DATA
    assert instance.context.initial is NO_DATA
    assert instance.joins is NO_DATA
    copied = copy_instance(instance)
    assert copied.metadata == {}
    assert copied.metadata is not NO_DATA
    assert copied.context.initial is not NO_DATA
    copied.context.initial["mine"] = 1  # type: ignore[index]
    assert NO_DATA == {}

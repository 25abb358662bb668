"""Workflow registries: the process's, and the ones apps build from their ``workflows=``."""

from __future__ import annotations

import pytest

from hephaestus import Done, Unique, Workflow, WorkflowRegistry, default_registry
from hephaestus.errors import UnknownWorkflowError


class RegistryV1(Workflow):
    version = 1
    unique = Unique(key="reg")
    start_step = Done


class RegistryV2(Workflow):
    version = 2
    unique = Unique(key="reg")
    start_step = Done


class RegistryUmbrella(Workflow):
    unique = Unique(key="reg")
    versions = {1: RegistryV1, 2: RegistryV2}
    current = 2


class RegistryOther(Workflow):
    start_step = Done


def test_every_defined_workflow_is_in_the_process_registry() -> None:
    """Defining a workflow class registers it (and its umbrella) in ``default_registry``."""
    for workflow in (RegistryV1, RegistryV2, RegistryUmbrella, RegistryOther):
        assert workflow.name in default_registry
    assert default_registry.umbrella_of(RegistryV1.name) is RegistryUmbrella.definition()


def test_an_umbrella_brings_its_versions_into_a_registry() -> None:
    """Registering a versioned workflow registers its versions, runnable by their names."""
    registry = WorkflowRegistry([RegistryUmbrella.definition()])
    assert len(registry) == 3
    assert registry.resolve(RegistryV1.name) is RegistryV1.definition()
    assert registry.umbrella_of(RegistryV2.name) is RegistryUmbrella.definition()
    assert RegistryOther.name not in registry


def test_a_workflow_left_out_is_another_apps_not_an_undefined_one() -> None:
    """A name defined in the process but not registered here belongs elsewhere; resolving it
    says to add the class, while a name defined nowhere says to import its module."""
    registry = WorkflowRegistry([RegistryOther.definition()])
    assert registry.belongs_elsewhere(RegistryV1.name)
    assert not registry.belongs_elsewhere(RegistryOther.name)
    assert not registry.belongs_elsewhere("nowhere.Flow")
    with pytest.raises(UnknownWorkflowError, match=r"Hephaestus\(workflows="):
        registry.resolve(RegistryV1.name)
    with pytest.raises(UnknownWorkflowError, match="import the module"):
        registry.resolve("nowhere.Flow")

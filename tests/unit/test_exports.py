"""The public surface is pinned: adding or removing a public name is a deliberate change."""

from __future__ import annotations

import hephaestus
import hephaestus.errors
import hephaestus.runners
import hephaestus.storage
import hephaestus.telemetry
import hephaestus.testing

EXPECTED = {
    hephaestus: {
        "DEFAULT_RETRY", "Async", "Clock", "Config", "Context", "Debug", "Done", "Error",
        "ErrorInfo", "Hephaestus", "HephaestusError", "HistoryEntry", "HistoryKind", "Instance",
        "InstanceAlreadyRunningError", "InstanceNotActiveError", "InstanceNotFoundError", "Ok",
        "RetryPolicy", "Route", "Scope", "Status", "Step", "StepContext", "StepResult",
        "StepState", "StepStatus", "SystemClock", "Unique", "VersionedDefinition", "Wait",
        "WaitForEvent", "Workflow", "WorkflowDefinition", "WorkflowDefinitionError",
        "WorkflowRegistry", "context_key", "default_registry", "route",
    },
    hephaestus.storage: {"InMemoryStorage", "InstanceQuery", "Storage"},
    hephaestus.runners: {"LocalRunner", "Runner", "RuntimeEnv"},
    hephaestus.testing: {"FakeClock", "InMemoryStorage", "advance", "run_until_idle"},
    hephaestus.telemetry: {"EVENTS", "Handler", "attach", "detach", "emit", "handlers_attached"},
}  # fmt: skip


def test_public_names_are_pinned() -> None:
    """Each public module exports exactly the documented names, all of them importable."""
    for module, names in EXPECTED.items():
        assert set(module.__all__) == names, module.__name__
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_error_is_a_hephaestus_error() -> None:
    """Every exception class in hephaestus.errors derives from HephaestusError."""
    for name in hephaestus.errors.__all__:
        value = getattr(hephaestus.errors, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, hephaestus.errors.HephaestusError), name


def test_public_objects_claim_public_modules() -> None:
    """Public classes live in private modules; the package namespace is the only entry point."""
    assert hephaestus.Workflow.__module__ == "hephaestus._workflow"
    assert hephaestus.Hephaestus.__module__ == "hephaestus._app"

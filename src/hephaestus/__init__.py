"""Hephaestus: durable, DAG-based workflows for Python.

Define steps and workflows as plain classes (validated when the class is created), open a
``Hephaestus`` app, and start, resume, inspect and cancel runs through each workflow class.
"""

from __future__ import annotations

from hephaestus._app import Hephaestus, RunFilters
from hephaestus._clock import Clock, SystemClock
from hephaestus._core.definition import (
    Route,
    VersionedDefinition,
    WorkflowDefinition,
    route,
)
from hephaestus._core.instance import (
    Context,
    ErrorInfo,
    HistoryEntry,
    HistoryKind,
    Instance,
    ScheduledResume,
    Status,
    StepContext,
    StepRun,
    StepState,
    StepStatus,
)
from hephaestus._core.registry import WorkflowRegistry, default_registry
from hephaestus._core.retry import DEFAULT_NEVER_RETRY, DEFAULT_RETRY, RetryPolicy
from hephaestus._core.steps import (
    Async,
    Config,
    Debug,
    Done,
    Error,
    Ok,
    Step,
    StepResult,
    Wait,
    WaitForEvent,
    context_key,
)
from hephaestus._core.unique import Scope, Unique
from hephaestus._workflow import Workflow
from hephaestus.errors import (
    HephaestusError,
    InstanceAlreadyRunningError,
    InstanceNotActiveError,
    InstanceNotFoundError,
    WorkflowDefinitionError,
)

__all__ = [
    "DEFAULT_NEVER_RETRY",
    "DEFAULT_RETRY",
    "Async",
    "Clock",
    "Config",
    "Context",
    "Debug",
    "Done",
    "Error",
    "ErrorInfo",
    "Hephaestus",
    "HephaestusError",
    "HistoryEntry",
    "HistoryKind",
    "Instance",
    "InstanceAlreadyRunningError",
    "InstanceNotActiveError",
    "InstanceNotFoundError",
    "Ok",
    "RetryPolicy",
    "Route",
    "RunFilters",
    "ScheduledResume",
    "Scope",
    "Status",
    "Step",
    "StepContext",
    "StepResult",
    "StepRun",
    "StepState",
    "StepStatus",
    "SystemClock",
    "Unique",
    "VersionedDefinition",
    "Wait",
    "WaitForEvent",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowDefinitionError",
    "WorkflowRegistry",
    "context_key",
    "default_registry",
    "route",
]

__version__ = "0.1.0"

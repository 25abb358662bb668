"""The public surface is pinned: adding or removing a public name is a deliberate change."""

from __future__ import annotations

import hephaestus
import hephaestus.codec
import hephaestus.connectors
import hephaestus.errors
import hephaestus.graphs
import hephaestus.runners
import hephaestus.runners.oban
import hephaestus.storage
import hephaestus.storage.postgres
import hephaestus.storage.sqlite
import hephaestus.telemetry
import hephaestus.telemetry.otel
import hephaestus.telemetry.prometheus
import hephaestus.testing

EXPECTED = {
    hephaestus: {
        "DEFAULT_NEVER_RETRY", "DEFAULT_RETRY", "Async", "Clock", "Config", "Context", "Debug",
        "Done", "Error",
        "ErrorInfo", "Hephaestus", "HephaestusError", "HistoryEntry", "HistoryKind", "Instance",
        "InstanceAlreadyRunningError", "InstanceNotActiveError", "InstanceNotFoundError", "Ok",
        "RetryPolicy", "Route", "RunFilters", "ScheduledResume", "Scope", "Status", "Step",
        "StepContext", "StepResult", "StepRun", "StepState", "StepStatus", "SystemClock", "Unique",
        "VersionedDefinition", "Wait", "WaitForEvent", "Workflow", "WorkflowDefinition",
        "WorkflowDefinitionError", "WorkflowRegistry", "context_key", "default_registry", "route",
    },
    hephaestus.errors: {
        "AmbiguousAppError", "AmbiguousInstanceError", "AmbiguousResumeError", "AppError",
        "AppNotOpenError", "ConcurrentUpdateError", "ConflictError", "CorruptInstanceError",
        "HephaestusError", "IncompatibleInstanceError", "InputError",
        "InstanceAlreadyRunningError", "InstanceError", "InstanceNotActiveError",
        "InstanceNotFoundError", "InvalidArgumentError", "InvalidEventError",
        "InvalidInstanceIdError", "Issue", "IssueCode", "MissingResourceError", "NoAppRunningError",
        "ResumeError", "ConnectorError", "ConnectorDefinitionError", "UnsupportedActionError",
        "StepNotWaitingError", "StorageConfigError", "StorageError",
        "TransactionNotSupportedError", "UnavailableError",
        "UnencodableValueError", "UnknownVersionError", "UnknownWorkflowError", "ValueLimitError",
        "ValueRejectedError", "WorkflowDefinitionError",
    },
    hephaestus.storage: {
        "CallerTransaction", "CountKey", "InMemoryStorage", "InboxEntry", "InboxTransaction",
        "InstanceQuery", "JoinableStorage", "MemoryTransaction", "OwningStorage", "Page",
        "RefreshingTransaction", "Storage", "StorageTransaction", "Unwatch", "Work",
    },
    hephaestus.storage.postgres: {
        "MIGRATIONS", "UNIQUE_INDEX", "Migration", "PostgresCallerTransaction", "PostgresStorage",
        "PostgresTransaction",
        "applied_versions",
        "containment", "install", "migrate", "migration_sql", "pending_migrations", "schema_sql",
        "wrap_exceptions",
    },
    hephaestus.storage.sqlite: {
        "MIGRATIONS", "Migration", "SQLiteCallerTransaction", "SQLiteStorage",
        "SQLiteTransaction", "applied_versions", "migrate", "pending_migrations",
    },
    hephaestus.codec: {
        "FORMAT", "MAX_DEPTH", "MAX_ID_LENGTH", "MAX_INT_DIGITS", "MAX_SIZE", "TAG", "CodecError",
        "JSONValue", "check_value", "decode_context_result", "decode_error_info", "decode_input",
        "dumps", "encode_input",
        "decode_history_entry", "decode_instance", "decode_join_state", "decode_pending_resume",
        "decode_scheduled_resume", "decode_step_state", "encode_error_info",
        "encode_history_entry", "encode_instance", "encode_join_state", "encode_pending_resume",
        "encode_scheduled_resume", "encode_step_state", "from_json",
        "to_json",
    },
    hephaestus.connectors: {"Connector", "call"},
    hephaestus.graphs: {
        "FORMATS", "STATE_MARKERS", "WIDTH", "Format", "GraphSource", "Line", "Segment",
        "ascii_lines", "definitions", "display_name", "docstring_block", "inject", "layers",
        "markers", "render",
    },
    hephaestus.runners: {
        "AbortStep", "Applied", "Begin", "Cancel", "CancelTimer", "Changes", "Command",
        "Decision", "Driver", "Failure", "FireTimer", "Input", "JoiningRunner", "LocalRunner",
        "Outcome",
        "Resume", "RunStep", "Runner", "RuntimeEnv", "ScheduleResume", "StartTimer",
        "StepExecutor", "StepFinished", "TimerHandle", "recover_commands",
    },
    hephaestus.runners.oban: {"ObanRunner", "StepWorker"},
    hephaestus.testing: {"FakeClock", "IdleAware", "InMemoryStorage", "advance", "run_until_idle"},
    hephaestus.telemetry: {
        "DEFAULT_LOG_LEVELS", "EVENTS", "ContextInjector", "Handler", "attach",
        "attach_log_handler", "capture_trace_context", "detach", "detach_log_handler", "emit",
        "handlers_attached", "set_context_injector", "span",
    },
    hephaestus.telemetry.prometheus: {"DEFAULT_BUCKETS", "PrometheusMetrics", "Scope"},
    hephaestus.telemetry.otel: {"OpenTelemetryTracing"},
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

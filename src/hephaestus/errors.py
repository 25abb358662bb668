"""Every exception Hephaestus raises, in one hierarchy, each in a category that says whose
move it is.

```
HephaestusError
├── InputError                     the caller's input: fix the call (a retry fails the same way)
│   ├── InvalidArgumentError       a wrong type or out of range (also TypeError, ValueError)
│   ├── InvalidInstanceIdError     a malformed business-key value or id (also ValueError)
│   ├── UnknownVersionError        a version that the workflow does not have (also ValueError)
│   ├── UnknownWorkflowError       a workflow no defined class (or not this app) carries
│   ├── UnencodableValueError      a value the storage's JSON codec cannot hold (also TypeError)
│   │   ├── ValueLimitError        a value exceeds a documented limit (depth, size, digits)
│   │   └── ValueRejectedError     the database refused a value (NUL, too long): never retried
│   ├── InstanceNotFoundError      (also InstanceError, LookupError)
│   ├── AmbiguousInstanceError     several active runs (versions) match (also InstanceError)
│   ├── InvalidEventError          no transition routes that event (also ResumeError)
│   └── AmbiguousResumeError       several steps could take it; pass step= (also ResumeError)
├── ConflictError                  the state of a run forbids it now: retry, or accept that state
│   ├── InstanceAlreadyRunningError    uniqueness scope already holds an active run (InstanceError)
│   ├── InstanceNotActiveError     the run is completed, failed or cancelled (InstanceError)
│   ├── StepNotWaitingError        the step already finished or does not exist (ResumeError)
│   └── ConcurrentUpdateError      another writer changed the run first; carries instance_id
├── UnavailableError               an outage: the database failed or is out of reach; retry later
│   └── StorageError               a storage backend failed; the cause is chained
├── StorageConfigError             the database cannot serve as set up: read-only, corrupt, a
│                                  schema not installed or newer than this code (no retry helps)
├── InstanceError                  about one instance; carries instance_id (no category itself)
│   └── ResumeError                a resume that cannot be delivered; nothing changes
├── WorkflowDefinitionError        a workflow class is malformed (raised when it is defined)
├── CorruptInstanceError           a stored run cannot be decoded; carries run_id
│   └── IncompatibleInstanceError  it decodes, but does not fit its workflow's definition
├── TransactionNotSupportedError   conn= given, but the storage cannot join a caller's transaction
├── MissingResourceError           a step asked for a resource the app was not given (KeyError)
├── AppError                       the ``Hephaestus`` app object is missing or misused
│   ├── NoAppRunningError
│   ├── AmbiguousAppError
│   └── AppNotOpenError
└── ConnectorError                 a connector refused an action (``hephaestus.connectors``)
    ├── UnsupportedActionError     an action the connector does not support (InputError too)
    └── ConnectorDefinitionError   a connector class lacks a method (also TypeError)
```

The three categories say whose move it is: ``InputError`` the caller's (HTTP 400/404/422),
``ConflictError`` nobody's fault, the run's state (409: retry, or accept it), and
``UnavailableError`` the infrastructure's (503: retry later). The rest are the program's or
the data's defects (500): fix the code, the deployment or the stored run.

Errors carry structured fields (``instance_id``, ``step``, ``issues``) so callers never parse
messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AmbiguousAppError",
    "AmbiguousInstanceError",
    "AmbiguousResumeError",
    "AppError",
    "AppNotOpenError",
    "ConcurrentUpdateError",
    "ConflictError",
    "ConnectorDefinitionError",
    "ConnectorError",
    "CorruptInstanceError",
    "HephaestusError",
    "IncompatibleInstanceError",
    "InputError",
    "InstanceAlreadyRunningError",
    "InstanceError",
    "InstanceNotActiveError",
    "InstanceNotFoundError",
    "InvalidArgumentError",
    "InvalidEventError",
    "InvalidInstanceIdError",
    "Issue",
    "IssueCode",
    "MissingResourceError",
    "NoAppRunningError",
    "ResumeError",
    "StepNotWaitingError",
    "StorageConfigError",
    "StorageError",
    "TransactionNotSupportedError",
    "UnavailableError",
    "UnencodableValueError",
    "UnknownVersionError",
    "UnknownWorkflowError",
    "UnsupportedActionError",
    "ValueLimitError",
    "ValueRejectedError",
    "WorkflowDefinitionError",
]


class HephaestusError(Exception):
    """Base class of every error raised by Hephaestus."""


class InputError(HephaestusError):
    """The caller's input is refused: fix the call; the same call fails the same way again.

    Nothing was changed. In a web app, the request's fault (HTTP 400, 404 or 422).
    """


class ConflictError(HephaestusError):
    """The state of a run does not allow the call now: retry it, or accept the current state.

    Nobody's mistake: another caller or the run itself got there first (HTTP 409).
    """


class UnavailableError(HephaestusError):
    """An outage: the database failed or cannot be reached; retry later (HTTP 503).

    The driver's exception is chained as ``__cause__``.
    """


class InvalidArgumentError(InputError, TypeError, ValueError):
    """An argument of the wrong type or out of range (a delay, a limit, a class that is not a
    workflow); the message names it and what it accepts. Also a ``TypeError`` and a
    ``ValueError``, as such arguments raised before."""


class IssueCode(StrEnum):
    """One code per kind of definition problem, stable for tooling and tests."""

    MISSING_START = "missing_start"
    INVALID_START = "invalid_start"
    INVALID_TRANSITIONS = "invalid_transitions"
    INVALID_SOURCE = "invalid_source"
    INVALID_EVENT = "invalid_event"
    INVALID_TARGET = "invalid_target"
    INVALID_STEP = "invalid_step"
    INVALID_EVENTS = "invalid_events"
    MISSING_EXECUTE = "missing_execute"
    INVALID_EXECUTE_SIGNATURE = "invalid_execute_signature"
    CYCLE = "cycle"
    UNREACHABLE = "unreachable"
    DEAD_END = "dead_end"
    FAN_OUT_NOT_CONVERGING = "fan_out_not_converging"
    CONTEXT_KEY_COLLISION = "context_key_collision"
    UNDECLARED_EVENT = "undeclared_event"
    UNHANDLED_EVENT = "unhandled_event"
    INVALID_CONFIG = "invalid_config"
    INVALID_TAGS = "invalid_tags"
    INVALID_METADATA = "invalid_metadata"
    INVALID_UNIQUE = "invalid_unique"
    INVALID_VERSION = "invalid_version"
    INVALID_VERSIONS = "invalid_versions"
    INVALID_RETRY = "invalid_retry"
    INVALID_OPTION = "invalid_option"
    INVALID_JOIN = "invalid_join"
    JOIN_POLICY_REQUIRED = "join_policy_required"
    JOIN_NEVER_RUNS = "join_never_runs"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a workflow definition."""

    code: IssueCode
    message: str
    step: str | None = None

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class WorkflowDefinitionError(HephaestusError, TypeError):
    """A workflow class is malformed; ``issues`` lists every problem found, not just the first."""

    def __init__(self, workflow: str, issues: list[Issue]) -> None:
        self.workflow = workflow
        self.issues = tuple(issues)
        noun = "problem" if len(issues) == 1 else "problems"
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"invalid workflow {workflow} ({len(issues)} {noun}):\n{lines}")

    @property
    def codes(self) -> frozenset[IssueCode]:
        """The distinct issue codes, handy in tests and tooling."""
        return frozenset(issue.code for issue in self.issues)


class InvalidInstanceIdError(InputError, ValueError):
    """A business-key value must be letters, digits, ``-``, ``_`` and ``.``, starting with a
    letter or digit (case-sensitive); ids are ``key::value``."""


class UnknownVersionError(InputError, ValueError):
    """The workflow has no such version."""


class UnknownWorkflowError(InputError, LookupError):
    """A workflow name (or class) that the registry in use does not have.

    Either no defined workflow class carries a stored name (import its module), or the app was
    given other workflows (add it to ``Hephaestus(workflows=[...])``). Stored names are only
    ever resolved through a registry of defined workflows: nothing is imported or created from
    a stored value.
    """


class UnencodableValueError(InputError, TypeError):
    """A context value, payload or step result has no JSON form in the storage's codec.

    Raised where the value crosses into the engine (``start``, ``resume``, a step's result), the
    same with every storage. Nothing is written. A step whose result cannot be stored fails
    (kind ``invalid_result``) and is retried per its retry policy. ``path`` locates the bad
    part inside the value, such as ``context['items'][3]['name']`` (``None`` when unknown).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ValueLimitError(UnencodableValueError):
    """A value exceeds one of the documented limits (docs/reference.md, "Limits").

    ``limit`` names it (``"depth"``, ``"size"``, ``"int_digits"``), ``maximum`` is its value.
    """

    def __init__(self, message: str, *, limit: str, maximum: int, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.limit = limit
        self.maximum = maximum


class ValueRejectedError(UnencodableValueError):
    """The database refused a value with a deterministic error (not an outage, never retried).

    For instance a character the database encoding cannot hold, or an index row too large. The
    driver's exception is chained as ``__cause__``; ``sqlstate`` is its error code.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class InstanceError(HephaestusError):
    """An operation on one instance failed."""

    def __init__(self, message: str, *, instance_id: str, step: str | None = None) -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.step = step


class InstanceNotFoundError(InstanceError, InputError, LookupError):
    """No instance with that id exists in storage."""


class InstanceAlreadyRunningError(InstanceError, ConflictError):
    """An active instance already holds this business key within the workflow's unique scope."""

    def __init__(self, message: str, *, instance_id: str, unique_key: str) -> None:
        super().__init__(message, instance_id=instance_id)
        self.unique_key = unique_key


class AmbiguousInstanceError(InstanceError, InputError):
    """Several active instances (of different versions) share the id; name the version
    (``version=`` of the calls that take a workflow)."""


class InstanceNotActiveError(InstanceError, ConflictError):
    """The instance is completed, failed or cancelled; those statuses are final."""

    def __init__(self, message: str, *, instance_id: str, status: str) -> None:
        super().__init__(message, instance_id=instance_id)
        self.status = status


class ResumeError(InstanceError):
    """A resume could not be delivered to any step; nothing was changed."""


class StepNotWaitingError(ResumeError, ConflictError):
    """The targeted step is unknown to the workflow, or has already finished."""


class InvalidEventError(ResumeError, InputError):
    """No transition of the workflow routes the event from the step that would receive it.

    A step's optional event (``WaitForEvent``'s ``timeout``) counts only where the workflow
    routes it. Nothing changes when this is raised.
    """


class AmbiguousResumeError(ResumeError, InputError):
    """Several steps could receive the event; name one with ``step=``."""


class StorageError(UnavailableError):
    """A storage backend failed; the driver's exception is chained as ``__cause__``."""


class StorageConfigError(HephaestusError):
    """The storage's database cannot serve as it is set up: its file is read-only, corrupt or
    not a database; its schema is not installed, or newer than this code. Not an outage:
    retrying cannot help; the message says what to fix. Nothing was written.
    """


class ConcurrentUpdateError(ConflictError):
    """The stored instance changed since it was read: another writer owns it.

    A conflict, not an outage (it is no ``StorageError``): read the run again and retry.
    """

    def __init__(self, message: str, *, instance_id: str) -> None:
        super().__init__(message)
        self.instance_id = instance_id


class CorruptInstanceError(HephaestusError):
    """A stored run's data cannot be decoded (edited by hand, or written by something else).

    A defect of the data, neither the caller's input nor an outage: retrying cannot help.

    ``run_id`` names the row; the decoding error is chained as ``__cause__``.
    """

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class IncompatibleInstanceError(CorruptInstanceError):
    """An active stored run decodes, but does not fit its workflow's current definition.

    A step, join or buffered resume names a step the definition no longer has (renamed or
    removed by a deploy), or the stored version differs from the definition's. The engine
    cannot continue it; ``problems`` lists each mismatch. Redeploy the definition the run was
    started with (or keep the old version), or cancel and delete the run.
    """

    def __init__(
        self, message: str, *, run_id: str, instance_id: str, problems: tuple[str, ...]
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.instance_id = instance_id
        self.problems = problems


class TransactionNotSupportedError(HephaestusError):
    """``conn=`` was given, but the app's storage cannot write inside a caller's transaction.

    Only a storage on the caller's database can (``PostgresStorage`` and ``SQLiteStorage``:
    their ``join``); the in-memory storage cannot. Nothing was started, resumed or cancelled.
    Call without ``conn=`` (the operation is then durable when it returns), or use one of
    those storages.
    """


class MissingResourceError(HephaestusError, KeyError):
    """A step read ``run.resources[name]`` but the app has no resource of that name.

    Give it to the app (``Hephaestus(resources={name: ...})``, or ``app.resources[name] = ...``
    before the step runs). Also a ``KeyError``, so ``run.resources.get(name)`` returns ``None``.
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])  # not KeyError's repr of the key


class AppError(HephaestusError):
    """The ``Hephaestus`` app object is missing, ambiguous or closed."""


class NoAppRunningError(AppError):
    """No ``Hephaestus`` app is open. Use ``async with Hephaestus(): ...`` (or ``with``) first."""


class AmbiguousAppError(AppError):
    """Several ``Hephaestus`` apps are open, none current here and more than one could serve
    the call; pass ``app=`` to choose one."""


class AppNotOpenError(AppError):
    """This ``Hephaestus`` app is not open (or already closed)."""


class ConnectorError(HephaestusError):
    """A connector could not carry out an action (the seed's ``("error", reason)``).

    Connectors raise it (or a subclass) to refuse an action; raised from a step, it fails the
    attempt like any exception, and the step's retry policy applies.
    """


class UnsupportedActionError(ConnectorError, InputError, LookupError):
    """The connector does not support that action; nothing ran. Check ``supported_actions()``."""


class ConnectorDefinitionError(ConnectorError, TypeError):
    """A ``Connector`` subclass lacks ``supported_actions`` or ``execute`` (raised when defined)."""

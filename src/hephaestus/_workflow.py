"""The ``Workflow`` base class: definitions validated at class creation, plus the facade."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self, cast, overload

from hephaestus._app import resolve_app
from hephaestus._core.definition import Route, TargetSpec, VersionedDefinition, WorkflowDefinition
from hephaestus._core.registry import default_registry
from hephaestus._core.validation import MISSING, WorkflowSpec, compile_workflow
from hephaestus.errors import InvalidArgumentError, Issue, IssueCode, WorkflowDefinitionError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from datetime import timedelta
    from typing import Unpack

    from hephaestus._app import Hephaestus, RunFilters
    from hephaestus._core.instance import Instance, ScheduledResume
    from hephaestus._core.retry import RetryPolicy
    from hephaestus._core.steps import Step
    from hephaestus._core.unique import Unique

__all__ = ["Workflow"]


TransitionTarget = TargetSpec | list[TargetSpec] | Route
"""What a transition leads to: a step, ``(step, config)``, a list of those (fan-out), a route."""


class _SyncDescriptor:
    def __get__(self, instance: object, owner: type[Workflow]) -> _SyncFacade:
        return _SyncFacade(owner)


class Workflow:
    """Base class of every workflow.

    ```python
    class OrderFlow(Workflow):
        unique = Unique(key="orderid")
        start_step = ValidateOrder
        transitions = {
            (ValidateOrder, "valid"): [ChargePayment, ReserveStock],   # fan-out
            (ValidateOrder, "invalid"): RejectOrder,
            (ChargePayment, "charged"): Ship,                          # fan-in at Ship
            (ReserveStock, "reserved"): Ship,
            (Ship, "shipped"): Done,
            (RejectOrder, "rejected"): Done,
        }
    ```

    The class is validated when it is created; every problem is reported at once in a
    ``WorkflowDefinitionError``. ``start = ValidateOrder`` is accepted as an alias of
    ``start_step`` (the seed's spelling; type checkers prefer ``start_step``, since ``start``
    is also the facade method). Pass ``abstract=True`` in the class statement for a base class
    that only shares options.

    Class attributes: ``start_step``, ``transitions``, ``unique`` (default: the class name as
    key, scope ``workflow``), ``version`` (default 1), ``retry`` (default policy for its
    steps), ``tags``, ``metadata``, ``name`` (stored name; default ``module.QualName``).
    A versioned umbrella sets ``versions = {1: V1, 2: V2}`` and ``current`` instead of a graph,
    and may override ``version_for``.
    """

    start_step: ClassVar[TargetSpec]
    transitions: ClassVar[Mapping[tuple[type[Step], str], TransitionTarget]]
    unique: ClassVar[Unique]
    version: ClassVar[int]
    versions: ClassVar[Mapping[int, type[Workflow]]]
    current: ClassVar[int]
    retry: ClassVar[RetryPolicy | None] = None
    tags: ClassVar[Sequence[str]] = ()
    metadata: ClassVar[Mapping[str, Any]] = {}
    name: ClassVar[str]

    __hephaestus__: ClassVar[WorkflowDefinition | VersionedDefinition]

    sync: ClassVar[_SyncDescriptor] = _SyncDescriptor()
    """Blocking facade for sync code: ``OrderFlow.sync.start("abc123", {...})``."""

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        alias = cls.__dict__.get("start", MISSING)
        alias_issue = None
        if alias is not MISSING and not isinstance(alias, classmethod | staticmethod):
            delattr(cls, "start")  # the facade method stays visible as OrderFlow.start(...)
            if "start_step" in cls.__dict__:
                alias_issue = Issue(
                    IssueCode.INVALID_START, "define start_step or its alias start, not both"
                )
            else:
                cls.start_step = alias
        if abstract:
            return
        name = cls.__dict__.get("name")
        if not isinstance(name, str) or not name:
            name = f"{cls.__module__}.{cls.__qualname__}"
            cls.name = name
        spec = WorkflowSpec(
            name=name,
            display=cls.__qualname__,
            start=getattr(cls, "start_step", MISSING),
            transitions=getattr(cls, "transitions", MISSING),
            unique=getattr(cls, "unique", MISSING),
            tags=getattr(cls, "tags", ()),
            metadata=getattr(cls, "metadata", {}),
            version=getattr(cls, "version", MISSING),
            retry=getattr(cls, "retry", None),
            versions=getattr(cls, "versions", MISSING),
            current=getattr(cls, "current", MISSING),
            owner=cls,
        )
        try:
            definition = compile_workflow(spec, _definition_of)
        except WorkflowDefinitionError as exc:
            if alias_issue is None:
                raise
            raise WorkflowDefinitionError(cls.__qualname__, [alias_issue, *exc.issues]) from None
        if alias_issue is not None:
            raise WorkflowDefinitionError(cls.__qualname__, [alias_issue])
        cls.__hephaestus__ = definition
        default_registry.register(definition)

    # -- introspection ----------------------------------------------------------------------

    @classmethod
    def definition(cls) -> WorkflowDefinition | VersionedDefinition:
        """The validated definition (a ``VersionedDefinition`` for an umbrella)."""
        definition = cls.__dict__.get("__hephaestus__")
        if definition is None:
            raise InvalidArgumentError(
                f"{cls.__qualname__} is abstract (declared with abstract=True): it defines no "
                "runnable workflow; pass one of its concrete subclasses"
            )
        return definition  # type: ignore[no-any-return]

    @classmethod
    def version_for(cls, value: str, context: Mapping[str, Any]) -> int | None:
        """Pick the version a new run uses (umbrellas only); ``None`` means ``current``."""
        del value, context
        return None

    # -- facade -------------------------------------------------------------------------------
    # Each call resolves its app (``resolve_app``) and hands over to the app operation of the
    # same name, which resolves the run (``Hephaestus._target``); ``sync`` twins are made from
    # these methods by ``_Blocking``, so a parameter is added here and in the app only.

    @classmethod
    async def start(
        cls,
        value: str,
        context: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotent: float | timedelta | None = None,
        app: Hephaestus | None = None,
        conn: object | None = None,
    ) -> str:
        """Start a run for business value ``value``; returns its id (``key::value``).

        ``idempotent``: a window in seconds (or a ``timedelta``): a run of this id started
        with the same ``context``, active or ended within the window, is returned instead of
        starting another (see ``Hephaestus.start``).
        ``conn``: your open connection; the run starts if and only if your transaction commits
        (see "Inside your transaction" in docs/postgres.md).
        """
        target = resolve_app(app, cls)
        return await target.start(
            cls,
            value,
            context,
            version=version,
            metadata=metadata,
            idempotent=idempotent,
            conn=conn,
        )

    @classmethod
    async def resume(
        cls,
        value: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
        version: int | None = None,
        app: Hephaestus | None = None,
        conn: object | None = None,
    ) -> None:
        """Deliver ``event`` (with an optional ``payload``) to the run's waiting step
        (``conn``: once your transaction commits)."""
        await resolve_app(app, cls).resume(
            cls, value, event, payload, step=step, version=version, conn=conn
        )

    @classmethod
    async def schedule_resume(
        cls,
        value: str,
        step: str,
        delay: float | timedelta,
        *,
        event: str = "timeout",
        payload: Mapping[str, Any] | None = None,
        version: int | None = None,
        app: Hephaestus | None = None,
    ) -> ScheduledResume:
        """Resume ``step`` of the run with ``event`` after ``delay`` seconds (or a timedelta).

        Durable: stored with the run and re-armed after a restart. The event must be routed
        from ``step``; the resume is dropped if the step resolves first or the run ends.
        """
        return await resolve_app(app, cls)._schedule_resume_of(
            cls, value, step, delay, event=event, payload=payload, version=version
        )

    @classmethod
    async def get(
        cls, value: str, *, version: int | None = None, app: Hephaestus | None = None
    ) -> Instance:
        """The latest run for ``value`` (a bare value or the full id)."""
        return await resolve_app(app, cls).get(cls, value, version=version)

    @classmethod
    async def list(
        cls,
        *,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        after: str | None = None,
        app: Hephaestus | None = None,
        **filters: Unpack[RunFilters],
    ) -> list[Instance]:
        """This workflow's runs (all versions of an umbrella), oldest first unless asked.

        Filters (``RunFilters``) and pagination as ``Hephaestus.list`` takes them.
        """
        return await resolve_app(app, cls).list(
            cls, limit=limit, offset=offset, newest_first=newest_first, after=after, **filters
        )

    @classmethod
    async def cancel(
        cls,
        value: str,
        *,
        reason: str | None = None,
        version: int | None = None,
        app: Hephaestus | None = None,
        conn: object | None = None,
    ) -> None:
        """Cancel the active run: its executions and timers stop; the status is final
        (``conn``: once your transaction commits)."""
        await resolve_app(app, cls).cancel(cls, value, reason=reason, version=version, conn=conn)


class _Blocking[**P, R]:
    """The blocking twin of a facade classmethod, typed as the async method it wraps
    (``OrderFlow.sync.start`` has ``OrderFlow.start``'s parameters).

    It resolves the app in the caller's thread (where the current app is) and calls the app's
    own blocking twin (``app.sync``, the one place blocking calls are made) with the workflow,
    so the sync facade is the sync app API with the workflow filled in. ``app_method`` names
    the app operation a facade method hands over to when the names differ.
    """

    def __init__(self, method: Callable[P, Awaitable[R]], app_method: str | None = None) -> None:
        self._name: str = app_method or str(getattr(method, "__name__", ""))
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, facade: None, owner: type[_SyncFacade]) -> Self: ...
    @overload
    def __get__(self, facade: _SyncFacade, owner: type[_SyncFacade]) -> Callable[P, R]: ...
    def __get__(
        self, facade: _SyncFacade | None, owner: type[_SyncFacade]
    ) -> Self | Callable[P, R]:
        if facade is None:
            return self
        workflow = facade.workflow
        name = self._name

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            app = resolve_app(cast("Hephaestus | None", kwargs.pop("app", None)), workflow)
            return getattr(app.sync, name)(workflow, *args, **kwargs)  # type: ignore[no-any-return]

        call.__name__ = name.lstrip("_")
        call.__doc__ = self.__doc__
        return call


class _SyncFacade:
    """Blocking versions of the facade for sync code (scripts, Django, Flask)."""

    def __init__(self, workflow: type[Workflow]) -> None:
        self.workflow = workflow

    start = _Blocking(Workflow.start)
    resume = _Blocking(Workflow.resume)
    schedule_resume = _Blocking(Workflow.schedule_resume, "_schedule_resume_of")
    get = _Blocking(Workflow.get)
    list = _Blocking(Workflow.list)
    cancel = _Blocking(Workflow.cancel)


def _definition_of(value: object) -> WorkflowDefinition | VersionedDefinition | None:
    if isinstance(value, type) and issubclass(value, Workflow):
        definition = value.__dict__.get("__hephaestus__")
        if isinstance(definition, WorkflowDefinition | VersionedDefinition):
            return definition
    return None

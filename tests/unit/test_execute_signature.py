"""``execute`` is checked when the workflow class is defined: runners call it as
``step().execute(run, config, context)``, so a step that could not be called so is rejected
then, with every other problem, instead of failing each run that reaches it."""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING, Any, cast

import pytest

from hephaestus import (
    Debug,
    Done,
    Step,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinition,
)
from hephaestus.errors import IssueCode, WorkflowDefinitionError

if TYPE_CHECKING:
    from collections.abc import Callable

# Steps below are built dynamically from bare functions: their shapes are what is under test,
# so they are untyped on purpose (the type checker would reject most of them, as it should).


def step_with(execute: object, name: str = "Probe") -> type[Step]:
    """A Step subclass named ``name`` whose ``execute`` attribute is ``execute``."""
    namespace = {"__module__": __name__, "__qualname__": name, "events": ("ok",)}
    return cast(type[Step], type(name, (Step,), {**namespace, "execute": execute}))


def define(*steps: type[Step]) -> type[Workflow]:
    """A workflow running ``steps`` one after another, then Done."""
    transitions: dict[Any, Any] = {(a, "ok"): b for a, b in itertools.pairwise(steps)}
    transitions[(steps[-1], "ok")] = Done
    namespace = {"__module__": __name__, "start_step": steps[0], "transitions": transitions}
    return cast(type[Workflow], type("Flow", (Workflow,), namespace))


def rejected(*steps: type[Step]) -> WorkflowDefinitionError:
    """The error raised when defining a workflow of ``steps``."""
    with pytest.raises(WorkflowDefinitionError) as info:
        define(*steps)
    return info.value


def plain(self, run, config, context):  # type: ignore[no-untyped-def]
    return "ok"


async def asynchronous(self, run, config, context):  # type: ignore[no-untyped-def]
    return "ok"


def star_args(self, *args):  # type: ignore[no-untyped-def]
    return "ok"


def star_kwargs(self, run, *args, **kwargs):  # type: ignore[no-untyped-def]
    return "ok"


def defaults(self, run, config=None, context=None, *, verbose=False):  # type: ignore[no-untyped-def]
    return "ok"


def positional_only(self, run, config, context, /):  # type: ignore[no-untyped-def]
    return "ok"


def _traced(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def _with_flag(self, run, config, context, flag):  # type: ignore[no-untyped-def]
    return "ok"


class _CallableObject:
    """An object that is called as it is (it is no descriptor): no ``self`` is bound."""

    def __call__(self, run: object, config: object, context: object) -> str:
        return "ok"


GOOD: dict[str, object] = {
    "plain": plain,
    "async": asynchronous,
    "star-args": star_args,
    "star-kwargs": star_kwargs,
    "defaults-and-optional-keywords": defaults,
    "positional-only": positional_only,
    "decorated-with-wraps": _traced(plain),
    "partialmethod": functools.partialmethod(_with_flag, flag=True),
    "callable-object": _CallableObject(),
}


@pytest.mark.parametrize("execute", GOOD.values(), ids=GOOD.keys())
def test_callable_shapes_are_accepted(execute: object) -> None:
    """Any execute that binds (self, run, config, context) positionally defines fine."""
    definition = define(step_with(execute)).definition()
    assert isinstance(definition, WorkflowDefinition)


def test_built_in_steps_pass_the_check() -> None:
    """Done, Wait, WaitForEvent and Debug all have a valid execute."""

    class Builtins(Workflow):
        start_step = (Wait, {"duration": 1})
        transitions = {
            (Wait, "timeout"): Debug,
            (Debug, "completed"): WaitForEvent,
            (WaitForEvent, "received"): Done,
        }

    assert isinstance(Builtins.definition(), WorkflowDefinition)


def _missing_config(self, run):  # type: ignore[no-untyped-def]
    return "ok"


def _extra_required(self, run, config, context, clock):  # type: ignore[no-untyped-def]
    return "ok"


def _keyword_only_context(self, run, config, *, context):  # type: ignore[no-untyped-def]
    return "ok"


def _no_self(run, config, context):  # type: ignore[no-untyped-def]
    return "ok"


def _generator(self, run, config, context):  # type: ignore[no-untyped-def]
    yield "ok"


async def _async_generator(self, run, config, context):  # type: ignore[no-untyped-def]
    yield "ok"


BAD: dict[str, tuple[object, str]] = {
    "too-few": (_missing_config, "takes (self, run), which cannot be called with"),
    "extra-required": (_extra_required, "missing a required argument: 'clock'"),
    "keyword-only-context": (_keyword_only_context, "too many positional arguments"),
    "no-self": (_no_self, "takes (run, config, context), which cannot be called with (self, "),
    "staticmethod": (staticmethod(plain), "is a staticmethod"),
    "classmethod": (classmethod(plain), "is a classmethod"),
    "not-callable": ("ok", "is not callable (got 'ok')"),
    "generator": (_generator, "is a generator"),
    "async-generator": (_async_generator, "is a generator"),
    "builtin": (len, "takes (obj, /)"),
}


@pytest.mark.parametrize(("execute", "fragment"), BAD.values(), ids=BAD.keys())
def test_uncallable_shapes_are_invalid_execute_signatures(execute: object, fragment: str) -> None:
    """Each shape a runner could not call is one invalid_execute_signature issue, with the fix."""
    error = rejected(step_with(execute))
    (issue,) = error.issues
    assert issue.code is IssueCode.INVALID_EXECUTE_SIGNATURE
    assert issue.step == "Probe"
    assert issue.message.startswith("Probe.execute ")
    assert fragment in issue.message
    assert "def execute(self, run, config, context)" in issue.message


def test_every_bad_execute_is_reported_at_once() -> None:
    """Two bad steps and one that does not implement execute: three issues in one error."""

    class Lazy(Step):
        events = ("ok",)

    error = rejected(
        step_with(_missing_config, "First"), step_with(staticmethod(plain), "Second"), Lazy
    )
    assert [(issue.code, issue.step) for issue in error.issues] == [
        (IssueCode.INVALID_EXECUTE_SIGNATURE, "First"),
        (IssueCode.INVALID_EXECUTE_SIGNATURE, "Second"),
        (IssueCode.MISSING_EXECUTE, Lazy.__qualname__),
    ]


def test_an_inherited_execute_is_checked_on_the_subclass() -> None:
    """A subclass inherits its parent's execute, and with it the parent's verdict."""
    parent = step_with(_missing_config, "Parent")
    child = cast(type[Step], type("Child", (parent,), {"__module__": __name__}))
    issue = rejected(child).issues[0]
    assert (issue.code, issue.step) == (IssueCode.INVALID_EXECUTE_SIGNATURE, "Child")

"""Workflow definition validation: every rule of spec §3.6, reported at class-definition time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest

from hephaestus import (
    Config,
    Context,
    Done,
    RetryPolicy,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    VersionedDefinition,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinition,
    default_registry,
    route,
)
from hephaestus._core.definition import Target
from hephaestus.errors import HephaestusError, Issue, IssueCode, WorkflowDefinitionError

if TYPE_CHECKING:
    from collections.abc import Mapping


# -- helpers --------------------------------------------------------------------------------------


def make_step(name: str, *events: str, **attrs: Any) -> type[Step]:
    """A Step subclass named ``name`` (also its qualname) that emits its first event."""

    def execute(self: Step, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return events[0]

    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "events": events,
        "execute": execute,
        **attrs,
    }
    return cast(type[Step], type(name, (Step,), namespace))


def define(name: str = "Flow", **attrs: Any) -> type[Workflow]:
    """Create a Workflow subclass from keyword attributes, as a class statement would."""
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": name, **attrs}
    return cast(type[Workflow], type(name, (Workflow,), namespace))


def rejected(**attrs: Any) -> WorkflowDefinitionError:
    """The error raised when defining a workflow with ``attrs``."""
    with pytest.raises(WorkflowDefinitionError) as info:
        define("Broken", **attrs)
    return info.value


def issues(error: WorkflowDefinitionError, code: IssueCode) -> list[Issue]:
    """The issues of ``error`` carrying ``code`` (at least one)."""
    found = [issue for issue in error.issues if issue.code == code]
    assert found, f"no {code} issue in {error}"
    return found


def only(error: WorkflowDefinitionError, code: IssueCode) -> Issue:
    """The single issue of ``error``, which must carry ``code``."""
    assert error.codes == {code}, str(error)
    assert len(error.issues) == 1, str(error)
    return error.issues[0]


def standard(workflow: type[Workflow]) -> WorkflowDefinition:
    """The definition of a non-versioned workflow."""
    definition = workflow.definition()
    assert isinstance(definition, WorkflowDefinition)
    return definition


class Validate(Step):
    events = ("valid", "invalid")

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "valid"


class Charge(Step):
    events = ("charged",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "charged"


class Reserve(Step):
    events = ("reserved",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "reserved"


class Ship(Step):
    events = ("shipped",)
    retry = RetryPolicy(max_attempts=2)
    timeout = 30

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "shipped"


class Reject(Step):
    events = ("rejected",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "rejected"


class StepA(Step):
    events = ("ok",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "ok"


class StepB(Step):
    events = ("ok",)

    def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return "ok"


class OrderFlow(Workflow):
    start_step = Validate
    transitions = {
        (Validate, "valid"): [Charge, Reserve],
        (Validate, "invalid"): Reject,
        (Charge, "charged"): Ship,
        (Reserve, "reserved"): Ship,
        (Ship, "shipped"): Done,
        (Reject, "rejected"): Done,
    }
    tags = ["orders", "billing"]
    metadata = {"team": "payments"}
    retry = RetryPolicy(max_attempts=3, backoff="linear")


# -- raised at class-definition time, with every problem ------------------------------------------


def test_class_statement_raises_with_every_problem() -> None:
    """A broken class statement raises one WorkflowDefinitionError listing all its problems."""
    bad_tags: Any = "orders"
    bad_metadata: Any = {1: "one", "pid": object()}
    bad_version: Any = 0

    class Looping(Step):
        events = ("ok", "back")

    with pytest.raises(WorkflowDefinitionError) as info:

        class Broken(Workflow):
            unique = Unique(key="Order-Id")
            tags = bad_tags
            metadata = bad_metadata
            version = bad_version
            start_step = StepA
            transitions = {
                (StepA, "ok"): Looping,
                (Looping, "ok"): Done,
                (Looping, "back"): StepA,
                (Looping, "never"): Done,
            }

    error = info.value
    assert error.codes == {
        IssueCode.INVALID_UNIQUE,
        IssueCode.INVALID_TAGS,
        IssueCode.INVALID_METADATA,
        IssueCode.INVALID_VERSION,
        IssueCode.MISSING_EXECUTE,
        IssueCode.CYCLE,
        IssueCode.UNDECLARED_EVENT,
    }
    assert len(issues(error, IssueCode.INVALID_METADATA)) == 2  # bad keys and bad values
    assert error.workflow.endswith("Broken")
    assert f"({len(error.issues)} problems)" in str(error)
    for issue in error.issues:
        assert str(issue) in str(error)
    assert isinstance(error, HephaestusError)
    assert isinstance(error, TypeError)


def test_rejected_workflow_is_not_registered() -> None:
    """A workflow that fails validation gets no definition and is not registered."""
    with pytest.raises(WorkflowDefinitionError):

        class Unregistered(Workflow):
            transitions = {(StepA, "ok"): Done}

    name = f"{__name__}.{test_rejected_workflow_is_not_registered.__name__}.<locals>.Unregistered"
    assert default_registry.get(name) is None


def test_issue_str_names_code_and_message() -> None:
    """An issue prints as its code in brackets followed by its message."""
    issue = Issue(IssueCode.CYCLE, "cycle detected", step="A")
    assert str(issue) == "[cycle] cycle detected"


# -- start ----------------------------------------------------------------------------------------


def test_missing_start() -> None:
    """A workflow without start_step (or start) is rejected with missing_start."""
    issue = only(rejected(transitions={(StepA, "ok"): Done}), IssueCode.MISSING_START)
    assert "start" in issue.message


@pytest.mark.parametrize(
    "start",
    [
        pytest.param("StepA", id="string"),
        pytest.param([StepA, StepB], id="list"),
        pytest.param((StepA, "config"), id="non-dict-config"),
        pytest.param((StepA, {}, 1), id="triple"),
        pytest.param(StepA(), id="step-instance"),
        pytest.param(Workflow, id="not-a-step"),
    ],
)
def test_invalid_start(start: object) -> None:
    """start must be a Step subclass or a (Step, config dict) pair."""
    only(rejected(start_step=start, transitions={(StepA, "ok"): Done}), IssueCode.INVALID_START)


def test_start_and_start_step_together_are_rejected() -> None:
    """Defining both start and its alias start_step is an invalid_start."""
    with pytest.raises(WorkflowDefinitionError) as info:

        class Both(Workflow):
            start = StepA  # type: ignore[assignment]  # the alias is not typeable
            start_step = StepA
            transitions = {(StepA, "ok"): Done}

    assert "not both" in only(info.value, IssueCode.INVALID_START).message


def test_start_alias_is_accepted_and_facade_kept() -> None:
    """start = Step is an alias of start_step, and Workflow.start stays the facade method."""

    class Aliased(Workflow):
        start = StepA  # type: ignore[assignment]  # the alias is not typeable
        transitions = {(StepA, "ok"): Done}

    assert standard(Aliased).start == Target("step_a")
    assert Aliased.start_step is StepA
    assert "start" not in Aliased.__dict__
    assert Aliased.start.__func__ is Workflow.start.__func__  # type: ignore[attr-defined]


def test_start_step_with_config() -> None:
    """start_step = (Step, config) starts the run with that config."""

    class Configured(Workflow):
        start_step = (StepA, {"limit": 3})
        transitions = {(StepA, "ok"): Done}

    assert standard(Configured).start == Target("step_a", {"limit": 3})


def test_start_can_be_done() -> None:
    """A workflow whose start is Done, with no transitions, is valid."""

    class Trivial(Workflow):
        start_step = Done

    definition = standard(Trivial)
    assert definition.start == Target("done")
    assert definition.done == "done"
    assert list(definition.nodes) == ["done"]


# -- transitions shape ----------------------------------------------------------------------------


@pytest.mark.parametrize("transitions", [[(StepA, "ok", Done)], "StepA -> Done", 42])
def test_transitions_must_be_a_mapping(transitions: object) -> None:
    """transitions must be a dict keyed by (Step, event)."""
    only(rejected(start_step=Done, transitions=transitions), IssueCode.INVALID_TRANSITIONS)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("StepA", id="not-a-tuple"),
        pytest.param((StepA, "ok", 1), id="triple"),
        pytest.param(("StepA", "ok"), id="string-source"),
        pytest.param((StepA(), "ok"), id="instance-source"),
    ],
)
def test_invalid_source(key: object) -> None:
    """Each transition key must be a (Step subclass, event) pair."""
    only(rejected(start_step=Done, transitions={key: Done}), IssueCode.INVALID_SOURCE)


@pytest.mark.parametrize("event", ["", 5, None])
def test_invalid_event(event: object) -> None:
    """A transition's event must be a non-empty string."""
    issue = only(
        rejected(start_step=StepA, transitions={(StepA, "ok"): Done, (StepA, event): Done}),
        IssueCode.INVALID_EVENT,
    )
    assert issue.step == "StepA"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        pytest.param("Done", "got 'Done'", id="string"),
        pytest.param((StepB, Done), "use a list for fan-out", id="tuple-of-steps"),
        pytest.param([], "empty target list", id="empty-list"),
        pytest.param([StepB, StepB], "twice", id="duplicate"),
        pytest.param((StepB, "config"), "target must be", id="non-dict-config"),
        pytest.param([StepB, "x"], "got 'x'", id="bad-list-item"),
        pytest.param(
            route()(lambda context: None), "must declare Step subclasses", id="route-empty"
        ),
        pytest.param(
            route(cast(Any, "StepB"))(lambda context: None),
            "must declare Step subclasses",
            id="route-non-step",
        ),
    ],
)
def test_invalid_target(target: object, fragment: str) -> None:
    """A transition target must be a step, (step, config), a list of those, or a route."""
    error = rejected(start_step=StepA, transitions={(StepA, "ok"): target, (StepB, "ok"): Done})
    issue = only(error, IssueCode.INVALID_TARGET)
    assert fragment in issue.message
    assert issue.step == "StepA"


# -- step classes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "events",
    [
        pytest.param("ok", id="string"),
        pytest.param(("ok", "ok"), id="duplicate"),
        pytest.param(("",), id="empty-event"),
        pytest.param(("ok", 1), id="non-string"),
        pytest.param([["ok"]], id="unhashable"),
        pytest.param(None, id="none"),
    ],
)
def test_invalid_events(events: object) -> None:
    """Step.events must be a tuple of distinct non-empty strings; nothing else crashes."""
    bad = make_step("Bad", "ok", events=events)
    issue = only(
        rejected(start_step=bad, transitions={(bad, "ok"): Done, (bad, "other"): Done}),
        IssueCode.INVALID_EVENTS,
    )
    assert issue.step == "Bad"


def test_invalid_optional_events() -> None:
    """Step.optional_events follows the same rule as events (a string is not split)."""
    bad = make_step("Bad", "ok", optional_events="timeout")
    error = rejected(start_step=bad, transitions={(bad, "ok"): Done, (bad, "t"): Done})
    assert only(error, IssueCode.INVALID_EVENTS).step == "Bad"


def test_missing_execute() -> None:
    """A step that does not implement execute() is rejected at definition time."""

    class Lazy(Step):
        events = ("ok",)

    error = rejected(start_step=Lazy, transitions={(Lazy, "ok"): Done})
    issue = only(error, IssueCode.MISSING_EXECUTE)
    assert issue.step is not None
    assert issue.step.endswith("Lazy")


def test_two_done_steps_are_an_invalid_step() -> None:
    """A workflow ends in one Done step; a second Done subclass is rejected."""

    class Finished(Done):
        pass

    two = make_step("Two", "a", "b")
    error = rejected(start_step=two, transitions={(two, "a"): Done, (two, "b"): Finished})
    assert "single Done" in only(error, IssueCode.INVALID_STEP).message


@pytest.mark.parametrize("step_key", ["", 5])
def test_invalid_step_key(step_key: object) -> None:
    """A step_key override must be a non-empty string."""
    keyed = make_step("Keyed", "ok", step_key=step_key)
    error = rejected(start_step=keyed, transitions={(keyed, "ok"): Done})
    assert only(error, IssueCode.INVALID_STEP).step == "Keyed"


@pytest.mark.parametrize("timeout", [0, -1, True, "5"])
def test_invalid_step_timeout(timeout: object) -> None:
    """A step timeout must be a positive number of seconds."""
    slow = make_step("Slow", "ok", timeout=timeout)
    error = rejected(start_step=slow, transitions={(slow, "ok"): Done})
    assert only(error, IssueCode.INVALID_OPTION).step == "Slow"


@pytest.mark.parametrize(
    "retry", [RetryPolicy(max_attempts=0), RetryPolicy(initial_delay=-1), {"max_attempts": 3}]
)
def test_invalid_step_retry(retry: object) -> None:
    """A step's retry must be a valid RetryPolicy."""
    flaky = make_step("Flaky", "ok", retry=retry)
    error = rejected(start_step=flaky, transitions={(flaky, "ok"): Done})
    assert "Flaky.retry" in only(error, IssueCode.INVALID_RETRY).message


# -- graph rules ----------------------------------------------------------------------------------


def test_cycle_reports_its_path() -> None:
    """A directed cycle is rejected and the message shows the path around it."""
    a = make_step("A", "next", "finish")
    b = make_step("B", "next")
    c = make_step("C", "next")
    error = rejected(
        start_step=a,
        transitions={(a, "next"): b, (a, "finish"): Done, (b, "next"): c, (c, "next"): a},
    )
    assert "graph: A -> B -> C -> A." in only(error, IssueCode.CYCLE).message


def test_self_loop_is_a_cycle() -> None:
    """A step that transitions to itself forms a cycle."""
    a = make_step("A", "again", "finish")
    error = rejected(start_step=a, transitions={(a, "again"): a, (a, "finish"): Done})
    assert "graph: A -> A." in only(error, IssueCode.CYCLE).message


def test_a_step_used_twice_is_told_to_use_a_subclass() -> None:
    """Routing back to a step used earlier names the rule (one node per step class) and the fix
    (a subclass), and the subclass it suggests is accepted as a second step."""
    notify = make_step("Notify", "sent")
    charge = make_step("Charge", "charged")
    error = rejected(
        start_step=notify, transitions={(notify, "sent"): charge, (charge, "charged"): notify}
    )
    message = only(error, IssueCode.CYCLE).message
    assert "a step class appears once per graph" in message
    assert "class NotifyAgain(Notify): pass" in message
    twice = rejected(start_step=charge, transitions={(charge, "charged"): [notify, notify]})
    assert "class NotifyAgain(Notify): pass" in only(twice, IssueCode.INVALID_TARGET).message

    again = type("NotifyAgain", (notify,), {})

    class Twice(Workflow):
        unique = Unique(key="twice")
        start_step = notify
        transitions = {(notify, "sent"): charge, (charge, "charged"): again, (again, "sent"): Done}

    assert Twice.definition().name.endswith("Twice")


def test_unreachable_step() -> None:
    """A step not reachable from start (one that only appears as a source) is rejected."""
    a = make_step("A", "ok")
    orphan = make_step("Orphan", "ok")
    error = rejected(start_step=a, transitions={(a, "ok"): Done, (orphan, "ok"): Done})
    assert only(error, IssueCode.UNREACHABLE).message.endswith("start A: Orphan")


def test_dead_end() -> None:
    """A step with no outgoing transition that is not Done is a dead end."""
    a = make_step("A", "ok")
    leaf = make_step("Leaf")
    error = rejected(start_step=a, transitions={(a, "ok"): leaf})
    issue = only(error, IssueCode.DEAD_END)
    assert issue.step == "Leaf"
    assert "Leaf" in issue.message


def fan_out_flow(edges: Mapping[str, list[str]]) -> dict[str, Any]:
    """Workflow attributes for a graph of named steps starting at A, one ``next`` edge each."""
    steps: dict[str, type[Step]] = {"Done": Done}
    for name in edges:
        steps[name] = make_step(name, "next")
    transitions: dict[tuple[type[Step], str], Any] = {}
    for source, targets in edges.items():
        resolved = [steps[target] for target in targets]
        transitions[steps[source], "next"] = resolved if len(resolved) > 1 else resolved[0]
    return {"start_step": steps["A"], "transitions": transitions}


@pytest.mark.parametrize(
    "edges",
    [
        pytest.param({"A": ["B", "C"], "B": ["J"], "C": ["J"], "J": ["Done"]}, id="join"),
        pytest.param({"A": ["B"], "B": ["Done"]}, id="no-fan-out"),
    ],
)
def test_fan_out_that_converges_is_valid(edges: Mapping[str, list[str]]) -> None:
    """A static fan-out whose branches share a descendant other than Done is accepted."""
    define(**fan_out_flow(edges))


@pytest.mark.parametrize(
    "edges",
    [
        pytest.param({"A": ["B", "C"], "B": ["Done"], "C": ["Done"]}, id="both-to-done"),
        pytest.param(
            {"A": ["B", "C"], "B": ["J"], "C": ["Done"], "J": ["Done"]}, id="one-branch-joins"
        ),
        pytest.param({"A": ["B", "Done"], "B": ["Done"]}, id="fan-out-to-done"),
    ],
)
def test_fan_out_that_does_not_converge(edges: Mapping[str, list[str]]) -> None:
    """A static fan-out whose branches only meet at Done is rejected."""
    issue = only(rejected(**fan_out_flow(edges)), IssueCode.FAN_OUT_NOT_CONVERGING)
    assert issue.step == "A"
    assert "(A, 'next')" in issue.message


def test_route_alternatives_are_not_convergence_checked() -> None:
    """A route's declared targets are alternatives, so they need not converge."""
    a = make_step("A", "next")
    b = make_step("B", "next")
    c = make_step("C", "next")

    @route(b, c)
    def pick(context: Context) -> type[Step]:
        return b if context.initial.get("b") else c

    define(start_step=a, transitions={(a, "next"): pick, (b, "next"): Done, (c, "next"): Done})


# -- context keys ---------------------------------------------------------------------------------


def test_context_key_collision_between_same_named_steps() -> None:
    """Two step classes with the same name share a context key and are rejected."""
    first = make_step("Charge", "ok")
    second = make_step("Charge", "ok")
    error = rejected(start_step=first, transitions={(first, "ok"): second, (second, "ok"): Done})
    message = only(error, IssueCode.CONTEXT_KEY_COLLISION).message
    assert "'charge'" in message
    assert "set step_key" in message


def test_step_keyed_done_collides_with_done() -> None:
    """A user step whose step_key is "done" collides with the Done step (spec §9 #9)."""
    finish = make_step("Finish", "ok", step_key="done")
    error = rejected(start_step=finish, transitions={(finish, "ok"): Done})
    assert "'done'" in only(error, IssueCode.CONTEXT_KEY_COLLISION).message


def test_step_named_done_collides_with_done() -> None:
    """A plain step class named Done has the key "done" and collides with the real Done."""
    impostor = make_step("Done", "ok")
    error = rejected(start_step=impostor, transitions={(impostor, "ok"): Done})
    only(error, IssueCode.CONTEXT_KEY_COLLISION)


def test_step_key_override_resolves_a_collision() -> None:
    """Setting step_key on one of two same-named steps gives each its own context key."""
    first = make_step("Charge", "ok")
    second = make_step("Charge", "ok", step_key="charge_again")
    definition = standard(
        define(start_step=first, transitions={(first, "ok"): second, (second, "ok"): Done})
    )
    assert set(definition.nodes) == {"charge", "charge_again", "done"}
    assert definition.step_class("charge_again") is second


# -- events ---------------------------------------------------------------------------------------


def test_undeclared_event() -> None:
    """Routing an event the step does not declare is rejected."""
    a = make_step("A", "ok")
    error = rejected(start_step=a, transitions={(a, "ok"): Done, (a, "oops"): Done})
    issue = only(error, IssueCode.UNDECLARED_EVENT)
    assert "'oops'" in issue.message
    assert issue.step == "A"


def test_unhandled_event() -> None:
    """A declared event without a transition is rejected."""
    a = make_step("A", "ok", "maybe")
    error = rejected(start_step=a, transitions={(a, "ok"): Done})
    assert "'maybe'" in only(error, IssueCode.UNHANDLED_EVENT).message


def test_optional_events_may_be_routed_or_not() -> None:
    """Optional events (WaitForEvent's timeout) need no transition but may have one."""
    define(start_step=WaitForEvent, transitions={(WaitForEvent, "received"): Done})
    define(
        start_step=(WaitForEvent, {"timeout": 60}),
        transitions={(WaitForEvent, "received"): Done, (WaitForEvent, "timeout"): Done},
    )


# -- built-in step configs ------------------------------------------------------------------------


def test_wait_without_config() -> None:
    """Wait needs a duration config."""
    error = rejected(start_step=Wait, transitions={(Wait, "timeout"): Done})
    assert only(error, IssueCode.INVALID_CONFIG).step == "Wait"


@pytest.mark.parametrize(
    "config",
    [
        {"duration": 1, "unit": "fortnight"},
        {"duration": -1, "unit": "second"},
        {"duration": "5", "unit": "second"},
        {"unit": "second"},
    ],
)
def test_wait_with_bad_config(config: dict[str, Any]) -> None:
    """Wait's duration must be a non-negative number in a known unit."""
    error = rejected(start_step=(Wait, config), transitions={(Wait, "timeout"): Done})
    only(error, IssueCode.INVALID_CONFIG)


def test_config_of_a_transition_target_is_checked() -> None:
    """Configs given on transition targets are validated, not only the start's."""
    error = rejected(
        start_step=StepA,
        transitions={
            (StepA, "ok"): (Wait, {"duration": 1, "unit": "week"}),
            (Wait, "timeout"): Done,
        },
    )
    only(error, IssueCode.INVALID_CONFIG)


def test_wait_for_event_timeout_needs_a_timeout_transition() -> None:
    """WaitForEvent with a timeout must route its timeout event."""
    error = rejected(
        start_step=(WaitForEvent, {"timeout": 30}),
        transitions={(WaitForEvent, "received"): Done},
    )
    assert "'timeout'" in only(error, IssueCode.INVALID_CONFIG).message


def test_wait_for_event_bad_timeout() -> None:
    """WaitForEvent's timeout must be a non-negative number."""
    error = rejected(
        start_step=(WaitForEvent, {"timeout": -5}),
        transitions={(WaitForEvent, "received"): Done, (WaitForEvent, "timeout"): Done},
    )
    only(error, IssueCode.INVALID_CONFIG)


# -- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tags", ["not_a_list", [1], ("ok", None), {"a": "b"}])
def test_invalid_tags(tags: object) -> None:
    """tags must be a list of strings."""
    only(rejected(start_step=Done, tags=tags), IssueCode.INVALID_TAGS)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(["team"], id="not-a-dict"),
        pytest.param({1: "one"}, id="non-str-key"),
        pytest.param({"pid": object()}, id="object-value"),
        pytest.param({"when": {1, 2}}, id="set-value"),
        pytest.param({"nested": [{"deep": object()}]}, id="nested-object"),
        pytest.param({"nested": {2: "two"}}, id="nested-non-str-key"),
    ],
)
def test_invalid_metadata(metadata: object) -> None:
    """metadata must be a dict with str keys and JSON-safe values."""
    only(rejected(start_step=Done, metadata=metadata), IssueCode.INVALID_METADATA)


def test_valid_tags_and_metadata_are_kept() -> None:
    """Valid tags and JSON-safe metadata are kept on the definition."""
    metadata = {"team": "x", "n": 1, "f": 1.5, "on": True, "none": None, "list": [1, {"a": "b"}]}
    definition = standard(define("Tagged", start_step=Done, tags=["a", "b"], metadata=metadata))
    assert definition.tags == ("a", "b")
    assert definition.metadata == metadata


@pytest.mark.parametrize(
    "unique",
    [
        pytest.param(Unique(key="Order"), id="uppercase"),
        pytest.param(Unique(key=""), id="empty"),
        pytest.param(Unique(key="order-id"), id="dash"),
        pytest.param(Unique(key="order_id"), id="underscore"),
        pytest.param(Unique(key="order id"), id="space"),
        pytest.param(Unique(key="order\n"), id="trailing-newline"),
        pytest.param(Unique(key=cast(Any, 123)), id="non-str-key"),
        pytest.param(Unique(key="order", scope=cast(Any, "bogus")), id="bad-scope"),
        pytest.param({"key": "order"}, id="dict"),
        pytest.param("order", id="string"),
    ],
)
def test_invalid_unique(unique: object) -> None:
    """unique must be a Unique with an [a-z0-9]+ key and a known scope."""
    only(rejected(start_step=Done, unique=unique), IssueCode.INVALID_UNIQUE)


def test_default_unique_key_is_derived_from_the_class_name() -> None:
    """Without unique, the key is the class name lowercased with non-[a-z0-9] removed."""

    class Order_Flow2(Workflow):  # the odd name is the point of the test
        start_step = Done

    assert standard(Order_Flow2).unique == Unique(key="orderflow2", scope="workflow")


@pytest.mark.parametrize("scope", ["workflow", "version", "global", "none"])
def test_every_unique_scope_is_accepted(scope: Any) -> None:
    """Each documented scope is valid."""
    assert standard(define(start_step=Done, unique=Unique("order", scope))).unique.scope == scope


@pytest.mark.parametrize("version", [0, -1, True, "2", 1.5])
def test_invalid_version(version: object) -> None:
    """version must be a positive integer."""
    only(rejected(start_step=Done, version=version), IssueCode.INVALID_VERSION)


@pytest.mark.parametrize(
    "retry", [RetryPolicy(max_attempts=0), RetryPolicy(backoff=cast(Any, "fibonacci")), 3]
)
def test_invalid_workflow_retry(retry: object) -> None:
    """A workflow's retry must be a valid RetryPolicy."""
    error = rejected(start_step=Done, retry=retry)
    assert "workflow retry" in only(error, IssueCode.INVALID_RETRY).message


def test_retry_precedence() -> None:
    """Step retry wins over workflow retry, which wins over the default policy."""
    definition = standard(OrderFlow)
    assert definition.retry == RetryPolicy(max_attempts=3, backoff="linear")
    assert definition.nodes["ship"].retry == RetryPolicy(max_attempts=2)
    assert definition.nodes["charge"].retry == RetryPolicy(max_attempts=3, backoff="linear")
    assert standard(define(start_step=Done)).nodes["done"].retry == RetryPolicy()


# -- versioned umbrellas --------------------------------------------------------------------------


def test_umbrella_current_defaults_to_highest_version() -> None:
    """An umbrella without current starts new runs on its highest version."""

    class V1(Workflow):
        start_step = Done

    class V2(Workflow):
        version = 2
        start_step = Done

    class Umbrella(Workflow):
        versions = {1: V1, 2: V2}

    definition = Umbrella.definition()
    assert isinstance(definition, VersionedDefinition)
    assert definition.current == 2
    assert definition.versions == {1: V1.definition(), 2: V2.definition()}
    assert definition.unique == Unique("umbrella")
    assert default_registry.get(definition.name) is definition


def test_umbrella_explicit_current() -> None:
    """current picks the version new runs use."""

    class V1(Workflow):
        start_step = Done

    class V2(Workflow):
        version = 2
        start_step = Done

    class Umbrella(Workflow):
        versions = {1: V1, 2: V2}
        current = 1

    definition = Umbrella.definition()
    assert isinstance(definition, VersionedDefinition)
    assert definition.current == 1


def _versions() -> tuple[type[Workflow], type[Workflow]]:
    """Two valid version classes, versions 1 and 2."""
    return define("V1", start_step=Done), define("V2", version=2, start_step=Done)


@pytest.mark.parametrize(
    ("attrs", "fragment"),
    [
        pytest.param(lambda v1, v2: {"versions": {0: v1, 2: v2}}, "positive", id="zero-key"),
        pytest.param(lambda v1, v2: {"versions": {"1": v1, 2: v2}}, "positive", id="str-key"),
        pytest.param(lambda v1, v2: {"versions": {1: v2}}, "mismatch", id="mismatch"),
        pytest.param(
            lambda v1, v2: {"versions": {1: v1, 2: v2}, "current": 3}, "not a key", id="current"
        ),
        pytest.param(
            lambda v1, v2: {"versions": {1: v1}, "version": 1}, "both", id="version-and-versions"
        ),
        pytest.param(lambda v1, v2: {"versions": {1: StepA}}, "Workflow class", id="step"),
        pytest.param(lambda v1, v2: {"versions": {1: "V1"}}, "Workflow class", id="string"),
        pytest.param(lambda v1, v2: {"versions": {}}, "non-empty", id="empty"),
        pytest.param(lambda v1, v2: {"versions": [v1, v2]}, "non-empty dict", id="list"),
    ],
)
def test_invalid_versions(attrs: Any, fragment: str) -> None:
    """An umbrella's versions must map positive ints to matching Workflow classes."""
    error = rejected(**attrs(*_versions()))
    assert fragment in only(error, IssueCode.INVALID_VERSIONS).message


def test_umbrella_versions_must_not_be_umbrellas_or_abstract() -> None:
    """Only concrete, non-versioned workflows can be listed as versions."""
    v1, v2 = _versions()
    inner = define("Inner", versions={1: v1})
    base = cast(type[Workflow], type("Base", (Workflow,), {}, abstract=True))
    error = rejected(versions={1: inner, 2: base})
    assert len(issues(error, IssueCode.INVALID_VERSIONS)) == 2
    assert error.codes == {IssueCode.INVALID_VERSIONS}
    del v2


def test_umbrella_defines_no_graph() -> None:
    """An umbrella that also defines start or transitions is an invalid_option."""
    v1, _ = _versions()
    error = rejected(versions={1: v1}, start_step=Done, transitions={(StepA, "ok"): Done})
    assert "defines no start or transitions" in only(error, IssueCode.INVALID_OPTION).message


# -- valid shapes and introspection ---------------------------------------------------------------


def test_definition_introspection() -> None:
    """definition() exposes nodes, successors, predecessors, transitions and the Done key."""
    definition = standard(OrderFlow)
    assert definition.name == f"{__name__}.OrderFlow"
    assert definition.family == definition.name
    assert definition.version == 1
    assert definition.owner is OrderFlow
    assert definition.unique == Unique("orderflow")
    assert definition.tags == ("orders", "billing")
    assert definition.metadata == {"team": "payments"}
    assert definition.start == Target("validate")
    assert definition.done == "done"
    assert list(definition.nodes) == ["validate", "charge", "reserve", "reject", "ship", "done"]
    nodes = definition.nodes
    assert nodes["validate"].successors == ("charge", "reserve", "reject")
    assert nodes["validate"].predecessors == frozenset()
    assert nodes["ship"].predecessors == {"charge", "reserve"}
    assert nodes["done"].predecessors == {"ship", "reject"}
    assert nodes["done"].successors == ()
    assert nodes["done"].is_done
    assert not nodes["ship"].is_done
    valid = nodes["validate"].transitions["valid"]
    assert valid.targets == (Target("charge"), Target("reserve"))
    assert valid.route is None
    assert valid.declared == {"charge", "reserve"}
    assert nodes["validate"].events == {"valid", "invalid"}
    assert nodes["reserve"].is_async
    assert not nodes["charge"].is_async
    assert nodes["ship"].timeout == 30.0
    assert nodes["charge"].timeout is None
    assert definition.step_class("ship") is Ship
    assert default_registry.get(definition.name) is definition


def test_step_with_config_targets() -> None:
    """(Step, config) targets carry their config into the transition."""

    class WithConfig(Workflow):
        start_step = StepA
        transitions = {
            (StepA, "ok"): [(StepB, {"n": 1}), (Wait, {"duration": 2, "unit": "minute"})],
            (StepB, "ok"): Reject,
            (Wait, "timeout"): Reject,
            (Reject, "rejected"): Done,
        }

    ok = standard(WithConfig).nodes["step_a"].transitions["ok"]
    assert ok.targets == (
        Target("step_b", {"n": 1}),
        Target("wait", {"duration": 2, "unit": "minute"}),
    )


def test_route_transitions() -> None:
    """A route(...) transition records its function and every target it may pick."""

    @route(Charge, Reject)
    def pick(context: Context) -> type[Step]:
        return Charge if context.initial.get("pay") else Reject

    class Routed(Workflow):
        start_step = StepA
        transitions = {
            (StepA, "ok"): pick,
            (Charge, "charged"): Done,
            (Reject, "rejected"): Done,
        }

    definition = standard(Routed)
    ok = definition.nodes["step_a"].transitions["ok"]
    assert ok.route is pick
    assert ok.targets == (Target("charge"), Target("reject"))
    assert ok.declared == {"charge", "reject"}
    assert definition.nodes["step_a"].successors == ("charge", "reject")
    assert pick(Context(initial={"pay": True}, steps={})) is Charge


def test_name_override() -> None:
    """name overrides the stored name under which the workflow registers."""

    class Named(Workflow):
        name = "tests-unit-validation-named"
        start_step = Done

    definition = standard(Named)
    assert definition.name == "tests-unit-validation-named"
    assert default_registry.resolve("tests-unit-validation-named") is definition


def test_default_name_is_module_and_qualname() -> None:
    """Without name, a workflow is stored as module.QualName."""

    class Plain(Workflow):
        start_step = Done

    assert Plain.name == f"{__name__}.{Plain.__qualname__}"
    assert standard(Plain).name == Plain.name


def test_abstract_base_shares_options() -> None:
    """An abstract=True base is not validated or registered; subclasses inherit its options."""

    class Base(Workflow, abstract=True):
        unique = Unique("shared", scope="global")
        tags = ["base"]
        retry = RetryPolicy(max_attempts=1)

    class Concrete(Base):
        start_step = StepA
        transitions = {(StepA, "ok"): Done}

    with pytest.raises(TypeError, match="abstract"):
        Base.definition()
    assert "name" not in Base.__dict__
    definition = standard(Concrete)
    assert definition.unique == Unique("shared", scope="global")
    assert definition.tags == ("base",)
    assert definition.nodes["step_a"].retry == RetryPolicy(max_attempts=1)


def test_explicit_version_is_recorded() -> None:
    """A standard workflow's version option is kept on its definition."""
    assert standard(define(start_step=Done, version=3)).version == 3

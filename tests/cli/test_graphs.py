"""``hephaestus.graphs``: the renderings of the seed's examples, states, and docs injection.

The golden files under ``golden/`` pin each rendering exactly; ``UPDATE_GOLDEN=1 pytest
tests/cli`` rewrites them after a deliberate change (review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hephaestus import (
    Done,
    Hephaestus,
    Instance,
    Step,
    StepRun,
    Workflow,
    WorkflowDefinition,
    graphs,
)
from hephaestus.errors import UnknownVersionError
from hephaestus.testing import run_until_idle
from tests.cli.example_workflows import (
    EXAMPLES,
    FanOutFlow,
    LinearFlow,
    OrderFlow,
    OrderFlowV2,
    RouteFlow,
)

GOLDEN = Path(__file__).parent / "golden"
SUFFIXES: dict[graphs.Format, str] = {"ascii": "txt", "mermaid": "mmd", "dot": "dot"}


def _golden(stem: str, fmt: graphs.Format, actual: str) -> str:
    """The golden text for ``stem``/``fmt`` (rewritten from ``actual`` under UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{stem}.{SUFFIXES[fmt]}"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").removesuffix("\n")


@pytest.mark.parametrize("fmt", list(SUFFIXES))
@pytest.mark.parametrize("stem", list(EXAMPLES))
def test_rendering_matches_the_golden_file(stem: str, fmt: graphs.Format) -> None:
    """Each example renders exactly as its reviewed golden file, in every format."""
    actual = graphs.render(EXAMPLES[stem], fmt)
    assert actual == _golden(stem, fmt, actual)


def test_ascii_layers_follow_the_longest_path_from_the_start() -> None:
    """A step's layer is its longest distance from the start, so a join sits below both sides."""
    definition = FanOutFlow.definition()
    assert isinstance(definition, WorkflowDefinition)
    assert graphs.layers(definition) == [
        ["validate"],
        ["charge", "reserve", "reject"],
        ["ship"],
        ["await_delivery"],
        ["done"],
    ]


def test_ascii_marks_fan_out_fan_in_routes_start_and_done() -> None:
    """Fan-out targets are joined by &, each join shows its policy, routes are marked with ?."""
    fan = graphs.render(FanOutFlow)
    assert "[*validate]" in fan
    assert "├──:valid──> charge & reserve  (fan-out)" in fan
    assert "[ship]  <── charge, reserve  (join: all)" in fan
    assert "(done)  <── reject, await_delivery  (join: any)" in fan
    routed = graphs.render(RouteFlow)
    assert "──?packed──> express_shipping | standard_shipping  (route pick_shipping)" in routed
    assert '[*pack] {"fragile": true}' in routed
    assert '──:sent──> transit {"duration": 1, "unit": "day"}' in routed
    assert "[transit]  <── express_shipping, standard_shipping  (join: any)" in routed


def test_versioned_workflow_renders_each_version_or_the_one_asked_for() -> None:
    """An umbrella draws every version; ``version=`` draws one; an unknown version raises."""
    both = graphs.render(OrderFlow)
    assert "OrderFlow  version 1" in both
    assert "OrderFlow  version 2" in both
    only = graphs.render(OrderFlow, version=2)
    assert "version 1" not in only
    assert only == graphs.render(OrderFlowV2).replace("OrderFlowV2", "OrderFlow")
    assert "subgraph v1" in graphs.render(OrderFlow, "mermaid")
    assert "subgraph cluster_v2" in graphs.render(OrderFlow, "dot")
    with pytest.raises(UnknownVersionError, match="no version 3"):
        graphs.render(OrderFlow, version=3)


def test_unknown_format_and_non_workflows_are_rejected() -> None:
    """A format other than ascii, mermaid or dot, or an object that is no workflow, raises."""
    with pytest.raises(ValueError, match="unknown graph format 'svg'"):
        graphs.render(LinearFlow, "svg")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a Workflow class"):
        graphs.render(object)  # type: ignore[arg-type]


async def _waiting_run() -> Instance:
    """A FanOutFlow run that has fanned out, joined, and now waits for the courier."""
    async with Hephaestus() as app:
        await FanOutFlow.start("7", {"items": ["anvil"]})
        await run_until_idle(app)
        return await FanOutFlow.get("7")


async def test_instance_marks_each_step_with_its_state() -> None:
    """With a run, ASCII marks completed, skipped, waiting and unreached steps and taken edges."""
    run = await _waiting_run()
    text = graphs.render(FanOutFlow, instance=run)
    assert f"instance {run.id}  run {run.run_id}  waiting" in text
    assert "[✓] [*validate]" in text
    assert "[-] [reject]" in text
    assert "[~] [await_delivery]" in text
    assert "[ ] (done)" in text
    assert "──:valid──> charge & reserve  (fan-out)  (taken)" in text
    assert "──:invalid──> reject\n" in text  # not taken


async def test_mermaid_and_dot_colour_steps_by_state() -> None:
    """Mermaid assigns state classes, DOT fills nodes; unreached steps keep the plain style."""
    run = await _waiting_run()
    mermaid = graphs.render(FanOutFlow, "mermaid", run)
    assert "classDef waiting fill:#fef3c7,stroke:#d97706" in mermaid
    assert "class validate,charge,reserve,ship completed" in mermaid
    assert "class await_delivery waiting" in mermaid
    dot = graphs.render(FanOutFlow, "dot", run)
    assert '"await_delivery" [label="await_delivery", style="rounded,filled"' in dot
    assert '"done" [label="done (join: any)", shape=doublecircle];' in dot
    assert '"ship" [label="ship (join: all)", style="rounded,filled"' in dot
    assert 'ship["ship (join: all)"]' in mermaid


async def test_instance_of_another_workflow_is_rejected() -> None:
    """Drawing a run on the graph of a different workflow raises instead of mislabelling it."""
    run = await _waiting_run()
    with pytest.raises(ValueError, match=r"is a run of .*FanOutFlow"):
        graphs.render(LinearFlow, instance=run)


def test_long_fan_out_wraps_within_100_columns() -> None:
    """A fan-out to many long-named steps wraps onto aligned continuation lines."""

    def execute(self: Step, run: StepRun, config: object, context: object) -> str:
        return "ok"

    steps = [
        type(
            f"ParallelStepNumber{i}WithAVeryLongName",
            (Step,),
            {"events": ("ok",), "execute": execute},
        )
        for i in range(8)
    ]

    class Start(Step):
        events = ("go",)

        def execute(self, run: StepRun, config: object, context: object) -> str:
            return "go"

    class Join(Step):
        events = ("joined",)

        def execute(self, run: StepRun, config: object, context: object) -> str:
            return "joined"

    class Wide(Workflow):
        start_step = Start
        transitions = {
            (Start, "go"): list(steps),
            **{(step, "ok"): Join for step in steps},
            (Join, "joined"): Done,
        }

    text = graphs.render(Wide)
    assert max(len(line) for line in text.splitlines()) <= graphs.WIDTH
    fan_out = text.split("──:go──> ", 1)[1].split("(fan-out)", 1)[0]
    assert fan_out.count("&") == 7
    assert fan_out.count("\n") >= 2


def test_docstring_block_is_fenced_between_markers() -> None:
    """The docs block is the rendering in a code fence between the workflow's markers."""
    block = graphs.docstring_block(LinearFlow)
    start, end = graphs.markers("LinearFlow")
    assert block == f"{start}\n```text\n{graphs.render(LinearFlow)}\n```\n{end}"
    assert graphs.docstring_block(LinearFlow, "mermaid").split("\n")[1] == "```mermaid"


def test_inject_replaces_the_block_and_is_idempotent() -> None:
    """Injecting replaces only the marked block, keeps its indent, and a re-run changes nothing."""
    start, end = graphs.markers("LinearFlow")
    text = (
        f'class Doc:\n    """Intro.\n\n    {start}\n    stale\n    {end}\n\n    Outro.\n    """\n'
    )
    once = graphs.inject(text, LinearFlow)
    assert "stale" not in once
    assert once.startswith(
        'class Doc:\n    """Intro.\n\n    <!-- hephaestus:graph:start:LinearFlow'
    )
    assert "\n     0  [*fetch]" in once  # the marker's indent, then the line's own
    assert once.endswith(f'    {end}\n\n    Outro.\n    """\n')
    assert graphs.inject(once, LinearFlow) == once
    assert all(line == line.rstrip() for line in once.splitlines())


def test_inject_without_markers_raises() -> None:
    """Text without the workflow's markers is an error, not a silent no-op."""
    with pytest.raises(LookupError, match="hephaestus:graph:start:LinearFlow"):
        graphs.inject("no markers here", LinearFlow)

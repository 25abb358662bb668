"""Workflow graphs as text: ASCII for terminals and docs, Mermaid, and Graphviz DOT.

```python
from hephaestus import graphs

print(graphs.render(OrderFlow))                    # ASCII, top to bottom
print(graphs.render(OrderFlow, format="mermaid"))  # flowchart TD
print(graphs.render(OrderFlow, instance=run))      # each step marked with its state in ``run``
```

Every function is pure: it reads a workflow class or a compiled definition (and optionally an
``Instance``) and returns a string. ``inject`` puts a rendering between
``<!-- hephaestus:graph:start:<Name> -->`` and ``<!-- hephaestus:graph:end:<Name> -->``
markers in any text (a Markdown page, a docstring), replacing the previous block, so re-runs
are idempotent. ``hephaestus graph MODULE:Workflow --inject FILE`` does the same from the
command line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from hephaestus._core.definition import VersionedDefinition, WorkflowDefinition
from hephaestus._core.graph import topological_order
from hephaestus._core.instance import StepStatus
from hephaestus.errors import InvalidArgumentError, UnknownVersionError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hephaestus._core.definition import Node, Target, Transition
    from hephaestus._core.instance import Instance
    from hephaestus._workflow import Workflow

__all__ = [
    "FORMATS",
    "STATE_MARKERS",
    "WIDTH",
    "Format",
    "GraphSource",
    "Line",
    "Segment",
    "ascii_lines",
    "definitions",
    "display_name",
    "docstring_block",
    "inject",
    "layers",
    "markers",
    "render",
]

Format = Literal["ascii", "mermaid", "dot"]
FORMATS: tuple[Format, ...] = get_args(Format)

type GraphSource = type[Workflow] | WorkflowDefinition | VersionedDefinition
"""What every function here accepts: a workflow class or its compiled definition."""

WIDTH = 100
"""ASCII renderings wrap long target lists to stay within this many columns."""

STATE_MARKERS: Mapping[str, str] = {
    StepStatus.COMPLETED: "[✓]",
    StepStatus.WAITING: "[~]",
    StepStatus.ACTIVE: "[>]",
    StepStatus.SKIPPED: "[-]",
    StepStatus.FAILED: "[x]",
    StepStatus.CANCELLED: "[!]",
    "unreached": "[ ]",
}
"""The marker an ASCII rendering puts before each step, by step status, given an instance."""

_FILL = {
    StepStatus.COMPLETED: ("#d1fae5", "#059669"),
    StepStatus.WAITING: ("#fef3c7", "#d97706"),
    StepStatus.ACTIVE: ("#dbeafe", "#2563eb"),
    StepStatus.SKIPPED: ("#f3f4f6", "#9ca3af"),
    StepStatus.FAILED: ("#fee2e2", "#dc2626"),
    StepStatus.CANCELLED: ("#ede9fe", "#7c3aed"),
}
_FENCES: Mapping[str, str] = {"ascii": "text", "mermaid": "mermaid", "dot": "dot"}
_MERMAID_RESERVED = frozenset({"end", "graph", "subgraph", "flowchart", "style", "class", "click"})

Segment = tuple[str, str]
"""A piece of an ASCII line and its role (``""``, ``"node"``, ``"event"``, a step status...)."""
Line = list[Segment]
"""One line of an ASCII rendering; the command line colours each segment by its role."""


# -- choosing what to draw ----------------------------------------------------------------


def _compiled(workflow: object) -> WorkflowDefinition | VersionedDefinition:
    if isinstance(workflow, WorkflowDefinition | VersionedDefinition):
        return workflow
    definition = getattr(workflow, "definition", None)
    if isinstance(workflow, type) and callable(definition):
        compiled = definition()
        if isinstance(compiled, WorkflowDefinition | VersionedDefinition):
            return compiled
    raise InvalidArgumentError(
        f"expected a Workflow class or a workflow definition, got {workflow!r}"
    )


def display_name(workflow: GraphSource) -> str:
    """The short name used in titles and docs markers: the class name, else the last name part."""
    compiled = _compiled(workflow)
    owner = compiled.owner
    if isinstance(owner, type):
        return owner.__qualname__
    return compiled.name.rsplit(".", 1)[-1]


def definitions(
    workflow: GraphSource,
    *,
    version: int | None = None,
    instance: Instance | None = None,
) -> list[WorkflowDefinition]:
    """The graphs to draw: one per version of an umbrella, or the one ``version`` or run uses.

    Raises ``UnknownVersionError`` for a version the workflow does not have, and ``ValueError``
    when ``instance`` is a run of another workflow (an ``InvalidArgumentError``).
    """
    compiled = _compiled(workflow)
    if instance is not None:
        version = instance.workflow_version if version is None else version
    if isinstance(compiled, VersionedDefinition):
        if version is None:
            chosen = [compiled.versions[v] for v in sorted(compiled.versions)]
        elif version in compiled.versions:
            chosen = [compiled.versions[version]]
        else:
            raise UnknownVersionError(
                f"{compiled.name} has no version {version}; available: {sorted(compiled.versions)}"
            )
    elif version is not None and version != compiled.version:
        raise UnknownVersionError(
            f"{compiled.name} is version {compiled.version}; got version={version}"
        )
    else:
        chosen = [compiled]
    if instance is not None and instance.workflow != chosen[0].name:
        raise InvalidArgumentError(
            f"instance {instance.id} is a run of {instance.workflow}, not of {chosen[0].name}"
        )
    return chosen


def layers(definition: WorkflowDefinition) -> list[list[str]]:
    """Step keys by layer: a step's layer is the length of the longest path from the start."""
    adjacency = {key: node.successors for key, node in definition.nodes.items()}
    depth = {definition.start.key: 0}
    for key in topological_order(adjacency, list(definition.nodes)):
        for successor in adjacency[key]:
            depth[successor] = max(depth.get(successor, 0), depth.get(key, 0) + 1)
    rows: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for key in definition.nodes:  # nodes keep their order of first appearance
        rows[depth.get(key, 0)].append(key)
    return rows


def _join_note(node: Node) -> str:
    """How a join is shown: ``join: all`` or ``join: any`` (empty for other steps)."""
    return "" if node.join is None else f"join: {node.join}"


def _config(config: Mapping[str, object] | None) -> str:
    return "" if not config else " " + json.dumps(dict(config), default=str)


def _route_name(transition: Transition) -> str:
    fn = transition.route.fn if transition.route is not None else None
    return getattr(fn, "__name__", "route")


def _state(instance: Instance | None, key: str) -> str | None:
    if instance is None:
        return None
    state = instance.steps.get(key)
    return "unreached" if state is None else str(state.status)


# -- ASCII ----------------------------------------------------------------------------------


def _node_label(definition: WorkflowDefinition, node: Node) -> str:
    if node.is_done:
        return f"({node.key})"
    if node.key == definition.start.key:
        return f"[*{node.key}]{_config(definition.start.config)}"
    return f"[{node.key}]"


def _target_label(definition: WorkflowDefinition, target: Target) -> str:
    node = definition.nodes[target.key]
    label = f"({target.key})" if node.is_done else target.key
    return label + _config(target.config)


def _wrap(head: Line, items: list[str], sep: str, tail: Line) -> list[Line]:
    """``head``, then ``items`` each but the last followed by ``sep``, then ``tail``, wrapped."""
    indent = " " * sum(len(text) for text, _ in head)
    lines: list[Line] = []
    current: Line = list(head)
    width = len(indent)
    for i, item in enumerate(items):
        piece = item if i == len(items) - 1 else f"{item}{sep}"
        if i and width + 1 + len(piece) > WIDTH:
            lines.append(current)
            current, width = [(indent, "")], len(indent)
        elif i:
            current.append((" ", ""))
            width += 1
        current.append((piece, "target"))
        width += len(piece)
    current.extend(tail)
    lines.append(current)
    return lines


def _ascii_edges(
    definition: WorkflowDefinition, node: Node, instance: Instance | None, gutter: str
) -> list[Line]:
    lines: list[Line] = []
    taken = None
    if instance is not None and (state := instance.steps.get(node.key)) is not None:
        taken = state.event
    events = list(node.transitions)
    for i, event in enumerate(events):
        transition = node.transitions[event]
        branch = "└─" if i == len(events) - 1 else "├─"
        if transition.route is not None:
            arrow: list[Segment] = [
                (f"{gutter}  {branch}─", ""),
                (f"?{event}", "route"),
                ("──> ", ""),
            ]
            note = f"  (route {_route_name(transition)})"
            sep = " |"
        else:
            arrow = [(f"{gutter}  {branch}─", ""), (f":{event}", "event"), ("──> ", "")]
            note = "  (fan-out)" if len(transition.targets) > 1 else ""
            sep = " &"
        tail: list[Segment] = [(note, "note")] if note else []
        if taken == event:
            tail.append(("  (taken)", "taken"))
        labels = [_target_label(definition, target) for target in transition.targets]
        lines.extend(_wrap(arrow, labels, sep, tail))
    return lines


def ascii_lines(
    definition: WorkflowDefinition, instance: Instance | None = None, *, title: str | None = None
) -> list[Line]:
    """One workflow graph as lines of styled segments (``render`` joins the text)."""
    lines: list[Line] = []
    heading = (
        title if title is not None else f"{display_name(definition)}  version {definition.version}"
    )
    lines.append([(heading, "title")])
    if instance is not None:
        lines.append(
            [
                (f"instance {instance.id}  run {instance.run_id}  ", ""),
                (str(instance.status), str(instance.status)),
            ]
        )
    lines.append([])
    rows = layers(definition)
    number_width = len(str(len(rows) - 1))
    for depth, row in enumerate(rows):
        for position, key in enumerate(row):
            node = definition.nodes[key]
            number = str(depth).rjust(number_width) if position == 0 else " " * number_width
            line: Line = [(f" {number}  ", "layer")]
            state = _state(instance, key)
            if state is not None:
                line.append((STATE_MARKERS[state], state))
                line.append((" ", ""))
            role = "done" if node.is_done else "start" if key == definition.start.key else "node"
            line.append((_node_label(definition, node), state or role))
            if len(node.predecessors) > 1:
                sources = sorted(node.predecessors, key=list(definition.nodes).index)
                line.append(("  <── ", "note"))
                lines.extend(_wrap(line, sources, ",", [(f"  ({_join_note(node)})", "note")]))
            else:
                lines.append(line)
            gutter = " " * (number_width + 3) + (" " * 4 if instance is not None else "")
            lines.extend(_ascii_edges(definition, node, instance, gutter))
    if instance is not None:
        lines.append([])
        legend = "  ".join(f"{marker} {state}" for state, marker in STATE_MARKERS.items())
        lines.append([(legend, "note")])
    return lines


def _text(lines: list[Line]) -> str:
    return "\n".join("".join(text for text, _ in line).rstrip() for line in lines)


# -- Mermaid --------------------------------------------------------------------------------


def _mermaid_id(key: str, prefix: str) -> str:
    ident = f"{prefix}{key}"
    return f"{ident}_" if ident in _MERMAID_RESERVED else ident


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _mermaid(
    chosen: list[WorkflowDefinition], instance: Instance | None, *, name: str
) -> list[str]:
    lines = ["flowchart TD"]
    states: dict[str, list[str]] = {}
    versioned = len(chosen) > 1
    for definition in chosen:
        prefix = f"v{definition.version}_" if versioned else ""
        indent = "    "
        if versioned:
            title = _mermaid_label(f"{name} version {definition.version}")
            lines.append(f"    subgraph v{definition.version}[{title}]")
            indent = "        "
        else:
            lines.append(f"    %% {name} version {definition.version}")
        for key, node in definition.nodes.items():
            ident = _mermaid_id(key, prefix)
            label = _mermaid_label(
                key
                + (_config(definition.start.config) if key == definition.start.key else "")
                + (f" ({_join_note(node)})" if node.join is not None else "")
            )
            if node.is_done:
                lines.append(f"{indent}{ident}(({label}))")
            elif key == definition.start.key:
                lines.append(f"{indent}{ident}([{label}])")
            else:
                lines.append(f"{indent}{ident}[{label}]")
            state = _state(instance, key)
            if state is not None and state != "unreached":
                states.setdefault(state, []).append(ident)
        for key, node in definition.nodes.items():
            for event, transition in node.transitions.items():
                for target in transition.targets:
                    source, dest = _mermaid_id(key, prefix), _mermaid_id(target.key, prefix)
                    if transition.route is not None:
                        text = f"?{event} (route {_route_name(transition)})"
                        lines.append(f"{indent}{source} -.->|{_mermaid_label(text)}| {dest}")
                    else:
                        text = event + _config(target.config)
                        lines.append(f"{indent}{source} -->|{_mermaid_label(text)}| {dest}")
        if versioned:
            lines.append("    end")
    if instance is not None:
        for step_status, (fill, stroke) in _FILL.items():
            lines.append(f"    classDef {step_status} fill:{fill},stroke:{stroke}")
        for state_name, idents in states.items():
            lines.append(f"    class {','.join(idents)} {state_name}")
    return lines


# -- DOT ------------------------------------------------------------------------------------


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(chosen: list[WorkflowDefinition], instance: Instance | None, *, name: str) -> list[str]:
    lines = [
        f"digraph {_dot_string(name)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    versioned = len(chosen) > 1
    for definition in chosen:
        prefix = f"v{definition.version}_" if versioned else ""
        indent = "    "
        if versioned:
            lines.append(f"    subgraph cluster_v{definition.version} {{")
            lines.append(f"        label={_dot_string(f'{name} version {definition.version}')};")
            indent = "        "
        for key, node in definition.nodes.items():
            text = key if node.join is None else f"{key} ({_join_note(node)})"
            attributes = [f"label={_dot_string(text)}"]
            if node.is_done:
                attributes.append("shape=doublecircle")
            elif key == definition.start.key:
                attributes.append("peripheries=2")
                if definition.start.config:
                    attributes[0] = f"label={_dot_string(key + _config(definition.start.config))}"
            state = instance.steps.get(key) if instance is not None else None
            if state is not None and state.status in _FILL:
                fill, stroke = _FILL[state.status]
                attributes.append(f'style="rounded,filled", fillcolor="{fill}", color="{stroke}"')
            lines.append(f"{indent}{_dot_string(prefix + key)} [{', '.join(attributes)}];")
        for key, node in definition.nodes.items():
            for event, transition in node.transitions.items():
                for target in transition.targets:
                    edge = (
                        f"{indent}{_dot_string(prefix + key)} -> {_dot_string(prefix + target.key)}"
                    )
                    if transition.route is not None:
                        label = f"?{event}\\n(route {_route_name(transition)})"
                        lines.append(f'{edge} [label="{label}", style=dashed];')
                    else:
                        label = _dot_string(event + _config(target.config))
                        lines.append(f"{edge} [label={label}];")
        if versioned:
            lines.append("    }")
    lines.append("}")
    return lines


# -- public API -----------------------------------------------------------------------------


def render(
    workflow: GraphSource,
    format: Format = "ascii",
    instance: Instance | None = None,
    *,
    version: int | None = None,
) -> str:
    """Render ``workflow``'s graph; an umbrella renders each version unless ``version`` is given.

    ASCII lists the steps top to bottom by layer (longest path from the start): ``[*start]``,
    ``[step]``, ``(done)``; each transition as ``──:event──> target`` (``&`` joins the targets of
    a fan-out), a route as ``──?event──> a | b  (route name)``, and joins with their sources.
    With ``instance`` every step is marked with its state in that run (``STATE_MARKERS``),
    Mermaid and DOT colour them. The result has no trailing newline.
    """
    if format not in FORMATS:
        raise InvalidArgumentError(
            f"unknown graph format {format!r}; choose from {', '.join(FORMATS)}"
        )
    chosen = definitions(workflow, version=version, instance=instance)
    name = display_name(workflow)
    if format == "mermaid":
        return "\n".join(_mermaid(chosen, instance, name=name))
    if format == "dot":
        return "\n".join(_dot(chosen, instance, name=name))
    return "\n\n".join(
        _text(ascii_lines(definition, instance, title=f"{name}  version {definition.version}"))
        for definition in chosen
    )


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of the docs block for workflow ``name``."""
    return f"<!-- hephaestus:graph:start:{name} -->", f"<!-- hephaestus:graph:end:{name} -->"


def docstring_block(
    workflow: GraphSource,
    format: Format = "ascii",
    *,
    version: int | None = None,
    name: str | None = None,
) -> str:
    """The rendering in a Markdown code fence between the docs markers, ready to paste."""
    start, end = markers(name or display_name(workflow))
    body = render(workflow, format, version=version)
    return f"{start}\n```{_FENCES[format]}\n{body}\n```\n{end}"


@dataclass(frozen=True, slots=True)
class _Block:
    begin: int
    end: int
    indent: str


def _find_block(text: str, name: str) -> _Block | None:
    start, end = (re.escape(marker) for marker in markers(name))
    found = re.search(rf"^([ \t]*){start}[ \t]*$(.*?)^[ \t]*{end}[ \t]*$", text, re.M | re.S)
    if found is None:
        return None
    return _Block(found.start(), found.end(), found.group(1))


def inject(
    text: str,
    workflow: GraphSource,
    format: Format = "ascii",
    *,
    version: int | None = None,
    name: str | None = None,
) -> str:
    """``text`` with the block between ``workflow``'s docs markers replaced by a fresh rendering.

    The block keeps the start marker's indentation (so it fits in an indented docstring), and
    injecting twice gives the same text. Raises ``LookupError`` when the markers are missing.
    """
    label = name or display_name(workflow)
    block = _find_block(text, label)
    if block is None:
        start, end = markers(label)
        raise LookupError(f"no {start} ... {end} block found")
    fresh = docstring_block(workflow, format, version=version, name=label)
    indented = "\n".join(f"{block.indent}{line}" if line else "" for line in fresh.splitlines())
    return text[: block.begin] + indented + text[block.end :]

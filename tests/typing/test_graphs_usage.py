"""Typed usage of ``hephaestus.graphs`` that the strict type checker must accept."""

from __future__ import annotations

from typing import assert_type

from hephaestus import WorkflowDefinition, graphs
from tests.cli.example_workflows import FanOutFlow, OrderFlow


def test_typed_graphs_usage() -> None:
    """Renderings take a workflow class or definition and a format literal, and return text."""
    fmt: graphs.Format = "mermaid"
    assert_type(graphs.render(FanOutFlow), str)
    assert_type(graphs.render(FanOutFlow.definition(), fmt), str)
    chosen = graphs.definitions(OrderFlow, version=2)
    assert_type(chosen, list[WorkflowDefinition])
    lines = graphs.ascii_lines(chosen[0])
    assert_type(lines, list[graphs.Line])
    assert all(isinstance(text, str) and isinstance(role, str) for text, role in lines[0])
    block = graphs.docstring_block(FanOutFlow, "dot")
    assert graphs.inject(block, FanOutFlow, "dot") == block
    start, end = graphs.markers(graphs.display_name(OrderFlow))
    assert_type(start, str)
    assert end == "<!-- hephaestus:graph:end:OrderFlow -->"

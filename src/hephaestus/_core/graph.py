"""Small graph algorithms over adjacency maps of step keys (iterative: no recursion limits)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["find_cycle", "reachable", "topological_order"]

Adjacency = Mapping[str, Sequence[str]]


def reachable(adjacency: Adjacency, sources: Iterable[str]) -> set[str]:
    """Every node reachable from ``sources``, the sources included."""
    seen: set[str] = set()
    stack = list(sources)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(adjacency.get(node, ()))
    return seen


def find_cycle(adjacency: Adjacency, nodes: Iterable[str]) -> list[str] | None:
    """One directed cycle as a path ``[a, b, ..., a]``, or ``None`` if the graph is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in nodes:
        if root in state:
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            successors = adjacency.get(node, ())
            if index < len(successors):
                stack.append((node, index + 1))
                nxt = successors[index]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if nxt not in state:
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def topological_order(adjacency: Adjacency, nodes: Sequence[str]) -> list[str]:
    """Nodes ordered so that every edge goes forward (the graph must be acyclic)."""
    indegree = dict.fromkeys(nodes, 0)
    for node in nodes:
        for nxt in adjacency.get(node, ()):
            indegree[nxt] = indegree.get(nxt, 0) + 1
    ready = [node for node in nodes if indegree[node] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for nxt in adjacency.get(node, ()):
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return order

"""Join policies inferred from the static graph: which joins wait for all sources, which for any.

A *join* is a step with incoming edges from more than one source step (``Done`` aside, which
always runs when any branch arrives). Two facts about a pair of its sources ``s`` and ``t``
decide its policy:

* **exclusive**: some step ``X`` lies on every path to both edges into the join, and the events
  of ``X`` on the paths to one are disjoint from those on the paths to the other. A step
  completes at most once with one event, so the two edges are never both taken.
* **parallel**: one static fan-out ``(X, e) -> [..., T1, ..., T2, ...]`` has two targets with
  ``T1`` on every path to ``s`` and ``T2`` on every path to ``t`` (dominators), and neither
  target reaches the other: the two sources lie on different branches of that fan-out.

Every pair exclusive gives ``any``, every pair parallel gives ``all``; anything else (a choice
nested inside a branch, a merge after a dynamic route) is left to a declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hephaestus._core.graph import reachable, topological_order

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hephaestus._core.definition import JoinPolicy, Node

__all__ = ["JoinFacts", "analyse_joins"]

FanOut = tuple[str, str]
"""A static fan-out, named by its ``(source step, event)``."""


@dataclass(frozen=True, slots=True)
class JoinFacts:
    """What the graph says about one join: its sources and a witness pair of each kind."""

    sources: tuple[str, ...]
    inferred: JoinPolicy | None
    """The policy the graph decides, or ``None`` when it must be declared."""
    exclusive: tuple[str, str] | None = None
    """Two sources that can never both arrive (an ``all`` join over them never runs)."""
    parallel: tuple[str, str] | None = None
    neither: tuple[str, str] | None = None
    """Two sources that are neither exclusive nor parallel."""


def analyse_joins(nodes: Mapping[str, Node]) -> dict[str, JoinFacts]:
    """Facts about every join (a non-``Done`` step with several source steps) of a valid DAG."""
    joins = [k for k, n in nodes.items() if len(n.predecessors) > 1 and not n.is_done]
    if not joins:
        return {}
    return _Analysis(nodes).run(joins)


class _Analysis:
    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self.nodes = nodes
        adjacency = {key: node.successors for key, node in nodes.items()}
        self.topological = topological_order(adjacency, list(nodes))
        position = {key: index for index, key in enumerate(nodes)}
        self.parents = {
            key: sorted(node.predecessors, key=position.__getitem__) for key, node in nodes.items()
        }
        self.idom: dict[str, str | None] = {}
        self.up: dict[str, str] = {}
        self.depth: dict[str, int] = {}
        # key -> {X: events}: every path from the start to key passes X, which completes with
        # one of these events on the way.
        self.edom: dict[str, dict[str, frozenset[str]]] = {}
        self.fan_in_targets: dict[str, list[FanOut]] = {}
        self.ancestor_sets: dict[str, set[str]] = {}
        for key, node in nodes.items():
            for event, transition in node.transitions.items():
                if transition.route is None and len(transition.targets) > 1:
                    for target in transition.targets:
                        self.fan_in_targets.setdefault(target.key, []).append((key, event))
        self.dominators()

    # -- dataflow over the DAG --------------------------------------------------------------

    def events_to(self, source: str, target: str) -> frozenset[str]:
        transitions = self.nodes[source].transitions
        return frozenset(e for e, t in transitions.items() if target in t.declared)

    def edge_map(self, source: str, target: str) -> dict[str, frozenset[str]]:
        found = dict(self.edom[source])
        found[source] = self.events_to(source, target)
        return found

    def dominators(self) -> None:
        for key in self.topological:
            parents = self.parents[key]
            if not parents:
                self.idom[key] = None
                self.up[key] = key
                self.depth[key] = 0
                self.edom[key] = {}
                continue
            dominator = parents[0]
            for parent in parents[1:]:
                dominator = self.common_dominator(dominator, parent)
            self.idom[key] = self.up[key] = dominator
            self.depth[key] = self.depth[dominator] + 1
            maps = [self.edge_map(parent, key) for parent in parents]
            meet = maps[0]
            for other in maps[1:]:
                meet = {x: events | other[x] for x, events in meet.items() if x in other}
            self.edom[key] = meet

    def common_dominator(self, a: str, b: str) -> str:
        while a != b:  # both descend from the start, whose own entry is itself
            if self.depth[a] >= self.depth[b]:
                a = self.up[a]
            else:
                b = self.up[b]
        return a

    def branches(self, source: str) -> dict[FanOut, str]:
        """For each fan-out one of whose targets dominates ``source``: that target."""
        found: dict[FanOut, str] = {}
        serial: set[FanOut] = set()
        node: str | None = source
        while node is not None:
            for fan_out in self.fan_in_targets.get(node, ()):
                if fan_out in found:
                    serial.add(fan_out)  # two of its targets in a row: not separate branches
                else:
                    found[fan_out] = node
            node = self.idom[node]
        for fan_out in serial:
            del found[fan_out]
        return found

    def reaches(self, first: str, second: str) -> bool:
        if len(self.nodes[second].predecessors) < 2:
            return False  # a fan-out target with one source is reached from that source only
        return first in self.ancestors(second)

    def ancestors(self, key: str) -> set[str]:
        found = self.ancestor_sets.get(key)
        if found is None:
            found = reachable(self.parents, [key])
            self.ancestor_sets[key] = found
        return found

    # -- pairs of sources -------------------------------------------------------------------

    def run(self, joins: list[str]) -> dict[str, JoinFacts]:
        return {join: self.facts(join) for join in joins}

    def facts(self, join: str) -> JoinFacts:
        sources = tuple(self.parents[join])
        maps = [self.edge_map(source, join) for source in sources]
        labels = [self.branches(source) for source in sources]
        if self.one_choice(maps):
            return JoinFacts(sources, "any", exclusive=(sources[0], sources[1]))
        if self.one_fan_out(labels):
            return JoinFacts(sources, "all")
        exclusive: tuple[str, str] | None = None
        parallel: tuple[str, str] | None = None
        neither: tuple[str, str] | None = None
        for i in range(len(sources)):
            for j in range(i + 1, len(sources)):
                pair = (sources[i], sources[j])
                if _exclusive(maps[i], maps[j]):
                    exclusive = exclusive or pair
                elif self.parallel(labels[i], labels[j]):
                    parallel = parallel or pair
                else:
                    neither = neither or pair
            if neither is not None and exclusive is not None:
                break
        if neither is None and exclusive is None:
            return JoinFacts(sources, "all")  # every pair parallel, over nested fan-outs
        if neither is None and parallel is None:
            return JoinFacts(sources, "any", exclusive=exclusive)
        return JoinFacts(sources, None, exclusive, parallel, neither)

    def one_choice(self, maps: list[dict[str, frozenset[str]]]) -> bool:
        """Whether one step separates every source from every other by its events."""
        common = set(maps[0]).intersection(*maps[1:])
        for step in common:
            seen: set[str] = set()
            total = 0
            for found in maps:
                seen |= found[step]
                total += len(found[step])
            if total == len(seen):
                return True
        return False

    def one_fan_out(self, labels: list[dict[FanOut, str]]) -> bool:
        """Whether every source lies on its own branch of one fan-out."""
        common = set(labels[0]).intersection(*labels[1:])
        for fan_out in common:
            targets = [found[fan_out] for found in labels]
            distinct = set(targets)
            if len(distinct) == len(targets) and not any(
                self.ancestors(b) & (distinct - {b})
                for b in targets
                if len(self.nodes[b].predecessors) > 1
            ):
                return True
        return False

    def parallel(self, first: dict[FanOut, str], second: dict[FanOut, str]) -> bool:
        for fan_out, a in first.items():
            b = second.get(fan_out)
            if b is not None and a != b and not self.reaches(a, b) and not self.reaches(b, a):
                return True
        return False


def _exclusive(first: dict[str, frozenset[str]], second: dict[str, frozenset[str]]) -> bool:
    return any(step in second and not (events & second[step]) for step, events in first.items())

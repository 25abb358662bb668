"""A reference interpreter of workflow graphs for the property tests: tokens on edges, nothing more.

Slow and obviously correct, independent of the engine: every edge of the static graph gets a
mark, *token* (taken) or *no token* (not taken), written once by its source. A step fires once
every incoming edge carries a mark (the start fires first, with none). It *runs* if

* it has one source step, or its policy is ``any`` (``Done`` always is): some mark is a token;
* its policy is ``all``: every mark is a token;

and then emits its chosen event, putting a token on the edges to that event's targets and no
token on its other outgoing edges. A step that does not run is *skipped*: no token on every
outgoing edge. The run is completed when ``Done`` ran; otherwise it failed (stalled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.property._graphs import DONE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tests.property._graphs import Blueprint

__all__ = ["Outcome", "interpret"]


@dataclass(frozen=True)
class Outcome:
    """What the reference says a run does."""

    status: str
    """``"completed"`` or ``"failed"``."""
    ran: frozenset[str]
    skipped: frozenset[str]
    unreached: frozenset[str]
    tokens: Mapping[str, int]
    """How many incoming edges of each step carried a token when it fired."""


def interpret(
    blueprint: Blueprint, policies: Mapping[str, str | None], choices: Mapping[str, str]
) -> Outcome:
    """Run ``blueprint`` with ``policies`` (step name -> policy) and each step's chosen event.

    ``choices`` needs an event for every step that runs; steps that are skipped need none.
    """
    names = [*blueprint.steps, DONE]
    sources: dict[str, list[str]] = {name: [] for name in names}
    for name in blueprint.steps:
        for target in blueprint.targets(name):
            sources[target].append(name)
    marks: dict[tuple[str, str], bool] = {}
    ran: set[str] = set()
    skipped: set[str] = set()
    tokens: dict[str, int] = {}
    fired = True
    while fired:  # fire any step whose incoming edges are all marked, until none is left
        fired = False
        for name in names:
            if name in ran or name in skipped:
                continue
            incoming = [marks.get((source, name)) for source in sources[name]]
            if any(mark is None for mark in incoming):
                continue
            fired = True
            tokens[name] = sum(1 for mark in incoming if mark)
            if name == blueprint.start:
                runs = True
            elif policies.get(name) == "all" and len(incoming) > 1:
                runs = all(incoming)
            else:
                runs = any(incoming)
            if not runs:
                skipped.add(name)
                for target in blueprint.targets(name) if name != DONE else ():
                    marks[(name, target)] = False
                continue
            ran.add(name)
            if name == DONE:
                continue
            chosen = blueprint.transitions[(name, choices[name])]
            for target in blueprint.targets(name):
                marks[(name, target)] = target in chosen
    return Outcome(
        status="completed" if DONE in ran else "failed",
        ran=frozenset(ran),
        skipped=frozenset(skipped),
        unreached=frozenset(names) - ran - skipped,
        tokens=tokens,
    )

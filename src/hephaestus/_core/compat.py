"""Whether a stored run fits the definition that is about to continue it.

A run is plain data keyed by step keys; its definition may have changed since it was stored (a
step renamed or removed by a deploy). The engine assumes every key it meets is a node of the
definition, so a run is checked here, cheaply and structurally, when a runner adopts it or
loads it for an operation: a mismatch becomes ``IncompatibleInstanceError`` naming the run,
never a ``KeyError`` halfway through a decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hephaestus.errors import IncompatibleInstanceError

if TYPE_CHECKING:
    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus._core.instance import Instance

__all__ = ["check_instance", "instance_problems"]


def instance_problems(definition: WorkflowDefinition, instance: Instance) -> list[str]:
    """Every way ``instance`` does not fit ``definition`` (empty: it fits).

    The workflow name and version must be the definition's; every step state, join, join
    member, buffered and scheduled resume must name a step the definition has; and every
    pending timer or scheduled resume must send an event the definition still routes.
    """
    found: list[str] = []
    if instance.workflow != definition.name:
        found.append(f"it belongs to workflow {instance.workflow!r}, not {definition.name!r}")
    if instance.workflow_version != definition.version:
        found.append(
            f"it was started on version {instance.workflow_version}; "
            f"{definition.name} is version {definition.version}"
        )
    nodes = definition.nodes
    names = nodes.keys()
    # Set comparisons run in C: a run with a thousand steps is checked once per step job.
    if not names >= instance.steps.keys():
        for key, state in instance.steps.items():
            if key not in nodes:
                found.append(f"its {state.status} step {key!r} is not a step of {definition.name}")
    for key, join in instance.joins.items():
        if key not in nodes:
            found.append(f"its join {key!r} is not a step of {definition.name}")
        if not names >= join.resolved:
            found.extend(
                f"its join {key!r} counts {member!r}, which is not a step of {definition.name}"
                for member in sorted(join.resolved - names)
            )
    found.extend(
        f"a buffered resume targets {resume.step!r}, which is not a step of {definition.name}"
        for resume in instance.inbox
        if resume.step not in nodes
    )
    for scheduled in instance.scheduled:
        node = nodes.get(scheduled.step)
        if node is None:
            found.append(
                f"a scheduled resume targets {scheduled.step!r}, which is not a step of "
                f"{definition.name}"
            )
        elif scheduled.event not in node.routed_events:
            found.append(
                f"a scheduled resume of {scheduled.step!r} sends {scheduled.event!r}, which "
                f"{definition.name} no longer routes from that step"
            )
    for key, state in instance.steps.items():
        if state.timer_event is None:
            continue
        node = nodes.get(key)
        if node is not None and state.timer_event not in node.routed_events:
            found.append(
                f"the timer of step {key!r} fires {state.timer_event!r}, which "
                f"{definition.name} no longer routes from that step"
            )
    return found


def check_instance(definition: WorkflowDefinition, instance: Instance) -> None:
    """Raise ``IncompatibleInstanceError`` unless ``instance`` fits ``definition``."""
    problems = instance_problems(definition, instance)
    if problems:
        raise IncompatibleInstanceError(
            f"run {instance.run_id} of {instance.id} does not fit the current definition of "
            f"{definition.name}: {'; '.join(problems)}. Deploy the definition it was started "
            "with (or keep that version), or cancel and delete the run",
            run_id=instance.run_id,
            instance_id=instance.id,
            problems=tuple(problems),
        )

"""The driver: applies an input to a run, load → decide → save, for any runner.

A runner decides *where* steps execute and *how* commands are carried out; the driver is the
rest, shared by every runner: resolving a run's definition, taking the engine's decision at
the clock's time, persisting it (through the storage, or inside a unit of work the runner
adds its own writes to) and emitting telemetry once it is durable.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hephaestus import telemetry
from hephaestus._core import engine
from hephaestus._core.commands import Changes
from hephaestus._core.compat import check_instance, instance_problems
from hephaestus._core.instance import Status
from hephaestus._core.results import unstorable_result
from hephaestus.errors import (
    IncompatibleInstanceError,
    InstanceError,
    UnencodableValueError,
)
from hephaestus.runners._events import emit_decision, emit_step_start, log_failures

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus._core.instance import Instance
    from hephaestus.runners import RuntimeEnv
    from hephaestus.storage import InboxEntry, StorageTransaction

__all__ = ["Applied", "Driver"]

log = logging.getLogger("hephaestus.runner")


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``Driver.apply_stored`` did: the run's definition, its state before the input,
    and the decision (``decision.changed`` is false when the input was stale).

    ``fits`` is false for a run loaded with ``fit=False`` that no longer fits its definition:
    its commands must not be carried out (a cancel of such a run carries none that matter).
    ``entry``: the inbox entry ``Driver.apply_next`` applied (and deleted), if any.
    """

    definition: WorkflowDefinition
    before: Instance
    decision: engine.Decision
    fits: bool = True
    entry: InboxEntry | None = None


type Dispatch = Callable[[StorageTransaction, Applied], Awaitable[None]]
"""A runner's own writes for a decision, made inside the decision's transaction."""


class Driver:
    """Load → decide → save for the runs of one runner (``runner`` names it in telemetry)."""

    __slots__ = ("_env", "runner")

    def __init__(self, env: RuntimeEnv, *, runner: str) -> None:
        self._env = env
        self.runner = runner

    @property
    def env(self) -> RuntimeEnv:
        return self._env

    @property
    def observed(self) -> bool:
        """Whether telemetry events are wanted now (enabled, and someone listens)."""
        return self._env.telemetry and telemetry.handlers_attached()

    def definition_of(self, instance: Instance, *, fit: bool = True) -> WorkflowDefinition:
        """The definition ``instance`` runs on (``UnknownWorkflowError``); an active run must
        fit it (``IncompatibleInstanceError``) unless ``fit`` is false."""
        definition = self._env.registry.resolve(instance.workflow)
        if fit and not instance.is_terminal:
            check_instance(definition, instance)
        return definition

    def workflow_names(self) -> list[str]:
        """The stored names of the runs this runner can execute (its workflows and versions):
        what it claims, fetches or recovers on a storage that other apps share."""
        from hephaestus._core.definition import WorkflowDefinition

        return [d.name for d in self._env.registry if isinstance(d, WorkflowDefinition)]

    def decide(
        self, definition: WorkflowDefinition, instance: Instance, input: engine.Input
    ) -> engine.Decision:
        """The engine's decision on ``input``, at the clock's current time."""
        return engine.decide(definition, instance, input, self._env.clock.now())

    async def create(self, definition: WorkflowDefinition, decision: engine.Decision) -> None:
        """Store a new run (``engine.start``/``pending``'s decision): uniqueness is decided here."""
        await self._env.storage.create(decision.instance)
        self.observe(definition, decision)

    async def apply(
        self,
        definition: WorkflowDefinition,
        before: Instance,
        input: engine.Input,
        *,
        duration: float | None = None,
    ) -> engine.Decision:
        """Decide on a run this runner holds (it is the run's only writer) and save it.

        The save is revision-checked (``ConcurrentUpdateError`` if someone else wrote first)
        and may share a commit with other runs' saves. ``duration``: how long the step attempt
        whose outcome ``input`` carries ran (telemetry). A step result the storage refuses
        fails the attempt instead, as in ``apply_stored``.
        """
        decision = self.decide(definition, before, input)
        if not decision.changed:
            return decision
        try:
            await self._env.storage.put(decision.instance, before, decision.changes)
        except UnencodableValueError as exc:
            refused = _refused(input, exc)
            if refused is None:
                raise
            decision = self.decide(definition, before, refused)
            if not decision.changed:
                return decision
            await self._env.storage.put(decision.instance, before, decision.changes)
        self.observe(definition, decision, duration)
        return decision

    async def apply_stored(
        self,
        run_id: str,
        input: engine.Input,
        *,
        dispatch: Dispatch | None = None,
        fit: bool = True,
        duration: float | None = None,
        held: Instance | None = None,
    ) -> Applied:
        """Apply ``input`` to a stored run in one unit of work: load it locked, decide, save,
        then ``dispatch`` (the runner's own writes: jobs for the commands, say) in the same
        transaction. All of it commits, or none of it; telemetry follows the commit.

        ``held``: an older copy of the run the caller keeps; the run is then read only for
        what changed since (a ``RefreshingTransaction``).

        A step result the storage refuses (``UnencodableValueError``, such as PostgreSQL's
        ``ValueRejectedError``) fails the attempt instead, in a second unit of work: kind
        ``invalid_result``, retried per the step's policy, as the local runner does.
        """
        try:
            return await self._apply_stored(run_id, input, dispatch, fit, duration, held=held)
        except UnencodableValueError as exc:
            refused = _refused(input, exc)
            if refused is None:
                raise
            return await self._apply_stored(run_id, refused, dispatch, fit, duration, held=held)

    async def _apply_stored(
        self,
        run_id: str,
        input: engine.Input,
        dispatch: Dispatch | None,
        fit: bool,
        duration: float | None,
        *,
        held: Instance | None,
    ) -> Applied:
        async with self._env.storage.transaction() as tx:
            before = await _load(tx, run_id, held)
            definition = self.definition_of(before, fit=fit)
            decision = self.decide(definition, before, input)
            applied = Applied(definition, before, decision, fit or self._fits(definition, before))
            await self._save(tx, applied, dispatch, duration)
        return applied

    async def apply_all(
        self,
        run_id: str,
        inputs: Sequence[tuple[engine.Input, float | None]],
        *,
        dispatch: Dispatch | None = None,
        held: Instance | None = None,
    ) -> Applied:
        """Apply several inputs to one stored run, in order, in one unit of work: the run is
        loaded once, locked (``held`` as in ``apply_stored``), decided on input after input,
        and saved once with every change; ``dispatch`` sees one ``Applied`` whose decision
        combines them (the last state, every command in order). Each pair is an input and the
        duration of the attempt it reports (telemetry), and each decision's events follow the
        commit. For step results that finish together (the branches of a fan-out): one
        transaction instead of one each, waiting on one another's lock.

        A refused result (``UnencodableValueError``) is raised as is: apply the inputs one
        by one then (``apply_stored`` turns it into a failed attempt).
        """
        async with self._env.storage.transaction() as tx:
            before = await _load(tx, run_id, held)
            applied, decided = self.decide_all(before, inputs)
            if applied.decision.changed:
                await tx.put(applied.decision.instance, before, applied.decision.changes)
                for decision, duration in decided:
                    tx.after_commit(
                        functools.partial(self.observe, applied.definition, decision, duration)
                    )
            if dispatch is not None:
                await dispatch(tx, applied)
        return applied

    def decide_all(
        self, before: Instance, inputs: Sequence[tuple[engine.Input, float | None]]
    ) -> tuple[Applied, list[tuple[engine.Decision, float | None]]]:
        """Decide on ``inputs`` in order, as one write: the combined ``Applied`` (saved at one
        revision after ``before``'s) and each decision that changed the run, with its
        duration, for ``observe`` once the write is durable."""
        definition = self.definition_of(before)
        current = before
        decided: list[tuple[engine.Decision, float | None]] = []
        for input, duration in inputs:
            decision = self.decide(definition, current, input)
            if decision.changed:
                decided.append((decision, duration))
                current = decision.instance
        if len(decided) > 1:  # saved as one write: one revision after the run's
            current = dataclasses.replace(current, revision=before.revision + 1)
        combined = _combine(current, [decision for decision, _ in decided])
        return Applied(definition, before, combined), decided

    async def apply_next(self, run_id: str, *, dispatch: Dispatch | None = None) -> Applied | None:
        """Take what a run has waiting, in one unit of work: ``Begin`` if it is ``pending``
        (started in a caller's transaction), else its oldest inbox entry (a resume or cancel
        sent in one), deleted with the save. ``None`` when nothing waits.

        Call it until it returns ``None`` when the storage announces the run (``watch``) or
        a sweep finds it (``awaiting``). An entry that can no longer apply (the run finished
        meanwhile, the event has no taker now) is deleted and logged as a warning; the
        ``Applied`` then has an unchanged decision. Needs an ``InboxTransaction`` for entries.
        """
        from hephaestus.storage import InboxTransaction

        async with self._env.storage.transaction() as tx:
            before = await tx.get(run_id)
            entry = None
            input: engine.Input = engine.Begin()
            if before.status is not Status.PENDING:
                if not isinstance(tx, InboxTransaction):
                    return None
                entry = await tx.next_input(run_id)
                if entry is None:
                    return None
                input = entry.input
            fit = not isinstance(input, engine.Cancel)
            try:
                definition = self.definition_of(before, fit=fit)
                decision = self.decide(definition, before, input)
            except (InstanceError, IncompatibleInstanceError, UnencodableValueError) as exc:
                if entry is None or not isinstance(tx, InboxTransaction):
                    raise
                log.warning(
                    "dropped %r sent to %s (run %s): it no longer applies: %s",
                    entry.input,
                    before.id,
                    run_id,
                    exc,
                )
                await tx.remove_input(entry)
                unchanged = engine.Decision(before, (), changed=False)
                definition = self._env.registry.resolve(before.workflow)
                return Applied(definition, before, unchanged, fits=False, entry=entry)
            applied = Applied(
                definition, before, decision, fit or self._fits(definition, before), entry
            )
            if entry is not None and isinstance(tx, InboxTransaction):
                await tx.remove_input(entry)
            await self._save(tx, applied, dispatch, None)
        return applied

    @staticmethod
    def _fits(definition: WorkflowDefinition, instance: Instance) -> bool:
        return instance.is_terminal or not instance_problems(definition, instance)

    async def _save(
        self,
        tx: StorageTransaction,
        applied: Applied,
        dispatch: Dispatch | None,
        duration: float | None,
    ) -> None:
        decision = applied.decision
        if decision.changed:
            await tx.put(decision.instance, applied.before, decision.changes)
            tx.after_commit(lambda: self.observe(applied.definition, decision, duration))
        if dispatch is not None:
            await dispatch(tx, applied)

    def observe(
        self,
        definition: WorkflowDefinition,
        decision: engine.Decision,
        duration: float | None = None,
    ) -> None:
        """Emit the telemetry events of a durable decision, and log what failed in it (even
        with no telemetry handler: a failed run is never silent)."""
        if not decision.changed:
            return
        log_failures(decision)
        if self.observed:
            emit_decision(definition, decision, duration, runner=self.runner)

    def step_started(
        self, definition: WorkflowDefinition, instance: Instance, command: engine.RunStep
    ) -> None:
        """Emit ``step.start``: a runner begins attempt ``command.attempt``."""
        if self.observed:
            emit_step_start(definition, instance, command.step, command.attempt, runner=self.runner)


async def _load(tx: StorageTransaction, run_id: str, held: Instance | None) -> Instance:
    """The run, locked in ``tx``: read again only for what changed since ``held`` when the
    storage can (``RefreshingTransaction``), else in full."""
    from hephaestus.storage import RefreshingTransaction

    if held is not None and held.run_id == run_id and isinstance(tx, RefreshingTransaction):
        return await tx.refresh(held)
    return await tx.get(run_id)


def _combine(instance: Instance, decisions: Sequence[engine.Decision]) -> engine.Decision:
    """One decision doing what ``decisions`` did in order (``instance``: the last state)."""
    if not decisions:
        return engine.Decision(instance, (), changed=False)
    if len(decisions) == 1:
        return decisions[0]
    changes = Changes(
        history=tuple(entry for d in decisions for entry in d.changes.history),
        steps=[key for d in decisions for key in d.changes.steps],
        results=[key for d in decisions for key in d.changes.results],
        joins=[key for d in decisions for key in d.changes.joins],
        activated=[key for d in decisions for key in d.changes.activated],
    )
    commands = tuple(command for d in decisions for command in d.commands)
    return engine.Decision(instance, commands, changed=True, changes=changes)


def _refused(input: engine.Input, exc: UnencodableValueError) -> engine.StepFinished | None:
    """The failed attempt that replaces a step result the storage refused (``None``: the
    input is not a step's result, or already a failure, so the error stands)."""
    if not isinstance(input, engine.StepFinished) or isinstance(input.outcome, engine.Failure):
        return None
    failure = unstorable_result(f"result cannot be stored: {exc}")
    return engine.StepFinished(input.step, input.attempt, failure)

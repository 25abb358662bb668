"""The step executor: one step attempt in, one engine outcome out, whatever the step does.

Every runner executes steps through it, so timeouts, sync steps in threads, cancellation,
exceptions turned into failures and what a step sees are the same on every runner.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from hephaestus._core import engine
from hephaestus._core.instance import ErrorInfo
from hephaestus._core.steps import runs_inline
from hephaestus._core.values import NO_RESOURCES, ReadOnlyMapping, Resources, step_view

if TYPE_CHECKING:
    from collections.abc import Callable

    from hephaestus._core.definition import Node, WorkflowDefinition
    from hephaestus._core.instance import Instance, StepContext, StepRun
    from hephaestus.runners import RuntimeEnv

__all__ = ["StepExecutor"]


class StepExecutor:
    """Executes step attempts (``RunStep`` commands) and reports each as an ``Outcome``.

    ``async def`` steps run on the event loop, plain ``def`` steps in a pool of at most
    ``max_threads`` threads (``open()`` makes it, ``close()`` drops it), built-in waits (which
    only compute a result) inline. A step's ``timeout`` fails the attempt with kind
    ``timeout``; an exception fails it with the exception's type and message. A step sees a
    read-only view of the run (``step_view``): nothing it changes reaches the stored run.

    Cancellation: when the task running a step is cancelled (the run was cancelled, or the
    runner is stopping: ``stopping()`` returns true) the ``CancelledError`` propagates; one
    the step raised on its own is an ordinary failed attempt.
    """

    def __init__(self, *, max_threads: int | None = None) -> None:
        self._max_threads = max_threads
        self._threads: ThreadPoolExecutor | None = None
        self._resources = NO_RESOURCES

    def open(self, env: RuntimeEnv | None = None) -> None:
        """Make the thread pool; ``env`` (the runner's, from ``Runner.open``) gives steps the
        app's resources as ``run.resources``."""
        if env is not None:
            self._resources = Resources(env.resources)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                max_workers=self._max_threads, thread_name_prefix="hephaestus-step"
            )

    def close(self) -> None:
        """Drop the thread pool; steps still running in it finish on their own."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    @staticmethod
    def inline(definition: WorkflowDefinition, command: engine.RunStep) -> bool:
        """Whether ``command`` is a built-in step that ``execute_inline`` can run (a wait)."""
        return runs_inline(definition.nodes[command.step].step)

    def execute_inline(
        self, definition: WorkflowDefinition, instance: Instance, command: engine.RunStep
    ) -> engine.Outcome:
        """Run a built-in step (``inline`` is true for it) synchronously, on the caller's loop."""
        node = definition.nodes[command.step]
        run, context = step_view(instance, command.step, command.attempt, self._resources)
        config = None if command.config is None else ReadOnlyMapping(command.config)
        try:
            return engine.interpret(node, node.step().execute(run, config, context))
        except Exception as exc:
            return engine.failure_from_exception(exc, retry=node.retry)

    async def execute(
        self,
        definition: WorkflowDefinition,
        instance: Instance,
        command: engine.RunStep,
        *,
        stopping: Callable[[], bool] = lambda: False,
    ) -> engine.Outcome:
        """Run attempt ``command.attempt`` of ``command.step`` of ``instance``."""
        node = definition.nodes[command.step]
        run, context = step_view(instance, command.step, command.attempt, self._resources)
        try:
            if node.timeout is None:
                raw = await self._invoke(node, run, command, context)
            else:
                async with asyncio.timeout(node.timeout) as deadline:
                    raw = await self._invoke(node, run, command, context)
        except TimeoutError as exc:
            if node.timeout is not None and deadline.expired():
                message = f"step {node.key!r} timed out after {node.timeout}s"
                return engine.Failure(ErrorInfo(kind="timeout", message=message))
            return engine.failure_from_exception(exc, retry=node.retry)
        except asyncio.CancelledError as exc:
            if stopping() or _being_cancelled():
                raise  # the run is being cancelled, or the runner is stopping: stop here
            # The step raised it itself (a cancelled inner task, a timeout helper that
            # re-raises): an ordinary failed attempt, retried per policy.
            return engine.failure_from_exception(exc, retry=node.retry)
        except Exception as exc:
            return engine.failure_from_exception(exc, retry=node.retry)
        return engine.interpret(node, raw)

    async def _invoke(
        self, node: Node, run: StepRun, command: engine.RunStep, context: StepContext
    ) -> object:
        step = node.step()
        config = None if command.config is None else ReadOnlyMapping(command.config)
        if node.is_async:
            raw: object = await step.execute(run, config, context)  # type: ignore[misc]
        elif runs_inline(node.step):
            raw = step.execute(run, config, context)
        else:
            call = functools.partial(step.execute, run, config, context)
            raw = await asyncio.get_running_loop().run_in_executor(
                self._threads, contextvars.copy_context().run, call
            )
            if inspect.isawaitable(raw):  # a plain method that returned a coroutine
                raw = await raw
        return raw


def _being_cancelled() -> bool:
    """Whether someone asked to cancel the current task (``Task.cancel``), as opposed to a
    ``CancelledError`` that code inside the task raised on its own."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

"""The ``oban`` worker of the Oban runner's jobs, and how a job finds its runner.

``oban`` resolves a job's worker by its import path and calls ``process(job)`` on a new
instance; the job's ``schema`` argument names the open runner (one per schema in a process)
that executes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oban import Job

    from hephaestus.runners.oban._runner import ObanRunner

__all__ = ["StepWorker", "register", "runner_for", "unregister"]

_RUNNERS: dict[str, ObanRunner] = {}


def register(schema: str, runner: ObanRunner) -> None:
    """Make ``runner`` the one that executes the jobs of ``schema`` in this process."""
    current = _RUNNERS.get(schema)
    if current is not None and current is not runner:
        from hephaestus.errors import AppError

        raise AppError(
            f"another open Oban runner already executes the jobs of schema {schema!r} in this "
            "process: open one executing runner per schema (a client runner, mode='client', "
            "executes nothing and can sit beside it)"
        )
    _RUNNERS[schema] = runner


def unregister(schema: str, runner: ObanRunner) -> None:
    if _RUNNERS.get(schema) is runner:
        del _RUNNERS[schema]


def runner_for(schema: str) -> ObanRunner | None:
    return _RUNNERS.get(schema)


class StepWorker:
    """Executes one job of the Oban runner: a step activation, a timer, or inputs to take.

    Jobs arrive through ``oban``'s producers (``mode="worker"``). The job is acknowledged by
    ``oban`` when ``process`` returns, unless the runner completed it already in the
    transaction that applied its result.
    """

    async def process(self, job: Job) -> None:
        schema = str(job.args.get("schema", "public"))
        runner = runner_for(schema)
        if runner is None:
            # Retried by oban with its backoff: an app may open on this node meanwhile.
            raise RuntimeError(
                f"no open Oban runner executes schema {schema!r} in this process (job {job.id}): "
                "open the app (Hephaestus(runner=ObanRunner(...))) before starting oban queues"
            )
        await runner.perform(job.id or 0, job.args, job)


StepWorker.__module__ = "hephaestus.runners.oban"  # the path jobs name (``WORKER``)

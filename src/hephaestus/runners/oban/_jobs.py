"""The job rows of the Oban runner: what a job's arguments say, and every statement on them.

One job is one step activation (``step``), one timer (``timer``: a waiting step's timeout, a
scheduled resume, due at its time), or a run started or signalled in a caller's transaction
(``take``: apply what waits for it). Its ``args`` name the schema (which runner in a process
takes it), the run, and a ``key`` saying what it is for, so that the jobs a decision makes
obsolete are found and cancelled by key. The statements are written here rather than through
``oban``'s API so that a decision's jobs are inserted, cancelled and completed in one statement
inside the decision's transaction (the free ``oban`` package has no bulk insert).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, LiteralString

from psycopg import sql

from hephaestus._core import engine

if TYPE_CHECKING:
    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus._core.instance import Instance
    from hephaestus.storage.postgres._queries import Queries

__all__ = ["WORKER", "JobBatch", "Statements", "naive_utc", "step_key", "timer_key"]

WORKER = "hephaestus.runners.oban.StepWorker"
"""The ``worker`` column of every job the runner inserts (``oban`` imports it by this path)."""

MAX_ATTEMPTS = 20
"""Deliveries of one job before ``oban`` discards it: each rescue of a job left executing by
a dead node is one; the step's own retries are new jobs, decided by its retry policy."""


def step_key(step: str) -> str:
    return f"step:{step}"


def timer_key(step: str, timer: str | None) -> str:
    return f"timer:{step}:{timer or ''}"


def naive_utc(moment: datetime) -> datetime:
    """``oban_jobs`` keeps UTC times without a time zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)


@dataclass(slots=True)
class JobBatch:
    """The job writes of one decision: jobs to insert, keys of live jobs to cancel."""

    schema: str
    run_id: str
    queue: str
    meta: dict[str, Any]
    tags: list[str]
    inserts: list[dict[str, Any]] = field(default_factory=list)
    cancel_keys: list[str] = field(default_factory=list)
    cancel_all: bool = False
    due: list[datetime] = field(default_factory=list)
    """When the scheduled jobs inserted fall due (to wake an inline runner then)."""

    def add(self, command: engine.Command, now: datetime) -> None:
        if isinstance(command, engine.RunStep):
            at = command.not_before if command.not_before and command.not_before > now else None
            args = {"kind": "step", "step": command.step, "attempt": command.attempt}
            self._insert(step_key(command.step), args, command.step, at)
        elif isinstance(command, engine.StartTimer):
            args = {"kind": "timer", "step": command.step, "timer": command.timer}
            args["at"] = command.at.isoformat()
            self._insert(timer_key(command.step, command.timer), args, command.step, command.at)
        elif isinstance(command, engine.CancelTimer):
            self.cancel_keys.append(timer_key(command.step, command.timer))
        else:
            self.cancel_keys.append(step_key(command.step))

    def take(self) -> None:
        """A job that applies what waits for the run (a pending start, inbox entries)."""
        self._insert("take", {"kind": "take"}, None, None)

    def _insert(
        self, key: str, args: dict[str, Any], step: str | None, at: datetime | None
    ) -> None:
        meta = self.meta if step is None else {**self.meta, "step": step}
        job_args = {"schema": self.schema, "run": self.run_id, "key": key, **args}
        self.inserts.append(
            {
                "queue": self.queue,
                "args": job_args,
                "meta": meta,
                "tags": self.tags,
                "at": None if at is None else naive_utc(at).isoformat(),
            }
        )
        if at is not None:
            self.due.append(at)

    @property
    def empty(self) -> bool:
        return not (self.inserts or self.cancel_keys or self.cancel_all)


def job_meta(definition: WorkflowDefinition | None, instance: Instance) -> dict[str, Any]:
    """What every job of a run carries in ``meta`` (for dashboards and operators)."""
    meta: dict[str, Any] = {}
    if definition is not None:
        meta.update(definition.metadata)
    meta.update(
        {
            "workflow": instance.workflow,
            "workflow_version": instance.workflow_version,
            "instance_id": instance.id,
            "run_id": instance.run_id,
        }
    )
    return meta


def job_tags(definition: WorkflowDefinition | None, instance: Instance) -> list[str]:
    short = instance.workflow.rsplit(".", 1)[-1]
    tags = [short, *(definition.tags if definition is not None else ())]
    return sorted({str(tag).strip().lower() for tag in tags if str(tag).strip()})


_JOB_WRITES: LiteralString = """
inserted AS (
    INSERT INTO {schema}.oban_jobs
        (state, queue, worker, args, meta, tags, max_attempts, scheduled_at)
    SELECT CASE WHEN g.at IS NULL OR g.at <= %(now)s THEN 'available' ELSE 'scheduled' END
               ::{schema}.oban_job_state,
           g.queue, %(worker)s, g.args, g.meta, g.tags, %(max_attempts)s,
           coalesce(g.at, timezone('UTC', now()))
    FROM new_jobs AS g
    RETURNING queue, state
), completed AS (
    UPDATE {schema}.oban_jobs
    SET state = 'completed', completed_at = timezone('UTC', now())
    WHERE id IN (SELECT id FROM own) AND state = 'executing'
    RETURNING id
), doomed AS (
    SELECT j.id, j.state FROM {schema}.oban_jobs AS j JOIN cancels AS c ON j.args ->> 'run' = c.run
    WHERE j.state IN ('available', 'scheduled', 'executing', 'retryable')
      AND j.id NOT IN (SELECT id FROM own)
      AND (c.every OR j.args ->> 'key' = ANY(c.keys))
    FOR UPDATE OF j
), cancelled AS (
    UPDATE {schema}.oban_jobs AS j
    SET state = 'cancelled', cancelled_at = timezone('UTC', now())
    FROM doomed
    WHERE j.id = doomed.id
    RETURNING j.id, doomed.state AS was
), woken AS (
    SELECT pg_notify(%(insert_channel)s, json_build_object('queue', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'available') AS q
), killed AS (
    SELECT id, pg_notify(%(signal_channel)s,
                         json_build_object('action', 'pkill', 'job_id', id)::text)
    FROM cancelled
    WHERE was = 'executing'
)"""
"""Decisions' job writes, after three expressions naming them: ``new_jobs`` (queue, args,
meta, tags, at), ``own`` (the ids of the jobs that made the decisions) and ``cancels`` (run,
every, keys). The new jobs are inserted (waking the queues of those available at once), the
own jobs completed, each run's live jobs the decision made obsolete cancelled (by key, or
all of them when the run ended) and those executing signalled to stop (``oban``'s own
``pkill`` signal)."""

_JOBS_GIVEN: LiteralString = """
    SELECT g.* FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS g (queue text, args jsonb, meta jsonb, tags text[], at timestamp)"""

_WRITE: LiteralString = """
WITH new_jobs AS ({jobs_given}
), own AS (
    SELECT unnest(%(own)s::bigint[]) AS id
), cancels AS (
    SELECT %(run)s::text AS run, %(every)s::boolean AS every, %(keys)s::text[] AS keys
), {job_writes}
SELECT (SELECT count(*) FROM woken), (SELECT coalesce(array_agg(id), '{{}}') FROM killed),
       (SELECT count(*) FROM completed)
"""
"""One decision's job writes in one statement, inside the decision's transaction."""

_WRITE_RUNS: LiteralString = """
WITH {write_runs},
new_jobs AS ({jobs_given}
    WHERE g.args ->> 'run' IN (SELECT run_id FROM head)
), own AS (
    SELECT o.id FROM jsonb_to_recordset(%(own)s::jsonb) AS o (run text, id bigint)
    WHERE o.run IN (SELECT run_id FROM head)
), cancels AS (
    SELECT c.* FROM jsonb_to_recordset(%(cancels)s::jsonb)
        AS c (run text, every boolean, keys text[])
    WHERE c.run IN (SELECT run_id FROM head)
), {job_writes}
SELECT (SELECT coalesce(array_agg(run_id), '{{}}') FROM head),
       (SELECT coalesce(array_agg(id), '{{}}') FROM killed),
       (SELECT count(*) FROM woken), (SELECT count(*) FROM completed)
"""
"""The step results of several runs in one statement, one round trip, one implicit
transaction (group commit): each run's next revision (``update_instances``' writes, revision
checked), and only for the runs written (``head``), their decisions' jobs. A run whose
revision moved meanwhile is left entirely alone: none of its jobs change."""

_FETCH: LiteralString = """
WITH next AS (
    SELECT id FROM {schema}.oban_jobs
    WHERE queue = ANY(%(queues)s::text[]) AND worker = %(worker)s
      AND (meta ->> 'workflow' IS NULL OR meta ->> 'workflow' = ANY(%(workflows)s::text[]))
      AND (state = 'available'
           OR (state IN ('scheduled', 'retryable') AND scheduled_at <= %(now)s))
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.oban_jobs AS j
SET state = 'executing', attempt = j.attempt + 1, attempted_at = timezone('UTC', now()),
    attempted_by = %(by)s
FROM next
WHERE j.id = next.id AND j.attempt < j.max_attempts
RETURNING j.id, j.args, j.attempt
"""
"""Take due jobs for the inline runner, as ``oban``'s producer does, with "due" measured on
the app's clock (a ``FakeClock`` in tests) rather than by the database's."""

_FINISH: LiteralString = """
UPDATE {schema}.oban_jobs
SET state = %(state)s::{schema}.oban_job_state,
    completed_at = CASE WHEN %(state)s = 'completed' THEN timezone('UTC', now()) END,
    discarded_at = CASE WHEN %(state)s = 'discarded' THEN timezone('UTC', now()) END,
    scheduled_at = CASE WHEN %(state)s = 'retryable'
                        THEN timezone('UTC', now()) + make_interval(secs => %(delay)s)
                        ELSE scheduled_at END,
    errors = CASE WHEN %(error)s::text IS NULL THEN errors
                  ELSE errors || jsonb_build_array(jsonb_build_object(
                      'attempt', attempt, 'at', timezone('UTC', now()), 'error', %(error)s::text))
             END
WHERE id = %(id)s AND state = 'executing'
"""
"""Record how an inline job ended (a step job that applied its result completed itself)."""

_RELEASE: LiteralString = """
WITH released AS (
    UPDATE {schema}.oban_jobs
    SET state = 'available', attempt = greatest(attempt - 1, 0)
    WHERE id = ANY(%(ids)s::bigint[]) AND state = 'executing'
    RETURNING queue
)
SELECT pg_notify(%(insert_channel)s, json_build_object('queue', q.queue)::text)
FROM (SELECT DISTINCT queue FROM released) AS q
"""
"""Hand jobs this node stops executing (shutting down) back to the queue at once, rather than
after the rescue window: another node takes them now."""

_RESCUE: LiteralString = """
UPDATE {schema}.oban_jobs SET state = 'available'
WHERE queue = ANY(%(queues)s::text[]) AND worker = %(worker)s AND state = 'executing'
  AND (meta ->> 'workflow' IS NULL OR meta ->> 'workflow' = ANY(%(workflows)s::text[]))
"""
"""Inline mode only, when it opens: jobs left executing (the process before this one died)
are taken again at once; an inline runner is the only one executing its queues."""

_DUE_TIMES: LiteralString = """
SELECT DISTINCT scheduled_at FROM {schema}.oban_jobs
WHERE queue = ANY(%(queues)s::text[]) AND worker = %(worker)s
  AND state IN ('scheduled', 'retryable')
  AND (meta ->> 'workflow' IS NULL OR meta ->> 'workflow' = ANY(%(workflows)s::text[]))
"""

_BUSY: LiteralString = """
SELECT count(*) FROM {schema}.oban_jobs
WHERE queue = ANY(%(queues)s::text[]) AND worker = %(worker)s
  AND (meta ->> 'workflow' IS NULL OR meta ->> 'workflow' = ANY(%(workflows)s::text[]))
  AND (state IN ('available', 'executing')
       OR (state IN ('scheduled', 'retryable') AND scheduled_at <= %(now)s))
"""
"""Jobs running or due: zero when the runner is idle (``wait_idle``)."""

_INSTALLED: LiteralString = "SELECT to_regclass({table}) IS NOT NULL"

_ORPHANS: LiteralString = """
SELECT w.run_id, w.revision FROM {schema}.workflow_instances AS w
WHERE w.status IN ('pending', 'running', 'waiting')
  AND w.updated_at < %(before)s
  AND (%(workflows)s::text[] IS NULL OR w.workflow = ANY(%(workflows)s::text[]))
  AND NOT EXISTS (
      SELECT FROM {schema}.oban_jobs AS j
      WHERE j.args ->> 'run' = w.run_id
        AND j.state IN ('available', 'scheduled', 'executing', 'retryable'))
ORDER BY w.updated_at
LIMIT %(limit)s
"""
"""Active runs with no live job (the reconciler's candidates; a run waiting only for an event
rightly has none, and is then left alone)."""

_LIVE_KEYS: LiteralString = """
SELECT args ->> 'key', args ->> 'attempt' FROM {schema}.oban_jobs
WHERE args ->> 'run' = %(run)s AND state IN ('available', 'scheduled', 'executing', 'retryable')
"""

_INBOX: LiteralString = "SELECT EXISTS (SELECT FROM {schema}.workflow_inbox WHERE run_id = %(run)s)"


class Statements:
    """The runner's statements, rendered for one schema."""

    __slots__ = (
        "busy",
        "due_times",
        "fetch",
        "finish",
        "inbox",
        "insert_channel",
        "installed",
        "live_keys",
        "orphans",
        "release",
        "rescue",
        "schema",
        "signal_channel",
        "write",
        "write_runs",
    )

    def __init__(self, queries: Queries) -> None:
        schema = queries.schema

        def render(text: LiteralString, **fragments: sql.Composable) -> bytes:
            return sql.SQL(text).format(schema=sql.Identifier(schema), **fragments).as_bytes()

        self.schema = schema
        self.insert_channel = f"{schema}.oban_insert"
        self.signal_channel = f"{schema}.oban_signal"
        jobs = {
            "jobs_given": sql.SQL(_JOBS_GIVEN),
            "job_writes": sql.SQL(_JOB_WRITES).format(schema=sql.Identifier(schema)),
        }
        self.write = render(_WRITE, **jobs)
        self.write_runs = queries.with_run_writes(_WRITE_RUNS, **jobs)
        self.fetch = render(_FETCH)
        self.finish = render(_FINISH)
        self.release = render(_RELEASE)
        self.rescue = render(_RESCUE)
        self.due_times = render(_DUE_TIMES)
        self.busy = render(_BUSY)
        self.orphans = render(_ORPHANS)
        self.live_keys = render(_LIVE_KEYS)
        self.inbox = render(_INBOX)
        self.installed = render(_INSTALLED, table=sql.Literal(f'"{schema}".oban_jobs'))

    def write_params(self, batch: JobBatch, own: list[int], now: datetime) -> dict[str, Any]:
        return {
            "jobs": json.dumps(batch.inserts),
            "now": naive_utc(now),
            "worker": WORKER,
            "max_attempts": MAX_ATTEMPTS,
            "own": own,
            "run": batch.run_id,
            "every": batch.cancel_all,
            "keys": batch.cancel_keys,
            "insert_channel": self.insert_channel,
            "signal_channel": self.signal_channel,
        }

    def write_runs_params(
        self, items: list[str], batches: list[JobBatch], own: list[tuple[str, int]], now: datetime
    ) -> dict[str, Any]:
        """``write_runs``' parameters: each run's item (``PostgresStorage.write_item``), the
        jobs of each run's decision, and the jobs (run, id) that made them, completed."""
        return {
            "batch": "[" + ",".join(items) + "]",
            "jobs": json.dumps([job for batch in batches for job in batch.inserts]),
            "own": json.dumps([{"run": run, "id": job_id} for run, job_id in own]),
            "cancels": json.dumps(
                [
                    {"run": b.run_id, "every": b.cancel_all, "keys": b.cancel_keys}
                    for b in batches
                    if b.cancel_all or b.cancel_keys
                ]
            ),
            "now": naive_utc(now),
            "worker": WORKER,
            "max_attempts": MAX_ATTEMPTS,
            "insert_channel": self.insert_channel,
            "signal_channel": self.signal_channel,
        }

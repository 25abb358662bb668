"""``ObanRunner``: steps as jobs of the ``oban`` package, on the runs' own PostgreSQL database.

One job per step activation. A step job reads its run (only what changed since the copy its
node holds, with the other jobs starting then), runs its step outside any transaction, then
its result is applied in one transaction with its jobs (``_jobs``): follow-up step jobs and
timer jobs inserted, obsolete ones cancelled, the job itself completed. The results that
finish together on a node, of any runs, share that transaction (one statement, group
commit); a run another node wrote meanwhile is applied alone, its row locked
(``Driver.apply_stored``). A job whose activation is already resolved (re-delivered after a
crash) does nothing. Start, resume and cancel are applied the same way in the caller's unit
of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

from hephaestus._core import engine
from hephaestus._core.instance import Status, StepState, StepStatus
from hephaestus.errors import (
    AppError,
    AppNotOpenError,
    ConcurrentUpdateError,
    HephaestusError,
    InstanceNotFoundError,
    StorageError,
    UnencodableValueError,
)
from hephaestus.runners._driver import Applied, Driver
from hephaestus.runners._executor import StepExecutor
from hephaestus.runners.oban import _worker
from hephaestus.runners.oban._jobs import (
    WORKER,
    JobBatch,
    Statements,
    job_meta,
    job_tags,
    naive_utc,
    step_key,
    timer_key,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Mapping

    from oban import Job, Oban

    from hephaestus._core.definition import WorkflowDefinition
    from hephaestus._core.instance import Instance
    from hephaestus.runners import RuntimeEnv
    from hephaestus.storage import StorageTransaction, Work
    from hephaestus.storage.postgres import PostgresStorage
    from hephaestus.storage.postgres._transaction import PostgresTransaction

__all__ = ["ObanRunner"]

log = logging.getLogger("hephaestus.runner.oban")

Mode = Literal["worker", "client", "inline"]

LATEST_KEPT = 1024
"""How many runs a node keeps as it last wrote or read them (the most recent ones): a step
job of such a run reads only what changed since (nothing when the copy is current), and a
result whose job read the run before this node wrote it is decided on the newer state rather
than failing the revision check (the branches of a fan-out finishing on one node)."""

STORAGE_RETRY_SECONDS = 30.0
"""How long a step's result is retried against a failing database before the job fails (and
``oban`` retries the job, executing the step again)."""


class ObanRunner:
    """Executes steps as jobs of ``oban`` on the PostgreSQL database of the app's storage.

    ``mode``:

    - ``"worker"`` (default): this process is a worker node; ``oban`` fetches the jobs of
      ``queues`` (queue name → how many jobs at once on this node) and this runner executes
      them. Any number of nodes may share the database.
    - ``"client"``: this process starts, resumes and cancels runs (their jobs are inserted)
      but executes nothing: a web process beside worker nodes.
    - ``"inline"``: the jobs are executed in this process without ``oban``'s producers, and
      "due" is measured on the app's clock: for tests (a ``FakeClock`` skips time) and
      single-process use. Jobs left executing when it opens are taken again at once.

    ``routes`` sends a workflow's jobs (by class or stored name) to a queue other than
    ``queue``. ``stage_interval``: how often scheduled jobs (timers, retry delays) are made
    available, the precision of timers (``oban``'s stager; worker mode). ``rescue_after``:
    seconds after which a job still executing on a node that stopped answering is executed
    again (``oban``'s lifeline, checked every ``rescue_interval``); a step running longer than
    this runs twice, so it must exceed every step's timeout (a warning says when it does not).
    ``reconcile_interval``: how often the leader node looks for active runs without a live job
    (a job deleted by hand, discarded, lost in an upgrade) and dispatches them again.
    ``shutdown_timeout``: how long ``close()`` lets executing steps finish before handing
    their jobs back to the queue (default 15 s in worker mode, as ``oban``'s grace period;
    0 inline, as the local runner).
    """

    name = "oban"
    """The ``runner`` field of the telemetry events this runner emits."""

    def __init__(
        self,
        *,
        mode: Mode = "worker",
        queue: str = "hephaestus",
        concurrency: int = 10,
        queues: Mapping[str, int] | None = None,
        routes: Mapping[type[Any] | str, str] | None = None,
        node: str | None = None,
        stage_interval: float = 1.0,
        rescue_after: float = 300.0,
        rescue_interval: float = 60.0,
        reconcile_interval: float = 60.0,
        shutdown_timeout: float | None = None,
        max_threads: int | None = None,
    ) -> None:
        if mode not in ("worker", "client", "inline"):
            raise ValueError(f"mode must be 'worker', 'client' or 'inline', got {mode!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        for what, value in (
            ("stage_interval", stage_interval),
            ("rescue_after", rescue_after),
            ("rescue_interval", rescue_interval),
            ("reconcile_interval", reconcile_interval),
        ):
            if not value > 0:
                raise ValueError(f"{what} must be > 0 seconds, got {value!r}")
        if shutdown_timeout is None:
            shutdown_timeout = 15.0 if mode == "worker" else 0.0
        if shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must be >= 0, got {shutdown_timeout!r}")
        self.mode: Mode = mode
        self.queue = queue
        self.queues: dict[str, int] = dict(queues) if queues else {queue: concurrency}
        if any(limit < 1 for limit in self.queues.values()):
            raise ValueError(f"every queue's concurrency must be >= 1, got {self.queues!r}")
        self._routes = {
            (key if isinstance(key, str) else _stored_name(key)): value
            for key, value in (routes or {}).items()
        }
        self.node = node or f"{socket.gethostname()}.{os.getpid()}"
        self.stage_interval = stage_interval
        self.rescue_after = rescue_after
        self.rescue_interval = rescue_interval
        self.reconcile_interval = reconcile_interval
        self.shutdown_timeout = shutdown_timeout
        self._executor = StepExecutor(max_threads=max_threads)
        self._env: RuntimeEnv | None = None
        self._driver: Driver | None = None
        self._storage: PostgresStorage | None = None
        self._sql: Statements | None = None
        self._oban: Oban | None = None
        self._closing = False
        self._steps: dict[int, asyncio.Task[engine.Outcome]] = {}  # job id -> step executing
        self._killed: set[int] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._jobs: dict[int, asyncio.Task[None]] = {}  # inline: job id -> its task
        self._wake = asyncio.Event()
        self._reconciled: set[tuple[str, int]] = set()
        self._queued: dict[str, list[_Queued]] = {}  # run id -> results waiting to apply
        self._writing: set[str] = set()  # runs whose results are being written
        self._latest: dict[str, Instance] = {}  # run id -> the run as this node last saw it
        self._flush_waiting = False  # a flusher waits for a connection
        self._wanted: dict[str, list[asyncio.Future[Instance]]] = {}  # runs step jobs await
        self._reading = False  # a reader of the runs step jobs await is at work
        self._flushers: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self, env: RuntimeEnv) -> None:
        from hephaestus.storage.postgres import PostgresStorage

        if not isinstance(env.storage, PostgresStorage):
            raise AppError(
                f"the Oban runner needs the PostgreSQL storage on the database its jobs live "
                f"in, got {type(env.storage).__name__}: Hephaestus(storage=PostgresStorage(dsn), "
                "runner=ObanRunner())"
            )
        if self.mode != "inline" and not _is_system_clock(env.clock):
            raise AppError(
                "the Oban runner's worker and client modes schedule jobs on the database's clock; "
                f"with {type(env.clock).__name__} use ObanRunner(mode='inline'), which executes "
                "jobs in this process on the app's clock"
            )
        self._env = env
        self._storage = env.storage
        self._sql = Statements(env.storage.queries)
        self._driver = Driver(env, runner=self.name)
        self._closing = False
        self._wake = asyncio.Event()
        self._latest.clear()  # what a previous opening held may have changed since
        self._queued, self._writing, self._flush_waiting = {}, set(), False
        self._wanted, self._reading = {}, False
        await self._check_installed()
        self._warn_about_timeouts()
        if self.mode == "client":
            return
        _worker.register(self._sql.schema, self)
        self._executor.open(env)
        try:
            if self.mode == "worker":
                await self._start_oban()
                self._spawn(self._reconcile_loop())
            else:
                if env.recover:
                    await self._rescue_inline()
                    await self.reconcile(before=None)
                self._spawn(self._inline_loop())
        except BaseException:
            _worker.unregister(self._sql.schema, self)
            self._executor.close()
            raise

    async def close(self) -> None:
        self._closing = True
        if self._oban is not None:
            with contextlib.suppress(Exception):
                await self._oban.stop()  # lets running jobs finish (shutdown_timeout)
            self._oban = None
        if self._jobs and self.shutdown_timeout:
            await asyncio.wait(list(self._jobs.values()), timeout=self.shutdown_timeout)
        for task in [*self._jobs.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._jobs.values(), *self._background, return_exceptions=True)
        if self._flushers:  # results already taken are applied (or fail) before the pool goes
            await asyncio.wait(list(self._flushers), timeout=STORAGE_RETRY_SECONDS)
        self._jobs.clear()
        self._background.clear()
        if self._sql is not None:
            _worker.unregister(self._sql.schema, self)
        self._executor.close()
        self._env = None
        self._driver = None

    async def _check_installed(self) -> None:
        statements = self._require_sql()
        try:
            async with self._require_storage().pool.connection() as conn:
                cursor = await conn.execute(statements.installed)
                row = await cursor.fetchone()
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"could not check the Oban runner's tables: {exc}") from exc
        if not row or not row[0]:
            raise AppError(
                f"the jobs table of the Oban runner is missing in schema {statements.schema!r}: "
                f"run `hephaestus db migrate --schema {statements.schema}` (or "
                "hephaestus.storage.postgres.migrate) first"
            )

    def _warn_about_timeouts(self) -> None:
        from hephaestus._core.definition import WorkflowDefinition

        for definition in self._require_driver().env.registry:
            if not isinstance(definition, WorkflowDefinition):
                continue
            for key, node in definition.nodes.items():
                if node.timeout is not None and node.timeout >= self.rescue_after:
                    log.warning(
                        "step %s of %s may run %ss, longer than rescue_after=%ss: a node that "
                        "stops answering meanwhile gets it executed a second time; raise "
                        "ObanRunner(rescue_after=...) above the step's timeout",
                        key,
                        definition.name,
                        node.timeout,
                        self.rescue_after,
                    )

    async def _start_oban(self) -> None:
        from oban import Oban

        self._oban = Oban(
            pool=self._require_storage().pool,
            # One name for every node of a schema: they elect one leader (lifeline, reconciler).
            name=f"hephaestus-{self._require_sql().schema}",
            node=self.node,
            prefix=self._require_sql().schema,
            queues=dict(self.queues),
            stager={"interval": self.stage_interval},
            lifeline={"interval": self.rescue_interval, "rescue_after": self.rescue_after},
            shutdown_grace_period=self.shutdown_timeout,
        )
        await self._oban.start()

    # -- operations -------------------------------------------------------------------------

    async def start(self, definition: WorkflowDefinition, run: Instance) -> None:
        driver = self._require_driver()
        decision = engine.begin(definition, run, run.created_at)
        decision = dataclasses.replace(
            decision, instance=dataclasses.replace(decision.instance, revision=run.revision)
        )
        applied = Applied(definition, run, decision)
        async with self._require_storage().transaction() as tx:
            await tx.create(decision.instance)
            await self._write(tx, applied, own=[])
        driver.observe(definition, decision)

    async def apply(
        self, run_id: str, input: engine.Resume | engine.ScheduleResume | engine.Cancel
    ) -> engine.Decision:
        applied = await self._require_driver().apply_stored(
            run_id,
            input,
            dispatch=self._dispatch([]),
            fit=not isinstance(input, engine.Cancel),
        )
        return applied.decision

    def joined(self, run_id: str) -> Work[None]:
        """In a caller's transaction: after a run was started or an input queued there, a job
        that takes it (``JoiningRunner``); committed, or rolled back, with the caller's work."""
        statements = self._require_sql()
        batch = JobBatch(statements.schema, run_id, self.queue, {"run_id": run_id}, [])
        batch.take()
        now = self._require_driver().env.clock.now()
        yield (statements.write, statements.write_params(batch, [], now))

    async def wait_idle(self) -> None:
        """Return once no job of this runner's queues is executing or due (for tests)."""
        statements = self._require_sql()
        while True:
            if self.mode == "inline":
                self._wake.set()
                await asyncio.sleep(0)
                while self._jobs:
                    await asyncio.wait(list(self._jobs.values()))
            params = {
                "queues": list(self.queues),
                "worker": WORKER,
                "now": naive_utc(self._require_driver().env.clock.now()),
                "workflows": self._require_driver().workflow_names(),
            }
            async with self._require_storage().pool.connection() as conn:
                cursor = await conn.execute(statements.busy, params)
                row = await cursor.fetchone()
            if (not row or not row[0]) and not self._jobs:
                return
            await asyncio.sleep(0.005)

    # -- a job ------------------------------------------------------------------------------

    async def perform(self, job_id: int, args: Mapping[str, Any], job: Job | None = None) -> None:
        """Execute one job (from ``StepWorker``, or the inline loop). A job of a run that no
        longer exists (deleted) is done: there is nothing left to continue."""
        try:
            await self._perform(job_id, args, job)
        except InstanceNotFoundError as exc:
            log.warning("job %s of a run that no longer exists does nothing: %s", job_id, exc)

    async def _perform(self, job_id: int, args: Mapping[str, Any], job: Job | None) -> None:
        driver = self._require_driver()
        run_id = str(args["run"])
        kind = args.get("kind")
        if kind == "take":
            while await driver.apply_next(run_id, dispatch=self._dispatch([])) is not None:
                pass
            return
        step = str(args["step"])
        if kind == "timer":
            at = datetime.fromisoformat(str(args["at"]))
            timer = args.get("timer")
            fire = engine.FireTimer(step, at, None if timer is None else str(timer))
            await self._apply_result(run_id, fire, None, job_id, None)
            return
        attempt = int(args["attempt"])
        found = await self._read(run_id, step, attempt)
        if found is None:
            return  # resolved already (a re-delivery), or the run ended: nothing to do
        instance, state = found
        definition = driver.definition_of(instance)
        command = engine.RunStep(step, attempt, state.config)
        outcome, duration = await self._execute(job_id, definition, instance, command, job)
        if outcome is None:
            return  # stopped: the run was cancelled or the step aborted
        finished = engine.StepFinished(step, attempt, outcome)
        await self._apply_result(run_id, finished, duration, job_id, instance)

    async def _read(
        self, run_id: str, step: str, attempt: int
    ) -> tuple[Instance, StepState] | None:
        """The run a step job executes its step on, and the step's state; ``None`` when the
        run ended or the attempt is resolved.

        The run is read with those of the other step jobs that start meanwhile on this node,
        in one statement, and only for what changed since this node's copy (nothing when it
        is current): the branches of a wide fan-out would otherwise each read and decode
        the whole run.
        """
        future: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
        self._wanted.setdefault(run_id, []).append(future)
        if not self._reading:
            self._reading = True
            self._track(self._read_runs())
        instance = await future
        state = _active(instance, step, attempt)
        if instance.is_terminal or state is None:
            return None
        return instance, state

    async def _read_runs(self) -> None:
        """Read the runs step jobs wait for, a batch at a time, until none waits."""
        storage = self._require_storage()
        try:
            while self._wanted:
                wanted, self._wanted = self._wanted, {}
                try:
                    found = await storage.refresh_many(
                        {run_id: self._latest.get(run_id) for run_id in wanted}
                    )
                except Exception as exc:
                    for futures in wanted.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for run_id, futures in wanted.items():
                    instance = found.get(run_id)
                    if instance is not None:
                        self._remember(instance)
                    for future in futures:
                        if future.done():
                            continue
                        if instance is None:
                            future.set_exception(
                                InstanceNotFoundError(
                                    f"run {run_id} does not exist", instance_id=run_id
                                )
                            )
                        else:
                            future.set_result(instance)
        finally:
            self._reading = False

    def _remember(self, instance: Instance) -> None:
        """Keep ``instance`` as the newest state of its run this node knows (a few runs)."""
        held = self._latest.pop(instance.run_id, None)
        if held is not None and held.revision > instance.revision:
            instance = held
        self._latest[instance.run_id] = instance
        while len(self._latest) > LATEST_KEPT:
            del self._latest[next(iter(self._latest))]

    async def _execute(
        self,
        job_id: int,
        definition: WorkflowDefinition,
        instance: Instance,
        command: engine.RunStep,
        job: Job | None,
    ) -> tuple[engine.Outcome | None, float | None]:
        """Run the step in a task of its own, which a cancel of the run stops (here, or on
        another node through ``oban``'s ``pkill`` signal); ``None``: it was stopped."""
        driver = self._require_driver()
        observed = driver.observed
        began = time.perf_counter()
        if observed:
            driver.step_started(definition, instance, command)
        task = asyncio.get_running_loop().create_task(
            self._executor.execute(definition, instance, command, stopping=self._is_closing)
        )
        self._steps[job_id] = task
        watcher = self._watch_cancellation(job_id, job)
        try:
            outcome = await task
        except asyncio.CancelledError:
            if not task.done():  # this job is being stopped (shutdown): stop its step too
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            if job_id in self._killed and not self._closing:
                return None, None
            if self._closing:
                await self._release(job_id)
            raise
        finally:
            self._steps.pop(job_id, None)
            self._killed.discard(job_id)
            if watcher is not None:
                watcher.cancel()
        return outcome, (time.perf_counter() - began) if observed else None

    def _watch_cancellation(self, job_id: int, job: Job | None) -> asyncio.Task[None] | None:
        """Stop the step when ``oban`` signals that its job was cancelled (``pkill``)."""
        event = getattr(job, "_cancellation", None) if job is not None else None
        if not isinstance(event, asyncio.Event):
            return None

        async def watch() -> None:
            await event.wait()
            self._kill([job_id])

        return asyncio.get_running_loop().create_task(watch())

    def _kill(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            task = self._steps.get(job_id)
            if task is not None and not task.done():
                self._killed.add(job_id)
                task.cancel()

    async def _release(self, job_id: int) -> None:
        """Hand a job this node stops executing (it is closing) back to the queue now."""
        statements = self._require_sql()
        try:
            async with self._require_storage().pool.connection() as conn:
                await conn.execute(
                    statements.release,
                    {"ids": [job_id], "insert_channel": statements.insert_channel},
                )
        except Exception as exc:
            log.warning("could not hand job %s back (it is rescued later): %s", job_id, exc)

    async def _apply_result(
        self,
        run_id: str,
        input: engine.Input,
        duration: float | None,
        job_id: int,
        known: Instance | None,
    ) -> None:
        """Apply a step's result or a timer, and complete its job, with the others that
        finish meanwhile on this node, of any run (group commit); returns once it is applied
        (its error, if it failed).

        Results queue here while a connection is awaited; the flusher that gets one takes
        every queued run not already being written and writes them all in one statement
        (``_write_group``). Several flushes may be in flight, but one run is in one at most:
        the results of a run that arrive while it is being written wait for the next.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queued.setdefault(run_id, []).append(_Queued(input, duration, job_id, known, done))
        self._schedule_flush()
        await asyncio.shield(done)  # a job stopped meanwhile still gets its result applied

    def _schedule_flush(self) -> None:
        if self._flush_waiting or not any(run not in self._writing for run in self._queued):
            return
        self._flush_waiting = True
        self._track(self._flush())

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._flushers.add(task)
        task.add_done_callback(self._flushers.discard)

    async def _flush(self) -> None:
        taken: dict[str, list[_Queued]] = {}
        try:
            async with self._require_storage().pool.connection() as conn:
                taken = self._take_queued()
                slow = await self._write_group(conn, taken)
        except Exception as exc:  # no connection came, or it broke: each run alone
            log.info("writing step results together failed, applying each alone: %s", exc)
            taken = taken or self._take_queued()
            slow = set(taken)
        for run_id, queued in taken.items():
            if run_id in slow:
                self._track(self._apply_alone(run_id, queued))
            else:
                self._written_run(run_id)

    def _take_queued(self) -> dict[str, list[_Queued]]:
        """The queued results of every run not being written now, marked as being written."""
        self._flush_waiting = False
        taken = {r: items for r, items in self._queued.items() if r not in self._writing}
        for run_id in taken:
            del self._queued[run_id]
            self._writing.add(run_id)
        self._schedule_flush()  # none waits for a connection now: the next flush may
        return taken

    def _written_run(self, run_id: str) -> None:
        """``run_id`` is written (or failed): results of it that wait may go."""
        self._writing.discard(run_id)
        self._schedule_flush()

    async def _write_group(self, conn: Any, taken: dict[str, list[_Queued]]) -> set[str]:
        """Write the results of ``taken``'s runs in one statement on ``conn``, each decided
        on the run as its job read it (or as this node last wrote it); returns the runs left
        to ``_apply_alone``: written by someone else meanwhile (the revision check), read by
        none (a timer), refused, or all of them if the statement failed."""
        statements = self._require_sql()
        now = self._require_driver().env.clock.now()
        slow: set[str] = set()
        group: dict[str, _Decided] = {}
        for run_id, queued in taken.items():
            decided = self._decide(run_id, queued, now)
            if decided is None:
                slow.add(run_id)
            else:
                group[run_id] = decided
        if not group:
            return slow
        params = statements.write_runs_params(
            [d.item for d in group.values()],
            [d.jobs for d in group.values()],
            [(run_id, q.job_id) for run_id in group for q in taken[run_id]],
            now,
        )
        try:
            cursor = await conn.execute(statements.write_runs, params)
            row = await cursor.fetchone()
        except Exception as exc:  # a lost connection, a value the database refused...
            log.info("writing %d runs together failed, applying each alone: %s", len(group), exc)
            return set(taken)
        written = {str(run_id) for run_id in (row[0] if row else [])}
        killed = [int(job_id) for job_id in (row[1] if row else [])]
        if killed:
            self._kill(killed)
        driver = self._require_driver()
        for run_id, decided in group.items():
            if run_id not in written:
                slow.add(run_id)
                continue
            self._remember(decided.applied.decision.instance)
            for decision, duration in decided.decisions:
                driver.observe(decided.applied.definition, decision, duration)
            self._written(decided.jobs, [])
            for q in taken[run_id]:
                if not q.done.done():
                    q.done.set_result(None)
        return slow

    def _decide(self, run_id: str, queued: list[_Queued], now: datetime) -> _Decided | None:
        """One run's results decided on the newest state this node knows of it, encoded for
        ``write_runs``; ``None`` when only the locked path can apply them."""
        known = max(
            (q.known for q in queued if q.known is not None),
            key=lambda instance: instance.revision,
            default=None,
        )
        latest = self._latest.get(run_id)
        if latest is not None and (known is None or latest.revision > known.revision):
            known = latest
        if known is None:  # a timer: its job read nothing
            return None
        driver = self._require_driver()
        try:
            applied, decisions = driver.decide_all(known, [(q.input, q.duration) for q in queued])
            decision = applied.decision
            if not decision.changed:  # stale, or known too old: decided again, locked
                return None
            item = self._require_storage().write_item(decision.instance, known, decision.changes)
        except HephaestusError:  # refused, no longer fits...: alone, with its own errors
            return None
        jobs = self._batch(applied.definition, decision.instance)
        for command in decision.commands:
            jobs.add(command, now)
        jobs.cancel_all = decision.instance.is_terminal
        return _Decided(applied, decisions, item, jobs)

    async def _apply_alone(self, run_id: str, queued: list[_Queued]) -> None:
        """The locked path for one run's results: load it locked, decide, save, write jobs."""
        try:
            await self._durably(lambda: self._apply_batch(run_id, queued))
        except BaseException as exc:
            for q in queued:
                if not q.done.done():
                    q.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for q in queued:
                if not q.done.done():
                    q.done.set_result(None)
        finally:
            self._written_run(run_id)

    async def _apply_batch(self, run_id: str, batch: list[_Queued]) -> None:
        """The run loaded locked (only what changed since this node last saw it), decided on,
        saved, with its jobs; this node then holds it as saved."""
        driver = self._require_driver()
        own = [item.job_id for item in batch]
        held = self._latest.get(run_id)
        if len(batch) == 1:
            [item] = batch
            applied = await driver.apply_stored(
                run_id, item.input, dispatch=self._dispatch(own), duration=item.duration, held=held
            )
        else:
            try:
                applied = await driver.apply_all(
                    run_id,
                    [(item.input, item.duration) for item in batch],
                    dispatch=self._dispatch(own),
                    held=held,
                )
            except UnencodableValueError:
                for item in batch:  # one refused result: each alone (it fails that attempt)
                    await driver.apply_stored(
                        run_id,
                        item.input,
                        dispatch=self._dispatch([item.job_id]),
                        duration=item.duration,
                    )
                return
        decision = applied.decision
        self._remember(decision.instance if decision.changed else applied.before)

    async def _durably(self, apply: Callable[[], Awaitable[None]]) -> None:
        """``apply``, retried while the database is unreachable: a step's outcome is kept and
        recorded again, never re-executed, for ``STORAGE_RETRY_SECONDS``."""
        delay = 0.05
        deadline = time.monotonic() + STORAGE_RETRY_SECONDS
        while True:
            try:
                await apply()
                return
            except ConcurrentUpdateError:
                raise
            except StorageError as exc:
                if time.monotonic() + delay > deadline or self._closing:
                    raise
                log.warning("storage failed, retrying in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- the decision's jobs ----------------------------------------------------------------

    def _dispatch(self, own: list[int]) -> Callable[[StorageTransaction, Applied], Any]:
        async def dispatch(tx: StorageTransaction, applied: Applied) -> None:
            await self._write(tx, applied, own=own)

        return dispatch

    async def _write(self, tx: StorageTransaction, applied: Applied, *, own: list[int]) -> None:
        """The decision's jobs, written in its transaction ``tx``."""
        decision = applied.decision
        instance = decision.instance
        now = self._require_driver().env.clock.now()
        batch = self._batch(applied.definition, instance)
        if decision.changed and applied.fits:
            for command in decision.commands:
                batch.add(command, now)
        if decision.changed and instance.is_terminal:
            batch.cancel_all = True
        if batch.empty and not own:
            return
        statements = self._require_sql()
        connection = cast("PostgresTransaction", tx).connection
        cursor = await connection.execute(
            statements.write, statements.write_params(batch, own, now)
        )
        row = await cursor.fetchone()
        killed = [int(job_id) for job_id in (row[1] if row else [])]
        tx.after_commit(lambda: self._written(batch, killed))

    def _written(self, batch: JobBatch, killed: list[int]) -> None:
        """After a commit: stop the steps it cancelled that run here, wake the inline loop."""
        if killed:
            self._kill(killed)
        if self.mode == "inline" and batch.inserts:
            self._wake.set()
            clock = self._require_driver().env.clock
            for at in batch.due:
                clock.call_at(at, self._wake.set)

    def _batch(self, definition: WorkflowDefinition | None, instance: Instance) -> JobBatch:
        return JobBatch(
            self._require_sql().schema,
            instance.run_id,
            self._routes.get(instance.workflow, self._routes.get(instance.family, self.queue)),
            job_meta(definition, instance),
            job_tags(definition, instance),
        )

    # -- reconciling ------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.reconcile_interval)
            if self._oban is None or not self._oban.is_leader:
                continue
            try:
                before = datetime.now(UTC) - timedelta(seconds=self.reconcile_interval)
                await self.reconcile(before=before)
            except Exception as exc:
                log.warning("reconciling runs without jobs failed (tried again later): %s", exc)

    async def reconcile(self, *, before: datetime | None, limit: int = 500) -> int:
        """Dispatch again what active runs last changed before ``before`` (``None``: any)
        need and have no live job for; returns how many runs got jobs."""
        storage = self._require_storage()
        statements = self._require_sql()
        params = {
            "before": before or datetime.max.replace(tzinfo=UTC),
            "workflows": self._require_driver().workflow_names(),
            "limit": limit,
        }
        async with storage.pool.connection() as conn:
            cursor = await conn.execute(statements.orphans, params)
            candidates = [(str(run), int(revision)) for run, revision in await cursor.fetchall()]
        fixed = 0
        for candidate in candidates:
            if candidate in self._reconciled:
                continue
            try:
                if await self._reconcile_one(candidate[0]):
                    fixed += 1
            except HephaestusError as exc:
                log.error("cannot dispatch run %s again: %s", candidate[0], exc)
            self._reconciled.add(candidate)
        return fixed

    async def _reconcile_one(self, run_id: str) -> bool:
        driver = self._require_driver()
        statements = self._require_sql()
        async with self._require_storage().transaction() as tx:
            instance = await tx.get(run_id)
            if instance.is_terminal:
                return False
            connection = tx.connection
            cursor = await connection.execute(statements.live_keys, {"run": run_id})
            live = {(str(key), attempt) for key, attempt in await cursor.fetchall()}
            keys = {key for key, _ in live}
            definition = driver.definition_of(instance, fit=False)
            batch = self._batch(definition, instance)
            now = driver.env.clock.now()
            cursor = await connection.execute(statements.inbox, {"run": run_id})
            row = await cursor.fetchone()
            if (instance.status is Status.PENDING or (row and row[0])) and "take" not in keys:
                batch.take()
            for command in engine.recover(instance):
                if isinstance(command, engine.RunStep):
                    if (step_key(command.step), str(command.attempt)) not in live:
                        batch.add(command, now)
                elif (
                    isinstance(command, engine.StartTimer)
                    and timer_key(command.step, command.timer) not in keys
                ):
                    batch.add(command, now)
            if not batch.inserts:
                return False
            await connection.execute(statements.write, statements.write_params(batch, [], now))
            tx.after_commit(lambda: self._written(batch, []))
        log.warning(
            "run %s (%s) had no job for what it waits on: dispatched again", run_id, instance.id
        )
        return True

    # -- inline mode ------------------------------------------------------------------------

    async def _rescue_inline(self) -> None:
        statements = self._require_sql()
        params = {
            "queues": list(self.queues),
            "worker": WORKER,
            "workflows": self._require_driver().workflow_names(),
        }
        async with self._require_storage().pool.connection() as conn:
            await conn.execute(statements.rescue, params)
            cursor = await conn.execute(statements.due_times, params)
            times = [row[0] for row in await cursor.fetchall()]
        clock = self._require_driver().env.clock
        for at in times:
            clock.call_at(at.replace(tzinfo=UTC), self._wake.set)

    async def _inline_loop(self) -> None:
        statements = self._require_sql()
        limit = sum(self.queues.values())
        while not self._closing:
            self._wake.clear()
            room = limit - len(self._jobs)
            taken: list[tuple[int, dict[str, Any]]] = []
            if room > 0:
                params = {
                    "queues": list(self.queues),
                    "worker": WORKER,
                    "now": naive_utc(self._require_driver().env.clock.now()),
                    "limit": room,
                    "by": [self.node, "inline"],
                    "workflows": self._require_driver().workflow_names(),
                }
                try:
                    async with self._require_storage().pool.connection() as conn:
                        cursor = await conn.execute(statements.fetch, params)
                        taken = [
                            (int(job_id), dict(args)) for job_id, args, _ in await cursor.fetchall()
                        ]
                except Exception as exc:
                    log.warning("fetching jobs failed (trying again): %s", exc)
            for job_id, args in taken:
                task = asyncio.get_running_loop().create_task(self._inline_job(job_id, args))
                self._jobs[job_id] = task
            if taken and len(self._jobs) < limit:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.stage_interval)

    async def _inline_job(self, job_id: int, args: dict[str, Any]) -> None:
        statements = self._require_sql()
        state, error, delay = "completed", None, 0
        try:
            await self.perform(job_id, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("job %s (%s) failed: %s", job_id, args.get("key"), exc, exc_info=exc)
            state, error, delay = "retryable", f"{type(exc).__name__}: {exc}", 1
        finally:
            self._jobs.pop(job_id, None)
            self._wake.set()
        try:
            async with self._require_storage().pool.connection() as conn:
                await conn.execute(
                    statements.finish,
                    {"id": job_id, "state": state, "error": error, "delay": delay},
                )
        except Exception as exc:
            log.warning("could not record the end of job %s: %s", job_id, exc)

    # -- helpers ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _is_closing(self) -> bool:
        return self._closing

    def _require_driver(self) -> Driver:
        if self._driver is None:
            raise AppNotOpenError("the Oban runner is not open")
        return self._driver

    def _require_storage(self) -> PostgresStorage:
        if self._storage is None:
            raise AppNotOpenError("the Oban runner is not open")
        return self._storage

    def _require_sql(self) -> Statements:
        if self._sql is None:
            raise AppNotOpenError("the Oban runner is not open")
        return self._sql


@dataclasses.dataclass(slots=True)
class _Queued:
    """A step result or timer waiting to be applied with the others of its run."""

    input: engine.Input
    duration: float | None
    job_id: int
    known: Instance | None
    done: asyncio.Future[None]


@dataclasses.dataclass(slots=True)
class _Decided:
    """One run's share of a group write: its decision, the decisions it combines (observed
    once written), its encoded revision and its jobs."""

    applied: Applied
    decisions: list[tuple[engine.Decision, float | None]]
    item: str
    jobs: JobBatch


def _active(instance: Instance, step: str, attempt: int) -> StepState | None:
    """The state of ``step`` in ``instance`` if ``attempt`` of it is the active one."""
    state = instance.steps.get(step)
    if state is None or state.status is not StepStatus.ACTIVE or state.attempt != attempt:
        return None
    return state


def _stored_name(workflow: type[Any]) -> str:
    name = getattr(workflow, "name", None)
    if isinstance(name, str):
        return name
    return f"{workflow.__module__}.{workflow.__qualname__}"


def _is_system_clock(clock: object) -> bool:
    from hephaestus._clock import SystemClock

    return isinstance(clock, SystemClock)

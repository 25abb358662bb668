"""``hephaestus demo``: an order workflow run live on the embedded defaults.

Read it as an example of the API. ``OrderFlow`` shows

- branching: ``ValidateOrder`` emits ``valid`` or ``invalid``; an invalid order is rejected;
- fan-out and fan-in: ``ChargePayment`` and ``ReserveStock`` run in parallel and join at ``Ship``;
- a retried failure: the carrier API behind ``Ship`` fails once, and its ``RetryPolicy`` retries;
- a durable timer: ``InTransit`` is a ``Wait`` whose length a route takes from the order;
- an external event: ``AwaitDelivery`` waits until the demo, standing in for a courier's
  webhook, calls ``OrderFlow.resume(..., "delivered", payload)``.

A telemetry handler prints one line per event, and a table sums up each run at the end.

With ``--durable [PATH]`` the runs live in a SQLite file (``SQLiteStorage``) and the timer is
long enough to interrupt the demo (Ctrl-C, ``kill -9``): the next invocation on the same file
finds the unfinished runs, the app recovers them as it opens, and the demo finishes them.
Once every run in the file has ended, an invocation starts a fresh batch of orders, numbered
after the last (business keys are unique among active runs; old runs stay in the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hephaestus import (
    Config,
    Context,
    Done,
    Hephaestus,
    Instance,
    Ok,
    RetryPolicy,
    Status,
    Step,
    StepContext,
    StepResult,
    StepRun,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowRegistry,
    route,
    telemetry,
)
from hephaestus._app import definition_of

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping
    from typing import TextIO

__all__ = [
    "DEFAULT_DATABASE",
    "ORDERS",
    "DemoOrder",
    "OrderFlow",
    "ProgressPrinter",
    "run_demo",
    "stored_runs",
    "use_colour",
]

PRICES = {"anvil": 120, "tongs": 25, "hammer": 40}
TRANSIT_SECONDS = 1.5
FAST_TRANSIT_SECONDS = 0.1
DURABLE_TRANSIT_SECONDS = 8.0
"""With ``--durable``: long enough to read the prompt and press Ctrl-C (or ``kill -9``)."""
DURABLE_FAST_TRANSIT_SECONDS = 1.5
POLL_SECONDS = 0.02
DEADLINE_SECONDS = 10.0
DEFAULT_DATABASE = "hephaestus-demo.db"
FIRST_ORDER = 1001


# -- steps ----------------------------------------------------------------------------------


class ValidateOrder(Step):
    """Branches: an order of known items is ``valid``, anything else ``invalid``."""

    events = ("valid", "invalid")

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        items: list[str] = context.initial["items"]
        unknown = [item for item in items if item not in PRICES]
        if not items or unknown:
            return Ok("invalid", {"reason": f"unknown items {unknown}" if unknown else "no items"})
        return Ok("valid", {"total": sum(PRICES[item] for item in items)})


class ChargePayment(Step):
    """Charges the card; runs in parallel with ``ReserveStock``."""

    events = ("charged",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        await asyncio.sleep(0.15)  # the payment provider is slower than the warehouse
        # A real provider de-duplicates on this key, so a re-dispatched attempt never charges twice.
        return Ok("charged", {"payment_ref": run.idempotency_key})


class ReserveStock(Step):
    """Reserves the items in the warehouse; runs in parallel with ``ChargePayment``."""

    events = ("reserved",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        await asyncio.sleep(0.05)
        return Ok("reserved", {"items": len(context.initial["items"])})


class CarrierUnavailableError(Exception):
    """The (simulated) carrier API is down."""


class Ship(Step):
    """Books the carrier once payment and stock are both done (the fan-in).

    The carrier API is flaky: the first attempt fails, and the policy retries 0.2 s later.
    """

    events = ("shipped",)
    retry = RetryPolicy(max_attempts=3, initial_delay=0.2)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        if run.attempt == 1:
            raise CarrierUnavailableError("carrier API answered 503")
        return Ok("shipped", {"tracking": f"TRK-{context.initial['order']}"})


class InTransit(Wait):
    """The parcel travels: a durable timer that emits ``timeout`` when it is up."""


class AwaitDelivery(WaitForEvent):
    """Waits for the courier to report ``delivered``; the payload becomes this step's result."""

    events = ("delivered",)


class RejectOrder(Step):
    """The end of the invalid branch: tells the customer why."""

    events = ("rejected",)

    async def execute(self, run: StepRun, config: Config, context: StepContext) -> StepResult:
        return Ok("rejected", {"reason": context.steps["validate_order"]["reason"]})


@route(InTransit)
def transit(context: Context) -> tuple[type[Step], Config]:
    """How long the parcel travels comes from the order (``--fast`` shortens it)."""
    return InTransit, {"duration": context.initial["transit_seconds"], "unit": "second"}


class OrderFlow(Workflow):
    """An order, from validation to delivery (or rejection)."""

    unique = Unique(key="order")
    start_step = ValidateOrder
    transitions = {  # noqa: RUF012 (a declaration read once, when the class is created)
        (ValidateOrder, "valid"): [ChargePayment, ReserveStock],  # fan-out
        (ValidateOrder, "invalid"): RejectOrder,  # branch
        (ChargePayment, "charged"): Ship,  # fan-in (join: all): Ship runs once both arrive
        (ReserveStock, "reserved"): Ship,
        (Ship, "shipped"): transit,  # a route picks the timer's length
        (InTransit, "timeout"): AwaitDelivery,
        (AwaitDelivery, "delivered"): Done,
        (RejectOrder, "rejected"): Done,
    }


# -- the orders -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOrder:
    """One order the demo places, and the step its run must complete to count as a success.

    Orders with a ``recipient`` are delivered: the courier reports ``courier_delay`` seconds
    after the run starts waiting for it.
    """

    value: str
    items: tuple[str, ...]
    expected_step: str
    recipient: str = ""
    courier_delay: float = 0.0

    def context(self, transit_seconds: float) -> dict[str, Any]:
        return {"order": self.value, "items": list(self.items), "transit_seconds": transit_seconds}


ORDERS = (
    DemoOrder("1001", ("anvil", "tongs"), "await_delivery", recipient="A. Smith"),
    DemoOrder("1002", ("hammer",), "await_delivery", recipient="B. Jones", courier_delay=0.3),
    DemoOrder("1003", ("unobtainium",), "reject_order"),
)


def numbered(number: int) -> DemoOrder:
    """Order ``number``: the durable demo's batches go on numbering ``ORDERS`` (1004 is 1001's
    twin, and so on), so a fresh batch never collides with a run of an earlier one."""
    return dataclasses.replace(ORDERS[(number - FIRST_ORDER) % len(ORDERS)], value=str(number))


# -- live progress --------------------------------------------------------------------------

GRAPH = """\
  validate_order -valid--> charge_payment || reserve_stock --> ship (flaky carrier API)
                                  --> in_transit (timer) --> await_delivery (event) --> done
                 -invalid-> reject_order --> done"""

_ANSI = {"ok": "32", "wait": "33", "fail": "31", "event": "36", "dim": "2", "bold": "1"}


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def describe(
    event: str, measurements: Mapping[str, float], meta: Mapping[str, Any]
) -> tuple[str, str]:
    """What a telemetry event means, in words, and its tone (a key of ``_ANSI``, or "")."""
    match event.removeprefix("hephaestus."):
        case "workflow.start":
            return "workflow started", "bold"
        case "workflow.stop":
            return f"workflow completed in {measurements['duration'] * 1000:.0f} ms", "ok"
        case "workflow.exception":
            return f"workflow failed: {meta['error'].message}", "fail"
        case "workflow.cancel":
            return "workflow cancelled", "fail"
        case "workflow.suspend":
            return f"run asleep until {', '.join(meta['waiting_steps'])} is resumed", "wait"
        case "step.start" if meta["attempt"] > 1:
            return f"started (attempt {meta['attempt']})", ""
        case "step.start":
            return "started", ""
        case "step.stop":
            return f"completed -> {meta['event']}", "ok"
        case "step.async" if meta["timeout"] is not None:
            return f"waiting (timer {meta['timeout']:g} s)", "wait"
        case "step.async":
            return "waiting for an event", "wait"
        case "step.exception":
            then = "retrying" if meta["will_retry"] else "giving up"
            error = meta["error"]
            return f"failed attempt {meta['attempt']}, {then}: {error.message}", "fail"
        case "step.resume" if meta["source"] == "timer":
            return f"timer fired -> {meta['event']}", "event"
        case "step.resume":
            return f"resumed by event -> {meta['event']}", "event"
    return event, ""


class ProgressPrinter:
    """A telemetry handler printing one line per event: offset, instance, step, what happened."""

    def __init__(self, out: TextIO, *, colour: bool) -> None:
        self._out = out
        self._colour = colour
        self._began = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since the printer was made."""
        return time.perf_counter() - self._began

    def __call__(
        self, event: str, measurements: Mapping[str, float], meta: Mapping[str, Any]
    ) -> None:
        what, tone = describe(event, measurements, meta)
        self.line(meta["instance_id"], meta.get("step") or "", what, tone)

    def line(self, instance_id: str, step: str, what: str, tone: str = "") -> None:
        offset = self.paint(f"+{self.elapsed:.3f}s", "dim")
        self.say(f"{offset}  {instance_id:<12} {step:<15} {self.paint(what, tone)}")

    def say(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)

    def paint(self, text: str, tone: str) -> str:
        if not self._colour or tone not in _ANSI:
            return text
        return f"\x1b[{_ANSI[tone]}m{text}\x1b[0m"


# -- running it -----------------------------------------------------------------------------


async def _poll(
    order: DemoOrder, ready: Callable[[Instance], bool], patience: float = DEADLINE_SECONDS
) -> Instance:
    """Read the run until ``ready`` holds, it ends, or ``patience`` seconds pass."""
    deadline = time.monotonic() + patience
    while True:
        run = await OrderFlow.get(order.value)
        if ready(run) or run.is_terminal or time.monotonic() > deadline:
            return run
        await asyncio.sleep(POLL_SECONDS)


async def _follow(
    order: DemoOrder, printer: ProgressPrinter, patience: float = DEADLINE_SECONDS
) -> Instance:
    """Play the courier for one order (deliver once it waits), then wait for the run's end.

    A real courier would call ``OrderFlow.resume`` from a webhook; the demo polls instead.
    """
    if order.recipient:
        run = await _poll(order, lambda run: "await_delivery" in run.waiting_steps, patience)
        if "await_delivery" in run.waiting_steps:
            await asyncio.sleep(order.courier_delay)
            payload = {"signed_by": order.recipient}
            call = f"OrderFlow.resume({order.value!r}, 'delivered', {payload})"
            printer.line(run.id, "(courier)", call, "event")
            await OrderFlow.resume(order.value, "delivered", payload)
    return await _poll(order, lambda run: run.is_terminal)


async def _run_orders(transit_seconds: float, printer: ProgressPrinter) -> list[Instance]:
    """Start every order on a fresh app, follow each to its end, and return the final runs."""
    async with Hephaestus():  # the embedded defaults: in-memory storage, local runner
        for order in ORDERS:
            await OrderFlow.start(order.value, order.context(transit_seconds))
        return await asyncio.gather(*(_follow(order, printer) for order in ORDERS))


def _succeeded(order: DemoOrder, run: Instance) -> bool:
    return run.status is Status.COMPLETED and order.expected_step in run.completed_steps


def _outcome(run: Instance) -> str:
    """How the run ended, from the results its last steps stored in the context."""
    results = run.context.steps
    if "await_delivery" in results:  # the resume payload became the step's result
        return f"delivered, signed by {results['await_delivery'].get('signed_by')}"
    if "reject_order" in results:
        return f"rejected: {results['reject_order'].get('reason')}"
    return run.error.message if run.error is not None else "still running"


def _summary(
    printer: ProgressPrinter,
    orders: tuple[DemoOrder, ...],
    runs: list[Instance],
    resumed: frozenset[str] = frozenset(),
) -> int:
    """Print one row per run (``resumed``: ids marked as finished for an earlier invocation);
    returns how many did not end as expected."""
    printer.say(
        f"\n{'instance':<12} {'status':<10} {'steps':>5} {'history':>7}  {'check':<5}  outcome"
    )
    failures = 0
    for order, run in zip(orders, runs, strict=True):
        ok = _succeeded(order, run)
        failures += not ok
        check = printer.paint(f"{'ok' if ok else 'FAIL':<5}", "ok" if ok else "fail")
        steps, history = len(run.completed_steps), len(run.history)
        mark = printer.paint("  (resumed)", "event") if run.id in resumed else ""
        row = f"{run.id:<12} {run.status:<10} {steps:>5} {history:>7}  {check}  {_outcome(run)}"
        printer.say(row + mark)
    return failures


async def run_demo(
    *, fast: bool = False, durable: str | os.PathLike[str] | None = None, out: TextIO | None = None
) -> int:
    """Run every demo order live; returns 0 when each run ended as expected, else 1.

    ``durable``: run on this SQLite file instead, finishing the runs an interrupted earlier
    invocation left in it (``_Durable``); 130 or 143 when interrupted by SIGINT or SIGTERM.
    """
    stream = out if out is not None else sys.stdout
    printer = ProgressPrinter(stream, colour=use_colour(stream))
    if durable is not None:
        return await _Durable(Path(durable), fast=fast, printer=printer).run()
    title = "Hephaestus demo: OrderFlow on in-memory storage, the local runner and the real clock"
    printer.say(f"{printer.paint(title, 'bold')}\n{GRAPH}\n")
    shown = [e for e in telemetry.EVENTS if e != "hephaestus.workflow.transition"]
    telemetry.attach("hephaestus.demo", shown, printer)
    try:
        runs = await _run_orders(FAST_TRANSIT_SECONDS if fast else TRANSIT_SECONDS, printer)
    finally:
        telemetry.detach("hephaestus.demo")
    failures = _summary(printer, ORDERS, runs)
    if failures:
        printer.say(f"\n{failures} of {len(runs)} runs did not end as expected")
        return 1
    printer.say(f"\nall {len(runs)} runs ended as expected in {printer.elapsed:.1f} s")
    return 0


# -- the durable variant --------------------------------------------------------------------


async def stored_runs(path: str | os.PathLike[str]) -> list[Instance]:
    """Every ``OrderFlow`` run in the SQLite file ``path``, oldest first (a missing file is
    created, with its schema)."""
    from hephaestus.storage import InstanceQuery
    from hephaestus.storage.sqlite import SQLiteStorage

    definition = definition_of(OrderFlow)
    storage = SQLiteStorage(path, registry=WorkflowRegistry([definition]))
    await storage.open()
    try:
        return await storage.query(InstanceQuery(workflow=definition.name))
    finally:
        await storage.close()


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _batches_of(left: list[Instance]) -> tuple[DemoOrder, ...]:
    """Every order of the batches the unfinished runs ``left`` belong to, in order: what the
    session follows (an order the interrupted invocation had not started yet included)."""
    batch = len(ORDERS)
    batches = sorted({(int(run.context.initial["order"]) - FIRST_ORDER) // batch for run in left})
    return tuple(
        numbered(FIRST_ORDER + index * batch + offset)
        for index in batches
        for offset in range(batch)
    )


def _hold_demo_lock(path: Path, stack: contextlib.ExitStack) -> str | None:
    """Lock ``<path>-demo.lock`` for this process until ``stack`` closes, writing its pid in
    it; ``None``, or the pid written by the process that holds it."""
    import fcntl

    lock = path.with_name(path.name + "-demo.lock")
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    stack.callback(os.close, descriptor)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return lock.read_text().strip() or "unknown"
    os.ftruncate(descriptor, 0)
    os.write(descriptor, str(os.getpid()).encode())
    return None


class _Durable:
    """One invocation of the durable demo on the SQLite file ``path``.

    It finishes the runs an earlier invocation left unfinished in the file (the app recovers
    them as it opens; the demo plays the courier for those that wait for it), or, when there
    are none, starts a fresh batch of orders. SIGINT and SIGTERM stop it cleanly: the app
    closes, its runs stay in the file for the next invocation.
    """

    def __init__(self, path: Path, *, fast: bool, printer: ProgressPrinter) -> None:
        self.path = path
        self.transit = DURABLE_FAST_TRANSIT_SECONDS if fast else DURABLE_TRANSIT_SECONDS
        self.printer = printer
        self.signals: list[int] = []

    async def run(self) -> int:
        """The demo, stopped by the first SIGINT or SIGTERM (128 + its number); 1 at once if
        another durable demo runs on the file (both would play the courier for its runs)."""
        with contextlib.ExitStack() as stack:
            try:
                other = _hold_demo_lock(self.path, stack)
            except OSError as exc:
                self.printer.say(f"cannot run the demo on {self.path}: {exc}")
                return 1
            if other is not None:
                self.printer.say(
                    f"another demo (pid {other}) is running on {self.path}: let it finish, "
                    "interrupt it, or give --durable another file"
                )
                return 1
            return await self._run()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            self.signals.append(signum)
            stop.set()

        installed: list[int] = []
        for signum in (int(signal.SIGINT), int(signal.SIGTERM)):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)  # POSIX, main thread only
                installed.append(signum)
        try:
            return await self._until(stop, self._demo())
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def _until(self, stop: asyncio.Event, work: Coroutine[Any, Any, int]) -> int:
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()  # the app closes: its runs stay in the file as they are
                await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled():
            return task.result()
        return await self._interrupted()

    async def _demo(self) -> int:
        printer, path = self.printer, self.path
        new = not path.exists()
        title = f"Hephaestus demo, durable: OrderFlow on the SQLite file {path}"
        printer.say(f"{printer.paint(title, 'bold')}\n{GRAPH}\n")
        earlier = await stored_runs(path)  # creates the file, with its schema, if missing
        left = [run for run in earlier if not run.is_terminal]
        if left:
            orders = _batches_of(left)
            ids = ", ".join(run.id for run in left)
            printer.say(
                printer.paint(
                    f"resuming {_runs(len(left))} left by an earlier invocation: {ids}", "bold"
                )
            )
        else:
            last = max((int(run.context.initial["order"]) for run in earlier), default=0)
            first = max(last + 1, FIRST_ORDER)
            orders = tuple(numbered(number) for number in range(first, first + len(ORDERS)))
            numbers = f"orders {orders[0].value} to {orders[-1].value}"
            if new:
                printer.say(f"new file {path} (in {path.resolve().parent}): starting {numbers}")
            else:
                printer.say(
                    f"all {len(earlier)} runs in {path} have ended: starting a fresh batch, "
                    f"{numbers} (the old runs stay in the file)"
                )
        pid = os.getpid()
        if left:
            hint = (
                f"You may interrupt this one too (Ctrl-C, or `kill -9 {pid}` in another "
                "terminal): the next invocation resumes whatever is left."
            )
        else:
            hint = (
                f"Try it: while the parcels are in transit ({self.transit:g} s), press Ctrl-C, "
                f"or run `kill -9 {pid}` in another terminal;\nthen run the same command again."
            )
        printer.say(printer.paint(hint, "bold") + "\n")
        shown = [e for e in telemetry.EVENTS if e != "hephaestus.workflow.transition"]
        telemetry.attach("hephaestus.demo", shown, printer)
        try:
            stored = frozenset(int(run.context.initial["order"]) for run in earlier)
            runs = await self._session(orders, stored)
        finally:
            telemetry.detach("hephaestus.demo")
        resumed = frozenset(run.id for run in left)
        failures = _summary(printer, orders, runs, resumed)
        if failures:
            printer.say(f"\n{failures} of {len(runs)} runs did not end as expected")
            return 1
        note = f", {len(resumed)} of them resumed from an earlier invocation" if resumed else ""
        printer.say(f"\nall {len(runs)} runs ended as expected in {printer.elapsed:.1f} s{note}")
        printer.say(f"they stay in {path}; run the same command again for a fresh batch")
        return 0

    async def _session(
        self, orders: tuple[DemoOrder, ...], stored: frozenset[int]
    ) -> list[Instance]:
        """Open the app on the file (recovering what is left in it), start the orders not
        ``stored`` in it yet (by number), and follow each to its end (a run that has ended is
        only read)."""
        from hephaestus.storage.sqlite import SQLiteStorage

        printer = self.printer
        async with Hephaestus(storage=SQLiteStorage(self.path), workflows=[OrderFlow]):
            for order in orders:
                if int(order.value) not in stored:
                    await OrderFlow.start(order.value, order.context(self.transit))
            runs = [await OrderFlow.get(order.value) for order in orders]
            active = sum(not run.is_terminal for run in runs)
            printer.line(
                "(demo)",
                "",
                f"{_runs(active)} in flight in {self.path} (pid {os.getpid()})",
                "bold",
            )
            patience = self.transit + DEADLINE_SECONDS
            return list(
                await asyncio.gather(*(_follow(order, printer, patience) for order in orders))
            )

    async def _interrupted(self) -> int:
        """Say what the interruption left in the file; the exit status of the signal."""
        signum = self.signals[0]
        name = signal.Signals(signum).name
        left = [run for run in await stored_runs(self.path) if not run.is_terminal]
        printer = self.printer
        if left:
            ids = ", ".join(run.id for run in left)
            printer.say(
                printer.paint(
                    f"\n{name}: stopped. {_runs(len(left))} left in {self.path} ({ids}); "
                    "run the same command again to finish them",
                    "bold",
                )
            )
        else:
            printer.say(f"\n{name}: stopped. No unfinished run is left in {self.path}")
        return 128 + signum

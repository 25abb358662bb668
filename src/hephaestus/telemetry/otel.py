"""OpenTelemetry traces for workflow runs (extra ``hephaestus-workflow[otel]``, opentelemetry-api).

```python
from hephaestus.telemetry.otel import OpenTelemetryTracing

tracing = OpenTelemetryTracing()  # the global tracer provider, or tracer_provider=...
tracing.attach()
```

Spans, all in one trace per run:

* ``hephaestus.start <workflow>``: a short span made when ``Hephaestus.start`` is called, a
  child of the caller's current span (or a new root). Its context is stored with the run
  (``Instance.trace_context``), so every process that later carries the run on finds it.
* ``hephaestus.workflow <workflow>``: a child of the start span covering the run while a
  process executes it. It ends when the run ends, or when a decision leaves the run waiting
  for an event or timer (``workflow.suspend``; ``hephaestus.suspended``); the process that
  resumes or recovers the run opens a new one under the same start span
  (``hephaestus.resumed``). A run that waits for a day is thus two spans of a few
  milliseconds each, not one span a day long that no exporter has seen.
* ``hephaestus.step <step>``: a child of the workflow span per step attempt. It is the
  current span while the step runs, so spans the step's code opens (HTTP clients...) nest in it.

Transitions and resumes are span events on the workflow span. Attributes are the event
metadata with plain values, prefixed ``hephaestus.`` (instance id, workflow, tags...).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from hephaestus.telemetry import _bus

if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextvars import Token

    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.util.types import AttributeValue

    from hephaestus._core.instance import ErrorInfo

__all__ = ["OpenTelemetryTracing"]

_PLAIN = (str, bool, int, float)
_SKIPPED = frozenset({"error", "trace_context", "targets"})
_SUSPEND = "hephaestus.workflow.suspend"
_WORKFLOW_END = {
    "hephaestus.workflow.stop": "completed",
    "hephaestus.workflow.exception": "failed",
    "hephaestus.workflow.cancel": "cancelled",
}


def _attributes(meta: Mapping[str, Any]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for key, value in meta.items():
        if key in _SKIPPED or value is None:
            continue
        if isinstance(value, _PLAIN):
            out[f"hephaestus.{key}"] = value
        elif isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
            out[f"hephaestus.{key}"] = [str(v) for v in value]
    return out


def _record_error(span: trace.Span, error: ErrorInfo | None) -> None:
    if error is None:
        span.set_status(Status(StatusCode.ERROR))
        return
    span.set_status(Status(StatusCode.ERROR, error.message))
    attributes: dict[str, AttributeValue] = {
        "exception.type": error.type or error.kind,
        "exception.message": error.message,
    }
    if error.traceback:
        attributes["exception.stacktrace"] = error.traceback
    span.add_event("exception", attributes)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


class _Attempt:
    """A step attempt's span, made current in the task that runs the step."""

    __slots__ = ("span", "task", "token")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.task = _current_task()
        # The runner emits step.start in the task that then runs the step (a sync step's
        # thread gets a copy of its context), so spans the step's own code opens are children.
        self.token: Token[otel_context.Context] | None = (
            None if self.task is None else otel_context.attach(trace.set_span_in_context(span))
        )

    def end(self, **attributes: AttributeValue) -> None:
        if self.token is not None and self.task is _current_task():
            otel_context.detach(self.token)
        self.token = None
        if attributes:
            self.span.set_attributes(attributes)
        self.span.end()


class _Run:
    __slots__ = ("steps", "workflow")

    def __init__(self, workflow: trace.Span) -> None:
        self.workflow = workflow
        self.steps: dict[str, _Attempt] = {}


class OpenTelemetryTracing:
    """Turns telemetry events into OpenTelemetry spans; ``attach`` to start, ``detach`` to stop.

    ``tracer_provider`` defaults to the global one; ``propagator`` (how the start span's context
    is stored and read back) to the global ``opentelemetry.propagate`` one (W3C trace context
    and baggage unless configured otherwise).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        handler_id: str = "hephaestus-otel",
    ) -> None:
        self._tracer = trace.get_tracer("hephaestus", tracer_provider=tracer_provider)
        self._propagator = propagator
        self.handler_id = handler_id
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def attach(self) -> None:
        """Make spans for every run, and capture trace context when runs are started."""
        _bus.attach(self.handler_id, _bus.EVENTS, self)
        _bus.set_context_injector(self.inject)

    def detach(self) -> bool:
        """Stop; spans still open are ended (``hephaestus.interrupted``). Returns if attached."""
        attached = _bus.detach(self.handler_id)
        previous = _bus.set_context_injector(None)
        if previous is not None and previous != self.inject:
            _bus.set_context_injector(previous)  # someone else's: leave it installed
        with self._lock:
            runs, self._runs = self._runs, {}
        for run in runs.values():
            for attempt in run.steps.values():
                attempt.end(**{"hephaestus.interrupted": True})
            run.workflow.set_attribute("hephaestus.interrupted", True)
            run.workflow.end()
        return attached

    # -- trace context ----------------------------------------------------------------------

    def inject(self, workflow: str, instance_id: str) -> dict[str, str]:
        """Start and end the run's start span; return its context as headers to store."""
        span = self._tracer.start_span(
            f"hephaestus.start {workflow}",
            attributes={"hephaestus.workflow": workflow, "hephaestus.instance_id": instance_id},
        )
        carrier: dict[str, str] = {}
        context = trace.set_span_in_context(span)
        if self._propagator is None:
            propagate.inject(carrier, context=context)
        else:
            self._propagator.inject(carrier, context=context)
        span.end()
        return carrier

    def _parent(self, meta: Mapping[str, Any]) -> Any:
        carrier = dict(meta.get("trace_context") or {})
        if self._propagator is None:
            return propagate.extract(carrier)
        return self._propagator.extract(carrier)

    # -- the handler ------------------------------------------------------------------------

    def __call__(self, event: str, m: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        run_id = str(meta.get("run_id"))
        with self._lock:
            run = self._runs.get(run_id)
            if run is None and event == _SUSPEND:
                return  # nothing of this run ran here since it last slept: no span to end
            if run is None:
                resumed = event != "hephaestus.workflow.start"
                span = self._tracer.start_span(
                    f"hephaestus.workflow {meta.get('workflow')}",
                    context=self._parent(meta),
                    attributes=_attributes(meta) | {"hephaestus.resumed": resumed},
                )
                run = self._runs[run_id] = _Run(span)
            if event in _WORKFLOW_END or event == _SUSPEND:
                del self._runs[run_id]
        self._handle(run, event, m, meta)

    def _handle(
        self, run: _Run, event: str, m: Mapping[str, float], meta: Mapping[str, Any]
    ) -> None:
        workflow = run.workflow
        step = str(meta.get("step"))
        match event:
            case "hephaestus.step.start":
                previous = run.steps.pop(step, None)
                if previous is not None:  # an attempt whose end we never saw (recovery)
                    previous.end()
                run.steps[step] = _Attempt(
                    self._tracer.start_span(
                        f"hephaestus.step {step}",
                        context=trace.set_span_in_context(workflow),
                        attributes=_attributes(meta),
                    )
                )
            case "hephaestus.step.stop" | "hephaestus.step.exception" | "hephaestus.step.async":
                attempt = run.steps.pop(step, None)
                if attempt is None:
                    return
                attempt.span.set_attributes(_attributes(meta))
                if event == "hephaestus.step.exception":
                    _record_error(attempt.span, meta.get("error"))
                attempt.end()
            case "hephaestus.workflow.suspend":
                for attempt in run.steps.values():  # none in practice: the run waits
                    attempt.end()
                run.steps.clear()
                workflow.set_attribute("hephaestus.suspended", True)
                workflow.set_attribute(
                    "hephaestus.waiting_steps", [str(s) for s in meta.get("waiting_steps", ())]
                )
                workflow.end()
            case "hephaestus.workflow.transition":
                workflow.add_event(
                    "hephaestus.transition",
                    {
                        "hephaestus.from_step": str(meta.get("from_step")),
                        "hephaestus.event": str(meta.get("event")),
                        "hephaestus.targets": [str(t) for t in meta.get("targets", ())],
                    },
                )
            case "hephaestus.step.resume":
                workflow.add_event(
                    "hephaestus.step.resume",
                    {
                        "hephaestus.step": step,
                        "hephaestus.event": str(meta.get("event")),
                        "hephaestus.source": str(meta.get("source")),
                        "hephaestus.wait_duration": float(m.get("wait_duration", 0.0)),
                    },
                )
            case _ if event in _WORKFLOW_END:
                for attempt in run.steps.values():
                    attempt.end(**{"hephaestus.aborted": True})
                run.steps.clear()
                workflow.set_attribute("hephaestus.status", _WORKFLOW_END[event])
                if event == "hephaestus.workflow.exception":
                    _record_error(workflow, meta.get("error"))
                workflow.end()

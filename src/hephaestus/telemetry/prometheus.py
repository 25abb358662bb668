"""Prometheus metrics for workflow runs and steps (extra ``hephaestus-workflow[prometheus]``).

```python
from prometheus_client import CollectorRegistry, make_asgi_app
from hephaestus.telemetry.prometheus import PrometheusMetrics

registry = CollectorRegistry()
metrics = PrometheusMetrics(registry=registry)
metrics.attach()
app = make_asgi_app(registry=registry)  # mount at /metrics
# or: prometheus_client.start_http_server(9100, registry=registry)
```

Labels are bounded by design: ``workflow``, ``step``, ``outcome``, ``source`` and, opt-in, the
workflow's ``tags`` and chosen metadata keys. Instance ids never become labels. The gauges
count what this process has seen: a run recovered while it waits joins ``runs_active`` when it
next emits an event.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from hephaestus.errors import InvalidArgumentError
from hephaestus.telemetry import _bus

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

__all__ = ["DEFAULT_BUCKETS", "PrometheusMetrics", "Scope"]

Scope = Literal["workflow", "step"]

DEFAULT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0)
"""Histogram buckets in seconds: steps take milliseconds, runs can wait for hours."""

_WORKFLOW_EVENTS = (
    "hephaestus.workflow.start",
    "hephaestus.workflow.stop",
    "hephaestus.workflow.exception",
    "hephaestus.workflow.cancel",
    "hephaestus.step.start",  # a recovered run shows up here first
    "hephaestus.step.resume",
)
_STEP_EVENTS = (
    "hephaestus.step.stop",
    "hephaestus.step.exception",
    "hephaestus.step.async",
    "hephaestus.step.resume",
    "hephaestus.workflow.stop",
    "hephaestus.workflow.exception",
    "hephaestus.workflow.cancel",
)
_FINISHED = {
    "hephaestus.workflow.stop": "completed",
    "hephaestus.workflow.exception": "failed",
    "hephaestus.workflow.cancel": "cancelled",
}
_BUILT_IN_LABELS = frozenset({"workflow", "step", "outcome", "source", "kind", "tags"})


class PrometheusMetrics:
    """Counters, histograms and gauges fed by telemetry events.

    ``scope`` picks the families (``"workflow"``, ``"step"``). ``tags_label`` adds a ``tags``
    label (the workflow's tags, comma-joined); ``metadata_labels`` adds one label per named
    metadata key. Name only keys whose values form a small, fixed set: every distinct value
    is a new time series. ``registry`` defaults to ``prometheus_client.REGISTRY``.

    Workflow scope: ``{ns}_runs_started_total{workflow}``,
    ``{ns}_runs_finished_total{workflow,outcome}``, ``{ns}_run_duration_seconds{workflow,outcome}``,
    ``{ns}_runs_active{workflow}``. Step scope: ``{ns}_steps_total{workflow,step,outcome}``
    (completed, retrying, failed, waiting), ``{ns}_step_duration_seconds{workflow,step,outcome}``,
    ``{ns}_step_failures_total{workflow,step,kind}`` (exception, error, timeout...),
    ``{ns}_steps_waiting{workflow,step}``, ``{ns}_step_wait_seconds{workflow,step,source}``.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        scope: Collection[Scope] = ("workflow", "step"),
        namespace: str = "hephaestus",
        tags_label: bool = False,
        metadata_labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        handler_id: str = "hephaestus-prometheus",
    ) -> None:
        unknown = set(scope) - {"workflow", "step"}
        if unknown or not scope:
            raise InvalidArgumentError(
                f"scope must name 'workflow' and/or 'step', got {sorted(scope)}"
            )
        clash = _BUILT_IN_LABELS & set(metadata_labels)
        if clash:
            raise InvalidArgumentError(
                f"metadata_labels may not reuse built-in labels {sorted(clash)}"
            )
        self.registry = registry if registry is not None else REGISTRY
        self.scope = frozenset(scope)
        self.handler_id = handler_id
        self._tags = tags_label
        self._keys = tuple(metadata_labels)
        extra = (("tags",) if tags_label else ()) + self._keys
        reg = self.registry
        b = tuple(buckets)
        self._lock = threading.Lock()
        self._active: dict[str, tuple[str, ...]] = {}
        self._waiting: dict[str, dict[str, tuple[str, ...]]] = {}
        if "workflow" in self.scope:
            labels = ("workflow", *extra)
            with_outcome = ("workflow", "outcome", *extra)
            self.runs_started = Counter(
                f"{namespace}_runs_started_total", "Workflow runs started.", labels, registry=reg
            )
            self.runs_finished = Counter(
                f"{namespace}_runs_finished_total",
                "Workflow runs finished, by outcome (completed, failed, cancelled).",
                with_outcome,
                registry=reg,
            )
            self.run_duration = Histogram(
                f"{namespace}_run_duration_seconds",
                "Time from a run's creation to its end, by outcome.",
                with_outcome,
                buckets=b,
                registry=reg,
            )
            self.runs_active = Gauge(
                f"{namespace}_runs_active",
                "Runs started or carried on by this process that have not finished.",
                labels,
                registry=reg,
            )
        if "step" in self.scope:
            step_labels = ("workflow", "step", *extra)
            self.steps = Counter(
                f"{namespace}_steps_total",
                "Step attempts ended, by outcome (completed, retrying, failed, waiting).",
                ("workflow", "step", "outcome", *extra),
                registry=reg,
            )
            self.step_duration = Histogram(
                f"{namespace}_step_duration_seconds",
                "Execution time of a step attempt, by outcome.",
                ("workflow", "step", "outcome", *extra),
                buckets=b,
                registry=reg,
            )
            self.step_failures = Counter(
                f"{namespace}_step_failures_total",
                "Failed step attempts (retried or not), by failure kind (exception, error, "
                "timeout, invalid_result...).",
                ("workflow", "step", "kind", *extra),
                registry=reg,
            )
            self.steps_waiting = Gauge(
                f"{namespace}_steps_waiting",
                "Steps waiting for an event or a timer (seen waiting by this process).",
                step_labels,
                registry=reg,
            )
            self.step_wait = Histogram(
                f"{namespace}_step_wait_seconds",
                "How long a step waited before it was resumed, by source "
                "(external, timer, scheduled).",
                ("workflow", "step", "source", *extra),
                buckets=b,
                registry=reg,
            )

    # -- attach/detach ----------------------------------------------------------------------

    def attach(self) -> None:
        """Start recording; raises ``ValueError`` if ``handler_id`` is already attached."""
        events: set[str] = set()
        if "workflow" in self.scope:
            events.update(_WORKFLOW_EVENTS)
        if "step" in self.scope:
            events.update(_STEP_EVENTS)
        _bus.attach(self.handler_id, events, self)

    def detach(self) -> bool:
        """Stop recording (the metrics keep their values); returns whether it was attached."""
        return _bus.detach(self.handler_id)

    # -- the handler ------------------------------------------------------------------------

    def _extra(self, meta: Mapping[str, Any]) -> tuple[str, ...]:
        values: list[str] = []
        if self._tags:
            values.append(",".join(meta.get("tags") or ()))
        values.extend("" if meta.get(key) is None else str(meta[key]) for key in self._keys)
        return tuple(values)

    def __call__(self, event: str, m: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        workflow = str(meta.get("workflow"))
        extra = self._extra(meta)
        run_id = str(meta.get("run_id"))
        with self._lock:
            if "workflow" in self.scope:
                self._record_workflow(event, m=m, run_id=run_id, workflow=workflow, extra=extra)
            if "step" in self.scope:
                self._record_step(
                    event, m=m, meta=meta, run_id=run_id, workflow=workflow, extra=extra
                )

    def _record_workflow(
        self,
        event: str,
        *,
        m: Mapping[str, float],
        run_id: str,
        workflow: str,
        extra: tuple[str, ...],
    ) -> None:
        outcome = _FINISHED.get(event)
        if outcome is not None:
            self.runs_finished.labels(workflow, outcome, *extra).inc()
            self.run_duration.labels(workflow, outcome, *extra).observe(m.get("duration", 0.0))
            labels = self._active.pop(run_id, None)
            if labels is not None:
                self.runs_active.labels(*labels).dec()
            return
        if event == "hephaestus.workflow.start":
            self.runs_started.labels(workflow, *extra).inc()
        elif event not in _WORKFLOW_EVENTS:
            return
        if run_id not in self._active:
            self._active[run_id] = (workflow, *extra)
            self.runs_active.labels(workflow, *extra).inc()

    def _record_step(
        self,
        event: str,
        *,
        m: Mapping[str, float],
        meta: Mapping[str, Any],
        run_id: str,
        workflow: str,
        extra: tuple[str, ...],
    ) -> None:
        if event in _FINISHED:
            for labels in self._waiting.pop(run_id, {}).values():
                self.steps_waiting.labels(*labels).dec()
            return
        step = str(meta.get("step"))
        if event == "hephaestus.step.resume":
            waiting = self._waiting.get(run_id)
            if waiting is not None and step in waiting:
                self.steps_waiting.labels(*waiting.pop(step)).dec()
            source = str(meta.get("source"))
            wait = m.get("wait_duration", 0.0)
            self.step_wait.labels(workflow, step, source, *extra).observe(wait)
            return
        if event == "hephaestus.step.stop":
            outcome = "completed"
        elif event == "hephaestus.step.async":
            outcome = "waiting"
            labels = (workflow, step, *extra)
            if step not in self._waiting.setdefault(run_id, {}):
                self._waiting[run_id][step] = labels
                self.steps_waiting.labels(*labels).inc()
        elif event == "hephaestus.step.exception":
            outcome = "retrying" if meta.get("will_retry") else "failed"
            kind = str(meta.get("kind") or "exception")
            self.step_failures.labels(workflow, step, kind, *extra).inc()
        else:
            return
        self.steps.labels(workflow, step, outcome, *extra).inc()
        self.step_duration.labels(workflow, step, outcome, *extra).observe(m.get("duration", 0.0))

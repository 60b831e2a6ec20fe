"""The dispatcher's Prometheus histograms: how long jobs and their steps take.

They are observed where the dispatcher learns of an end: a worker's ``StepFinished`` (the
duration the worker measured) and the moment a running job leaves the dispatcher's hands
(:class:`~modelyard.jobs.running.Running`), whatever ended it. The app that owns the dispatcher
passes its own registry, so several apps in one process never share a series.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Histogram

from modelyard.protocol.events import StepFinished, WorkerEvent

# From a packed tenant's sub-second fit to a two-hour training run.
JOB_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
# Steps start at milliseconds: resolving a workflow or filtering a small file.
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200)


class JobMetrics:
    """``modelyard_job_duration_seconds{kind,outcome}`` and
    ``modelyard_job_step_duration_seconds{step}``, registered on ``registry`` (a private one
    when None: a dispatcher outside an app still observes, and nobody reads it)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.job_duration = Histogram(
            "modelyard_job_duration_seconds",
            "Seconds from a job's start on a worker to its end, by kind and outcome",
            ("kind", "outcome"), buckets=JOB_BUCKETS, registry=registry)
        self.step_duration = Histogram(
            "modelyard_job_step_duration_seconds",
            "Seconds a job's step took on its worker, by step",
            ("step",), buckets=STEP_BUCKETS, registry=registry)

    def job_ended(self, kind: str, outcome: str, seconds: float) -> None:
        self.job_duration.labels(kind, outcome).observe(seconds)

    def steps_finished(self, events: Iterable[WorkerEvent]) -> None:
        for event in events:
            if isinstance(event, StepFinished):
                self.step_duration.labels(event.name).observe(event.duration_s)

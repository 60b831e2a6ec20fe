"""``GET /metrics``: the app's Prometheus registry, in the text exposition format.

Each app has a registry of its own (:func:`make_registry`; several apps run in one process in
tests and benchmarks, so never the client's global default). Its metrics come from where they
happen: the dispatcher's job and step histograms (:mod:`modelyard.jobs.metrics`), serving's
latency and counters (:mod:`modelyard.serving.metrics`), the process's own (CPU, memory, file
descriptors, garbage collection), and the store's figures, read at scrape time by
:class:`StoreCollector`.

The store's figures (jobs by state, pipeline runs, trigger firings) are the database's, so
every server of one database reports the same ones: aggregate them across instances with
``max``, not ``sum``. They are read in one short transaction of GROUP BY queries and kept for
:data:`STORE_CACHE_SECONDS`, so a storm of scrapes costs the database one read a second.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from modelyard.jobs.counts import count_jobs_by_state
from modelyard.jobs.states import JobState
from modelyard.pipelines import store as pipeline_store
from modelyard.pipelines.states import RunState
from modelyard.triggers.scheduler import count_firings

STORE_CACHE_SECONDS = 1.0

router = APIRouter(tags=["metrics"])


@dataclasses.dataclass(frozen=True)
class StoreFigures:
    """What the database says at one moment."""

    jobs: dict[JobState, int]
    runs: dict[tuple[str, RunState], int]  # by (pipeline, state)
    newest_runs: dict[str, RunState]  # each pipeline's newest run's state
    firings: dict[tuple[str, str], int]  # runs started, by (pipeline, trigger)


def read_figures(session: Session) -> StoreFigures:
    """The store's figures, through the store functions the routes use too."""
    return StoreFigures(count_jobs_by_state(session), pipeline_store.count_runs(session),
                        pipeline_store.newest_run_states(session), count_firings(session))


class StoreCollector(Collector):
    """Jobs by state, queue depth, pipeline runs and trigger firings, read at scrape time and
    kept ``ttl`` seconds."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = STORE_CACHE_SECONDS
                 ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._lock = threading.Lock()  # concurrent scrapes wait for one read, not one each
        self._figures: StoreFigures | None = None
        self._read_at = 0.0

    def figures(self) -> StoreFigures:
        with self._lock:
            if self._figures is None or time.monotonic() - self._read_at >= self._ttl:
                with self._sessions() as session:
                    self._figures = read_figures(session)
                self._read_at = time.monotonic()
            return self._figures

    def collect(self) -> Iterator[Metric]:
        figures = self.figures()
        jobs = GaugeMetricFamily("modelyard_jobs", "Jobs in the store by state",
                                 labels=("state",))
        for job_state, count in figures.jobs.items():
            jobs.add_metric((job_state.value,), count)
        yield jobs
        yield GaugeMetricFamily("modelyard_queue_depth", "Jobs queued, waiting for a worker",
                                value=figures.jobs[JobState.queued])
        runs = GaugeMetricFamily("modelyard_pipeline_runs", "Pipeline runs by pipeline and "
                                 "state", labels=("pipeline", "state"))
        for (pipeline, state), count in sorted(figures.runs.items()):
            runs.add_metric((pipeline, state.value), count)
        yield runs
        failing = GaugeMetricFamily("modelyard_pipeline_failing", "1 when the pipeline's "
                                    "newest run failed, else 0", labels=("pipeline",))
        for pipeline, state in sorted(figures.newest_runs.items()):
            failing.add_metric((pipeline,), 1 if state is RunState.failed else 0)
        yield failing
        firings = CounterMetricFamily("modelyard_trigger_firings", "Pipeline runs started by "
                                      "a trigger, by pipeline and trigger name",
                                      labels=("pipeline", "trigger"))
        for (pipeline, trigger), count in sorted(figures.firings.items()):
            firings.add_metric((pipeline, trigger), count)
        yield firings


def make_registry(sessions: sessionmaker[Session], *, store: bool) -> CollectorRegistry:
    """A registry with the process's collectors and, if ``store`` (a training server, not a
    serving replica), the store's figures; the dispatcher and serving add theirs."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)  # read-only views of this process: safe to share
    if store:
        registry.register(StoreCollector(sessions))
    return registry


@router.get("/metrics", response_class=Response, responses={200: {
    "content": {CONTENT_TYPE_LATEST: {}},
    "description": "Prometheus text exposition format (see the README's Metrics section)"}})
def metrics(request: Request) -> Response:
    """Prometheus metrics of this server: jobs, steps, serving, pipelines and triggers."""
    # A plain def: FastAPI runs it on a worker thread, where the store's figures are read.
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

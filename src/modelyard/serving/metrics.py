"""Serving's Prometheus metrics: predict latency by model, and at scrape time the counters
``GET /serving/stats`` shows (rows, model cache, shadows, production log).

The latency histogram is observed once per answered request, with the model name of the
version that answered (a name from the registry, never one a refused request made up). The
rest are read from the service when Prometheus scrapes (:class:`ServingCollector`), so the
request path counts each figure once, in the counters the stats route already reads. A serving
replica (``modelyard serve``) exposes them too: they live here, not in the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from modelyard.serving.service import ServingService

# Serving answers in about a millisecond; the upper buckets catch cold loads and large requests.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class ServingMetrics:
    """The predict latency histogram, on ``registry`` (a private one when None)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.latency = Histogram(
            "modelyard_predict_latency_seconds",
            "Seconds from a predict request's parsed rows to its scores, by model",
            ("model",), buckets=LATENCY_BUCKETS, registry=self.registry)
        # Each model's child, so the request path skips labels()'s lock after its first call.
        self._children: dict[str, Any] = {}

    def observe(self, model: str, seconds: float) -> None:
        child = self._children.get(model)
        if child is None:
            child = self._children[model] = self.latency.labels(model)
        child.observe(seconds)


class ServingCollector(Collector):
    """The service's own counters and gauges, read at each scrape."""

    def __init__(self, service: ServingService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        counters = svc.counters
        shadows = svc.shadows
        log = svc.production_log
        yield from (
            _counter("modelyard_predicted_rows", "Rows scored by production versions",
                     counters.get("predicted_rows", 0)),
            _counter("modelyard_predict_calls", "Model predict calls (each scores one "
                     "micro-batch of one or more requests)", counters.get("predict_calls", 0)),
            _counter("modelyard_predict_failed_batches", "Micro-batches that failed and were "
                     "scored again request by request", counters.get("failed_batches", 0)),
            _counter("modelyard_model_cache_hits", "Predict requests whose production version "
                     "was already loaded", counters.get("cache_hits", 0)),
            _counter("modelyard_model_loads", "Versions loaded into the model cache",
                     svc.cache.loads),
            _counter("modelyard_model_evictions", "Versions evicted from the model cache to "
                     "stay within its memory budget", svc.cache.evictions),
            _gauge("modelyard_models_loaded", "Versions in the model cache", len(svc.cache)),
            _gauge("modelyard_model_cache_bytes", "Estimated resident bytes of the cached "
                   "versions", svc.cache.nbytes),
            _gauge("modelyard_model_cache_budget_bytes", "The model cache's memory budget "
                   "(--serving-memory-budget)", svc.cache.budget_bytes),
            _gauge("modelyard_serving_degraded_versions", "Production versions that cannot be "
                   "loaded, answered by an earlier version", len(svc.degraded.current())),
            _gauge("modelyard_shadow_backlog_rows", "Shadow rows waiting: queued for the "
                   "scorer, or scored and not yet written", shadows.queued_rows
                   + shadows.buffered),
            _counter("modelyard_shadow_scored_rows", "Shadow rows scored and written to the "
                     "shadow log", shadows.rows_scored),
            _counter("modelyard_shadow_dropped_rows", "Shadow rows refused because the "
                     "scorer's queue was full", shadows.dropped),
            _counter("modelyard_shadow_lost_rows", "Shadow rows lost with a scorer process "
                     "that died", shadows.lost),
            _counter("modelyard_shadow_errors", "Shadow scoring failures: a version that "
                     "failed to load or to score, or unreadable work", shadows.errors),
            _counter("modelyard_shadow_scorer_restarts", "Restarts of the shadow scorer "
                     "process", shadows.restarts),
            _counter("modelyard_production_log_rows", "Rows written to the production log",
                     log.logged),
            _gauge("modelyard_production_log_buffered_rows", "Rows in the production log's "
                   "buffer, not yet written", log.buffered),
            _counter("modelyard_production_log_dropped_rows", "Rows not logged because the "
                     "buffer was full (--log-buffer-rows)", log.dropped),
            _counter("modelyard_production_log_failed_rows", "Rows whose part of the "
                     "production log could not be written", log.failed),
            _counter("modelyard_production_log_sampled_out_rows", "Rows not logged by "
                     "--log-sample", counters.get("production_sampled_out", 0)),
        )


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)

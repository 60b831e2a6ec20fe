"""Online prediction: route a request to a version, load it once, batch concurrent calls, and
score shadow versions and write the production log off the request path.

Rows are checked against the answering version's training schema before they join a batch
(:mod:`modelyard.serving.schema`). When the production version cannot be loaded (corrupt bytes,
a missing file, a workflow that no longer imports) and an earlier version of the same (model,
tenant) was served by this process, that one answers instead: each answer says so
(``degraded``), ``/healthz`` lists it, and the registry's audit log records it once for the
version (:mod:`modelyard.serving.degraded`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import random
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from modelyard.artifacts import ArtifactStore
from modelyard.errors import ModelUnavailable, ModelyardError, NotFound, RequestError
from modelyard.experiments.outcomes import Outcome, add_outcomes
from modelyard.serving.batching import Batcher, Rows, single_threaded
from modelyard.serving.degraded import Degraded, DegradedTracker
from modelyard.serving.experiments import Assignment, Splitter
from modelyard.serving.explain import Explanation
from modelyard.serving.explainers import explain_rows
from modelyard.serving.loading import LoadedModel, ModelCache, VersionRef
from modelyard.serving.metrics import ServingCollector, ServingMetrics
from modelyard.serving.production_log import ProductionLog, Served
from modelyard.serving.report import ShadowReport, shadow_report
from modelyard.serving.routing import Route, Router
from modelyard.serving.shadow import ShadowScorer, ShadowWork
from modelyard.serving.shadow_log import ShadowLog
from modelyard.settings import Settings

log = logging.getLogger("modelyard.serving")
_CHECK_ON_LOOP = 20_000  # row values checked on the event loop (a few milliseconds at most)


class ServingService:
    """Serving in one process; its Prometheus metrics go on ``registry`` (the app's)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = ArtifactStore(settings.artifact_root)
        self.router = Router(sessions)
        self.experiments = Splitter(sessions)
        self.cache = ModelCache(self.store, settings.serving_memory_budget,
                                settings.workflow_modules, settings.workflow_packages)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelyard-predict")
        # Cold loads get their own thread, so they never queue ahead of hot predicts.
        self.load_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelyard-load")
        # Explanations cost many predictions: their own thread keeps them out of the pool that
        # scores the micro-batches.
        self.explain_pool = ThreadPoolExecutor(max_workers=1,
                                               thread_name_prefix="modelyard-explain")
        self.shadow_log = ShadowLog(settings.home)  # labels; shadow scores come from the scorer
        self.shadows = ShadowScorer(settings.home, settings.artifact_root,
                                    settings.serving_memory_budget, settings.workflow_modules,
                                    settings.workflow_packages)
        self.production_log = ProductionLog(settings.home, settings.log_buffer_rows)
        self.counters = {"predict_calls": 0, "predicted_rows": 0, "failed_batches": 0,
                         "production_sampled_out": 0, "cache_hits": 0}
        self._last_good: dict[tuple[str, str], VersionRef] = {}
        self._modules = len(sys.modules)
        self.degraded = DegradedTracker(sessions, self.router, self.load_pool, {
            settings.artifact_root: "<artifacts>", str(settings.home): "<home>"})
        self.metrics = ServingMetrics(registry)
        self.metrics.registry.register(ServingCollector(self))

    def start(self) -> None:
        self.router.start()
        self.experiments.start()
        self.shadows.start()
        self.production_log.start()

    def stop(self) -> None:
        self.router.stop()
        self.experiments.stop()
        self.shadows.stop()
        self.production_log.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.load_pool.shutdown(wait=False, cancel_futures=True)
        self.explain_pool.shutdown(wait=False, cancel_futures=True)

    async def _load(self, ref: VersionRef) -> LoadedModel:
        cached = self.cache.peek(ref)  # the fast path, no thread hop
        if cached is not None:
            return cached
        loaded = await asyncio.get_running_loop().run_in_executor(self.load_pool, self.cache.get,
                                                                  ref)
        if len(sys.modules) != self._modules:  # the model's unpickling imported libraries
            self._modules = len(sys.modules)
            gc.freeze()  # as startup's, kept out of the collector's full passes (api.app)
        return loaded

    def _batcher(self, loaded: LoadedModel) -> Batcher:
        if loaded.batcher is None:
            loaded.batcher = Batcher(single_threaded(loaded.predict), self.pool,
                                     counters=self.counters)
        batcher: Batcher = loaded.batcher
        return batcher

    async def predict(self, model_name: str, tenant: str | None, rows: Rows,
                      body_json: bytes | None = None, unit: str | None = None,
                      explain_top: int | None = None) -> dict[str, Any]:
        """Score ``rows`` with the tenant's production model (else its segment's, else the
        global one), or with the arm of a running experiment that ``unit`` (random if None)
        falls in. ``body_json``, the request body the rows were parsed from, if given, is
        what goes to the shadow scorer. With ``explain_top``, the answer's ``explanation``
        holds each row's largest feature contributions (:mod:`modelyard.serving.explain`).

        Raises:
            RequestError: more rows than ``--max-predict-rows``, or a row that does not fit the
                version's training schema (named by row and column), or an explanation the
                version cannot give.
            NotFound: no production version answers for the tenant.
            ModelUnavailable: production cannot be loaded and nothing served before answers.
        """
        started = time.perf_counter()
        cap = self.settings.max_predict_rows
        if len(rows) > cap:
            raise RequestError(
                f"rows: {len(rows):,} rows, over the limit of {cap:,} rows per predict request "
                "(--max-predict-rows, MODELYARD_MAX_PREDICT_ROWS); send them in several "
                "requests")
        try:
            route, answered = self.router.resolve(model_name, tenant)
        except NotFound:  # maybe promoted a moment ago: look at the registry once more
            # Resolved again even when this refresh finds nothing new: the poll thread may
            # have swapped in the table that has it since the first look.
            await asyncio.get_running_loop().run_in_executor(self.load_pool,
                                                             self.router.refresh)
            route, answered = self.router.resolve(model_name, tenant)
        arm = self.experiments.assign(model_name, answered, unit, rows)
        try:
            loaded, degraded, listed = await self._answer(route, arm, rows)
        except RequestError:  # the rows' fault, not the arm's
            raise
        except Exception:
            if arm is not None:  # an error of the arm's version: its guardrail counts it
                self.experiments.served(arm, None, time.time(),
                                        (time.perf_counter() - started) * 1e3, None)
            raise
        explanation = None
        if explain_top is not None:  # off the batches: ordinary requests never wait for it
            explanation = await self._explain(loaded, rows, explain_top)
        request_id = uuid.uuid4().hex
        at = time.time()
        if arm is not None:
            self.experiments.served(arm, request_id, at, (time.perf_counter() - started) * 1e3,
                                    listed)
        self._log(Served(request_id, at, tenant, answered, loaded.ref, loaded.schema, rows,
                         listed, arm.experiment_id if arm else None, arm.arm if arm else None))
        shadows = [s for s in route.shadows if s.key != loaded.ref.key]
        if shadows and (self.settings.shadow_sample >= 1.0
                        or random.random() < self.settings.shadow_sample):
            # Off the request path: the scorer process batches across requests.
            self.shadows.submit(ShadowWork(request_id, at, loaded.ref, tuple(shadows),
                                           body_json or list(rows), listed))
        answer: dict[str, Any] = {
            "request_id": request_id,
            "model_name": model_name,
            "tenant": tenant,
            "served_by_tenant": answered,
            "version": loaded.ref.version,
            "model_id": loaded.ref.model_id,
            "scores": listed,
            "degraded": degraded is not None,
            "experiment": arm.experiment_id if arm else None,
            "arm": arm.arm if arm else None,
        }
        if explanation is not None:
            answer["explanation"] = explanation.to_json()
        if degraded is not None:
            answer["wanted_version"] = degraded.wanted_version
            answer["degraded_reason"] = degraded.reason
        self.metrics.observe(loaded.ref.model_name, time.perf_counter() - started)
        return answer

    async def _answer(self, route: Route, arm: Assignment | None, rows: Rows
                      ) -> tuple[LoadedModel, Degraded | None, list[Any]]:
        """The version that answers (the arm's, else production), and its scores."""
        if arm is not None and arm.ref.key != route.production.key:
            loaded, degraded = await self._load(arm.ref), None
        else:
            loaded, degraded = await self._production(route)
        # Before the batch: bad rows fail their own request only. A large batch is checked off
        # the loop (a Python loop, so a thread lets /healthz and other requests in).
        if len(rows) * len(loaded.schema.columns) > _CHECK_ON_LOOP:
            await asyncio.to_thread(loaded.schema.check, rows)
        else:
            loaded.schema.check(rows)
        scores = await self._score(loaded, rows)
        # The answer's, and what the shadow scorer gets (cheap to pickle).
        return loaded, degraded, scores.tolist()

    def _log(self, served: Served) -> None:
        """Keep the request in the production log, or count it sampled out (``--log-sample``);
        the log's thread writes it."""
        sample = self.settings.log_sample
        if sample >= 1.0 or (sample > 0.0 and random.random() < sample):
            self.production_log.submit(served)
        else:
            self.counters["production_sampled_out"] += len(served.rows)

    async def _production(self, route: Route) -> tuple[LoadedModel, Degraded | None]:
        """The route's production version, loaded; else the version this process served before
        for the same (model, tenant), with the degraded state that says why."""
        ref = route.production
        key = (ref.model_name, ref.tenant)
        cached = self.cache.peek(ref)  # the hot path: loaded, nothing to decide
        if cached is not None:
            self.counters["cache_hits"] += 1
            self._last_good[key] = ref
            return cached, None
        reason = self.degraded.broken(ref)
        if reason is None:  # not known broken, or its retry is due
            try:
                loaded = await self._load(ref)
            except Exception as exc:  # corrupt, missing, or it cannot be unpickled or built
                reason = self.degraded.failed(ref, exc)
                log.error("refusing to serve %s v%s: %s: %s", ref.model_name, ref.version,
                          type(exc).__name__, exc)
            else:
                self.degraded.loaded(ref)
                self._last_good[key] = ref
                return loaded, None
        previous = self._last_good.get(key)
        if previous is None or previous.model_id == ref.model_id:
            self.degraded.serving(ref, None, reason)
            raise ModelUnavailable(f"version {ref.version} of {ref.model_name!r} cannot be "
                                   f"served ({reason}), and no earlier version was served here "
                                   "to answer instead; roll back or retrain it")
        loaded = await self._load(previous)  # verified again if it had been evicted
        return loaded, self.degraded.serving(ref, previous, reason)

    async def _score(self, loaded: LoadedModel, rows: Rows) -> Any:
        try:
            return await self._batcher(loaded).predict(rows)
        except ModelyardError:
            raise
        except Exception as exc:  # the model's own failure on rows that fit its schema
            log.exception("%s failed to score a request's rows", loaded.schema.label)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelyardError(
                f"{loaded.schema.label} failed to score these rows ({type(exc).__name__}: "
                f"{first[:300]}); they fit its training schema, so the model or its workflow "
                "fails on them: see the server log") from None

    async def _explain(self, loaded: LoadedModel, rows: Rows, top: int) -> Explanation:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.explain_pool, explain_rows, loaded, self.store, rows, top)
        except ModelyardError:
            raise
        except Exception as exc:  # the model or shap failed on rows the model scored
            log.exception("%s failed to explain a request's rows", loaded.schema.label)
            raise ModelyardError(
                f"{loaded.schema.label} scored these rows but could not explain them "
                f"({type(exc).__name__}: {str(exc).strip()[:300]}); send them without "
                "\"explain\", and see the server log") from None

    async def drain(self) -> None:
        """Wait until queued shadow work is scored and logged, and the production log's buffer
        is written (labels, reports, monitoring, tests)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.production_log.flush)
        await loop.run_in_executor(None, self.shadows.drain)
        await loop.run_in_executor(None, self.experiments.flush)

    def label_outcomes(self, labels: list[dict[str, Any]]) -> None:
        """Labels of requests that experiments' arms served, stored as their outcomes (labels
        of other requests are none of the experiments' business)."""
        at = dt.datetime.now(dt.UTC)
        outcomes = [Outcome(float(x["label"]), at, str(x["request_id"]), int(x.get("row") or 0))
                    for x in labels]
        with self.sessions() as session:
            try:
                add_outcomes(session, outcomes)
            except RequestError as exc:  # a label no reward of its experiment can be
                log.warning("labels not counted as experiment outcomes: %s", exc)

    async def shadow_report(self, model_name: str, threshold: float = 0.5,
                            tenant: str | None = None) -> ShadowReport:
        """The shadow report once everything served so far is scored and written (the
        ``shadow-report`` route and the web UI's page)."""
        await self.drain()
        return await asyncio.get_running_loop().run_in_executor(
            None, shadow_report, self.settings.home, model_name, threshold, tenant)

    def stats(self) -> dict[str, Any]:
        return {
            "routes": self.router.size,
            "models_loaded": len(self.cache),
            "loaded_bytes": self.cache.nbytes,
            "memory_budget_bytes": self.cache.budget_bytes,
            "loads": self.cache.loads,
            "evictions": self.cache.evictions,
            **self.counters,
            # Shadow rows, once per shadow version; each row in one of rows (written to the
            # log), buffered, queue, dropped or lost (see modelyard.serving.shadow).
            "shadow_rows": self.shadows.rows_scored,
            "shadow_buffered": self.shadows.buffered,
            "shadow_queue": self.shadows.queued_rows,
            "shadow_errors": self.shadows.errors,
            "shadow_dropped": self.shadows.dropped,
            "shadow_lost": self.shadows.lost,
            "shadow_scorer_pid": self.shadows.pid,
            "shadow_scorer_restarts": self.shadows.restarts,
            # Production log rows (see modelyard.serving.production_log): written, buffered,
            # dropped (the buffer was full), failed (a part could not be written); sampled out
            # (--log-sample) is among the counters above.
            "production_logged": self.production_log.logged,
            "production_buffered": self.production_log.buffered,
            "production_dropped": self.production_log.dropped,
            "production_failed": self.production_log.failed,
            "degraded": [d.public() for d in self.degraded.current()],
        }

"""Online prediction: route a request to a version, load it once, batch concurrent calls, and
score shadow versions off the request path."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from modelyard.artifacts import ArtifactStore
from modelyard.errors import ArtifactError, ModelUnavailable, NotFound
from modelyard.serving.batching import Batcher, Rows, check_rows, single_threaded
from modelyard.serving.loading import LoadedModel, ModelCache, VersionRef
from modelyard.serving.routing import Router
from modelyard.serving.shadow import ShadowScorer, ShadowWork
from modelyard.serving.shadow_log import ShadowLog
from modelyard.settings import Settings

log = logging.getLogger("modelyard.serving")


class ServingService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.store = ArtifactStore(settings.artifact_root)
        self.router = Router(sessions)
        self.cache = ModelCache(self.store, settings.serving_memory_budget,
                                settings.workflow_modules, settings.workflow_packages)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelyard-predict")
        # Cold loads get their own thread, so they never queue ahead of hot predicts.
        self.load_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelyard-load")
        self.shadow_log = ShadowLog(settings.home)  # labels; shadow scores come from the scorer
        self.shadows = ShadowScorer(settings.home, settings.artifact_root,
                                    settings.serving_memory_budget, settings.workflow_modules,
                                    settings.workflow_packages)
        self.counters = {"predict_calls": 0, "predicted_rows": 0}
        self._last_good: dict[tuple[str, str], VersionRef] = {}

    def start(self) -> None:
        self.router.start()
        self.shadows.start()

    def stop(self) -> None:
        self.router.stop()
        self.shadows.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.load_pool.shutdown(wait=False, cancel_futures=True)

    async def _load(self, ref: VersionRef) -> LoadedModel:
        cached = self.cache.peek(ref.model_id)  # the fast path, no thread hop
        if cached is not None:
            return cached
        return await asyncio.get_running_loop().run_in_executor(self.load_pool, self.cache.get,
                                                                ref)

    def _batcher(self, loaded: LoadedModel) -> Batcher:
        if loaded.batcher is None:
            loaded.batcher = Batcher(single_threaded(loaded.predict), self.pool,
                                     counters=self.counters)
        batcher: Batcher = loaded.batcher
        return batcher

    async def predict(self, model_name: str, tenant: str | None, rows: Rows,
                      body_json: bytes | None = None) -> dict[str, Any]:
        """Score ``rows`` with the tenant's production model (else its segment's, else the
        global one). ``body_json``, the request body the rows were parsed from, if given,
        is what goes to the shadow scorer."""
        try:
            route, answered = self.router.resolve(model_name, tenant)
        except NotFound:  # maybe promoted a moment ago: look at the registry once more
            if not await asyncio.get_running_loop().run_in_executor(self.load_pool,
                                                                     self.router.refresh):
                raise
            route, answered = self.router.resolve(model_name, tenant)
        key = (model_name, answered)
        try:
            loaded = await self._load(route.production)
            self._last_good[key] = route.production
        except ArtifactError as exc:
            log.error("refusing to serve %s v%s: %s", model_name, route.production.version, exc)
            previous = self._last_good.get(key)
            if previous is None:
                raise ModelUnavailable(f"version {route.production.version} of {model_name!r} "
                                       f"cannot be served: {exc}") from None
            loaded = await self._load(previous)  # verified again if it had been evicted
        check_rows(rows, loaded.ref.features)
        scores = await self._batcher(loaded).predict(rows)
        request_id = uuid.uuid4().hex
        listed = scores.tolist()  # the answer's, and what the shadow scorer gets (cheap to pickle)
        shadows = [s for s in route.shadows if s.model_id != loaded.ref.model_id]
        if shadows and (self.settings.shadow_sample >= 1.0
                        or random.random() < self.settings.shadow_sample):
            # Off the request path: the scorer process batches across requests.
            self.shadows.submit(ShadowWork(request_id, time.time(), loaded.ref, tuple(shadows),
                                           body_json or list(rows), listed))
        return {
            "request_id": request_id,
            "model_name": model_name,
            "tenant": tenant,
            "served_by_tenant": answered,
            "version": loaded.ref.version,
            "model_id": loaded.ref.model_id,
            "scores": listed,
        }

    async def drain(self) -> None:
        """Wait until queued shadow work is scored and logged (tests, reports, shutdown)."""
        await asyncio.get_running_loop().run_in_executor(None, self.shadows.drain)

    def stats(self) -> dict[str, Any]:
        return {
            "routes": self.router.size,
            "models_loaded": len(self.cache),
            "loaded_bytes": self.cache.nbytes,
            "memory_budget_bytes": self.cache.budget_bytes,
            "loads": self.cache.loads,
            "evictions": self.cache.evictions,
            **self.counters,
            "shadow_rows": self.shadows.rows_scored,
            "shadow_queue": self.shadows.queued_rows,
            "shadow_errors": self.shadows.errors,
            "shadow_dropped": self.shadows.dropped,
            "shadow_scorer_pid": self.shadows.pid,
            "shadow_scorer_restarts": self.shadows.restarts,
        }

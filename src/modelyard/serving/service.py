"""Online prediction: route a request to a version, load it once, batch concurrent calls, and
score shadow versions off the request path."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import ArtifactError, ModelyardError, NotFound, RequestError
from modelyard.runtime.artifacts import ArtifactStore
from modelyard.serving.batching import Batcher, Rows, single_threaded
from modelyard.serving.loading import LoadedModel, ModelCache, VersionRef
from modelyard.serving.routing import Router
from modelyard.serving.shadow_log import ShadowLog
from modelyard.settings import Settings

log = logging.getLogger("modelyard.serving")


class ModelUnavailable(ModelyardError):
    """The production model cannot be loaded and no earlier one is loaded to fall back on."""

    status_code = 503


class ServingService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.store = ArtifactStore(settings.artifact_root)
        self.router = Router(sessions)
        self.cache = ModelCache(self.store, settings.serving_memory_budget,
                                settings.workflow_modules)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelyard-predict")
        self.shadow_log = ShadowLog(settings.home)
        self._batchers: dict[str, Batcher] = {}
        self._last_good: dict[tuple[str, str], LoadedModel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = threading.Event()
        self.shadow_errors = 0

    def start(self) -> None:
        self.router.start()
        threading.Thread(target=self._flush_loop, name="modelyard-shadow-flush",
                         daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.router.stop()
        self.shadow_log.flush()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _flush_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.shadow_log.flush()
            except Exception:
                log.exception("shadow log flush failed; will retry")

    async def _load(self, ref: VersionRef) -> LoadedModel:
        cached = self.cache._models.get(ref.model_id)  # the fast path, no thread hop
        if cached is not None:
            return cached
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.cache.get, ref)

    def _batcher(self, loaded: LoadedModel) -> Batcher:
        batcher = self._batchers.get(loaded.ref.model_id)
        if batcher is None:
            if len(self._batchers) > 2 * len(self.cache) + 16:  # drop batchers of evicted models
                self._batchers = {k: b for k, b in self._batchers.items()
                                  if k in self.cache._models}
            batcher = Batcher(single_threaded(loaded.predict), loaded.ref.features, self.pool)
            self._batchers[loaded.ref.model_id] = batcher
        return batcher

    async def predict(self, model_name: str, tenant: str | None, rows: Rows) -> dict[str, Any]:
        """Score ``rows`` with the tenant's production model (else the global one)."""
        try:
            route, answered = self.router.resolve(model_name, tenant)
        except NotFound:  # maybe promoted a moment ago: look at the registry once more
            if not await asyncio.get_running_loop().run_in_executor(self.pool,
                                                                     self.router.refresh):
                raise
            route, answered = self.router.resolve(model_name, tenant)
        key = (model_name, answered)
        try:
            loaded = await self._load(route.production)
            self._last_good[key] = loaded
        except ArtifactError as exc:
            log.error("refusing to serve %s v%s: %s", model_name, route.production.version, exc)
            fallback = self._last_good.get(key)
            if fallback is None:
                raise ModelUnavailable(f"version {route.production.version} of {model_name!r} "
                                       f"cannot be served: {exc}") from None
            loaded = fallback
        _check_rows(rows, loaded.ref.features)
        scores = await self._batcher(loaded).predict(rows)
        request_id = uuid.uuid4().hex
        shadows = [s for s in route.shadows if s.model_id != loaded.ref.model_id]
        if shadows and (self.settings.shadow_sample >= 1.0
                        or random.random() < self.settings.shadow_sample):
            task = asyncio.get_running_loop().create_task(
                self._score_shadows(request_id, loaded.ref, shadows, rows, scores))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return {
            "request_id": request_id,
            "model_name": model_name,
            "tenant": tenant,
            "served_by_tenant": answered,
            "version": loaded.ref.version,
            "model_id": loaded.ref.model_id,
            "scores": scores.tolist(),
        }

    async def _score_shadows(self, request_id: str, production: VersionRef,
                             shadows: list[VersionRef], rows: Rows,
                             scores: np.ndarray[Any, Any]) -> None:
        at = dt.datetime.now(dt.UTC)
        for ref in shadows:
            try:
                loaded = await self._load(ref)
                _check_rows(rows, loaded.ref.features)
                shadow_scores = await self._batcher(loaded).predict(rows)
            except Exception:
                self.shadow_errors += 1
                log.exception("shadow version %s of %s failed", ref.version, ref.model_name)
                continue
            self.shadow_log.append([
                {"request_id": request_id, "row": i, "at": at, "model_name": ref.model_name,
                 "tenant": ref.tenant, "production_version": production.version,
                 "production_score": _scalar(scores[i]), "shadow_version": ref.version,
                 "shadow_score": _scalar(shadow_scores[i])}
                for i in range(len(rows))
            ])

    async def drain(self) -> None:
        """Wait for shadow scoring in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {
            "routes": self.router.size,
            "models_loaded": len(self.cache),
            "loaded_bytes": self.cache.nbytes,
            "memory_budget_bytes": self.cache.budget_bytes,
            "loads": self.cache.loads,
            "evictions": self.cache.evictions,
            "predict_calls": sum(b.calls for b in self._batchers.values()),
            "predicted_rows": sum(b.rows for b in self._batchers.values()),
            "shadow_tasks_in_flight": len(self._tasks),
            "shadow_errors": self.shadow_errors,
        }


def _scalar(value: Any) -> float:
    arr = np.asarray(value)
    return float(arr.reshape(-1)[-1]) if arr.ndim else float(arr)


def _check_rows(rows: Rows, features: tuple[str, ...]) -> None:
    for i, row in enumerate(rows):
        missing = [f for f in features if f not in row]
        if missing:
            raise RequestError(f"rows.{i}: missing feature column {missing[0]!r} (the model "
                               f"needs: {', '.join(features)})")

"""Online prediction: route a request to a version, load it once, batch concurrent calls, and
score shadow versions off the request path."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import ArtifactError, ModelyardError, NotFound, RequestError
from modelyard.runtime.artifacts import ArtifactStore
from modelyard.serving.batching import Batcher, Rows, single_threaded
from modelyard.serving.loading import LoadedModel, ModelCache, VersionRef
from modelyard.serving.routing import Router
from modelyard.serving.shadow_log import ShadowLog
from modelyard.settings import Settings

log = logging.getLogger("modelyard.serving")
SHADOW_QUEUE = 10_000  # pending requests for shadow scoring before new ones are dropped
SHADOW_WAIT_S = 0.2  # how long the shadow scorer lets a batch gather
SHADOW_MAX_ITEMS = 2_048


class ModelUnavailable(ModelyardError):
    """The production model cannot be loaded and no earlier one is loaded to fall back on."""

    status_code = 503


@dataclass
class _ShadowWork:
    request_id: str
    production: VersionRef
    shadows: list[VersionRef]
    rows: Rows
    scores: np.ndarray[Any, Any]


class ServingService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.store = ArtifactStore(settings.artifact_root)
        self.router = Router(sessions)
        self.cache = ModelCache(self.store, settings.serving_memory_budget,
                                settings.workflow_modules)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelyard-predict")
        # Cold loads get their own thread, so they never queue ahead of hot predicts.
        self.load_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelyard-load")
        self.shadow_log = ShadowLog(settings.home)
        self.counters = {"predict_calls": 0, "predicted_rows": 0, "shadow_rows": 0}
        self._last_good: dict[tuple[str, str], VersionRef] = {}
        self._shadow_queue: queue.Queue[_ShadowWork] = queue.Queue(maxsize=SHADOW_QUEUE)
        self._stop = threading.Event()
        self.shadow_errors = 0
        self.shadow_dropped = 0

    def start(self) -> None:
        self.router.start()
        threading.Thread(target=self._flush_loop, name="modelyard-shadow-flush",
                         daemon=True).start()
        threading.Thread(target=self._shadow_loop, name="modelyard-shadow",
                         daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.router.stop()
        self.shadow_log.flush()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.load_pool.shutdown(wait=False, cancel_futures=True)

    def _flush_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.shadow_log.flush()
            except Exception:
                log.exception("shadow log flush failed; will retry")

    async def _load(self, ref: VersionRef) -> LoadedModel:
        cached = self.cache.peek(ref.model_id)  # the fast path, no thread hop
        if cached is not None:
            return cached
        return await asyncio.get_running_loop().run_in_executor(self.load_pool, self.cache.get,
                                                                ref)

    def _batcher(self, loaded: LoadedModel) -> Batcher:
        if loaded.batcher is None:
            loaded.batcher = Batcher(single_threaded(loaded.predict), loaded.ref.features,
                                     self.pool, counters=self.counters)
        batcher: Batcher = loaded.batcher
        return batcher

    async def predict(self, model_name: str, tenant: str | None, rows: Rows) -> dict[str, Any]:
        """Score ``rows`` with the tenant's production model (else its segment's, else the
        global one)."""
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
        _check_rows(rows, loaded.ref.features)
        scores = await self._batcher(loaded).predict(rows)
        request_id = uuid.uuid4().hex
        shadows = [s for s in route.shadows if s.model_id != loaded.ref.model_id]
        if shadows and (self.settings.shadow_sample >= 1.0
                        or random.random() < self.settings.shadow_sample):
            try:  # off the request path: the scorer thread batches across requests
                self._shadow_queue.put_nowait(
                    _ShadowWork(request_id, loaded.ref, shadows, rows, scores))
            except queue.Full:
                self.shadow_dropped += 1
        return {
            "request_id": request_id,
            "model_name": model_name,
            "tenant": tenant,
            "served_by_tenant": answered,
            "version": loaded.ref.version,
            "model_id": loaded.ref.model_id,
            "scores": scores.tolist(),
        }

    def _shadow_loop(self) -> None:
        """Score queued shadow work in large batches, every so often, on one thread.

        Coalescing many requests into one predict call per shadow keeps the shadows' cost a
        small fraction of serving; when the queue is full new work is dropped and counted,
        never the requests.
        """
        while not self._stop.is_set():
            try:
                first = self._shadow_queue.get(timeout=0.5)
            except queue.Empty:
                continue
            time.sleep(SHADOW_WAIT_S)  # let a batch gather
            batch = [first]
            while len(batch) < SHADOW_MAX_ITEMS:
                try:
                    batch.append(self._shadow_queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._score_shadows(batch)
            except Exception:
                self.shadow_errors += 1
                log.exception("shadow scoring failed")
            finally:
                for _ in batch:
                    self._shadow_queue.task_done()

    def _score_shadows(self, batch: list[_ShadowWork]) -> None:
        at = dt.datetime.now(dt.UTC)
        by_shadow: dict[VersionRef, list[_ShadowWork]] = {}
        for work in batch:
            for ref in work.shadows:
                by_shadow.setdefault(ref, []).append(work)
        for ref, works in by_shadow.items():
            try:
                loaded = self.cache.get(ref)
                records = [row for w in works for row in w.rows]
                _check_rows(records, loaded.ref.features)
                frame = pd.DataFrame.from_records(records, columns=list(loaded.ref.features))
                shadow_scores = np.asarray(single_threaded(loaded.predict)(frame))
            except Exception:
                self.shadow_errors += 1
                log.exception("shadow version %s of %s failed", ref.version, ref.model_name)
                continue
            sizes = [len(w.rows) for w in works]
            self.counters["shadow_rows"] = self.counters.get("shadow_rows", 0) + len(records)
            self.shadow_log.append_columns({
                "request_id": [w.request_id for w, n in zip(works, sizes, strict=True)
                               for _ in range(n)],
                "row": [i for n in sizes for i in range(n)],
                "at": [at] * len(records),
                "model_name": [ref.model_name] * len(records),
                "tenant": [ref.tenant] * len(records),
                "production_version": [w.production.version for w, n in
                                       zip(works, sizes, strict=True) for _ in range(n)],
                "production_score": np.concatenate([_last_column(w.scores) for w in works]),
                "shadow_version": [ref.version] * len(records),
                "shadow_score": _last_column(shadow_scores),
            })

    async def drain(self) -> None:
        """Wait until queued shadow work is scored (tests, reports, shutdown)."""
        await asyncio.get_running_loop().run_in_executor(None, self._shadow_queue.join)

    def stats(self) -> dict[str, Any]:
        return {
            "routes": self.router.size,
            "models_loaded": len(self.cache),
            "loaded_bytes": self.cache.nbytes,
            "memory_budget_bytes": self.cache.budget_bytes,
            "loads": self.cache.loads,
            "evictions": self.cache.evictions,
            **self.counters,
            "shadow_queue": self._shadow_queue.qsize(),
            "shadow_errors": self.shadow_errors,
            "shadow_dropped": self.shadow_dropped,
        }


def _last_column(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """One score per row: the positive class of a probability matrix, else the scores."""
    arr = np.asarray(scores, dtype=float)
    column: np.ndarray[Any, Any] = arr.reshape(len(arr), -1)[:, -1]
    return column


def _check_rows(rows: Rows, features: tuple[str, ...]) -> None:
    for i, row in enumerate(rows):
        missing = [f for f in features if f not in row]
        if missing:
            raise RequestError(f"rows.{i}: missing feature column {missing[0]!r} (the model "
                               f"needs: {', '.join(features)})")

"""Load a registered model for serving: bytes verified against their sha256, the workflow that
trained it (for its ``predict``), kept in an LRU cache bounded by a memory budget."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelyard.artifacts import ArtifactStore
from modelyard.runtime.fastpath import accelerate
from modelyard.runtime.trained import load_trained
from modelyard.runtime.workflow import Workflow
from modelyard.serving.fastpath import Records, RecordsPredict, records_predictor
from modelyard.serving.schema import RowSchema, row_schema

log = logging.getLogger("modelyard.serving")
# Memory an unpickled model holds per byte of its pickle: the cache budgets resident size.
RESIDENT_FACTOR = 3.5
ACCELERATE_AFTER = 3  # predict calls before a model gets its verified fast path


@dataclass(frozen=True)
class VersionRef:
    """What serving needs to know of a registry version (a plain value, safe across threads)."""

    model_name: str
    tenant: str
    version: int
    model_id: str
    job_id: str | None
    features: tuple[str, ...]
    # Features whose training rows had missing values (None: not recorded for this version).
    missing_values: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        """What the model cache knows it by: its bytes and the job that trained them (whose
        request and workflow snapshot score them; one model's bytes may come from two jobs)."""
        return f"{self.model_id} {self.job_id}"


@dataclass
class LoadedModel:
    ref: VersionRef
    model: Any
    workflow: Workflow
    nbytes: int
    schema: RowSchema  # what its rows must look like, from its training data
    batcher: Any = None  # the serving layer's micro-batcher; goes when the model is evicted
    calls: int = 0
    fast: RecordsPredict | None = None
    accelerated: bool = False  # fast paths tried (once)
    explainer: Any = None  # serving.explainers' choice, made at its first explain request

    def predict(self, records: Records) -> np.ndarray[Any, Any]:
        """Scores of rows given as mappings with (at least) the model's features."""
        self.calls += 1
        if self.fast is not None:
            return self.fast(records)
        if self.calls >= ACCELERATE_AFTER and not self.accelerated:
            # Only models that are used: verifying scores probe rows both ways, which a cold
            # load of every tenant's model cannot afford.
            self.accelerated = True
            self._accelerate(records)
            if self.fast is not None:
                return self.fast(records)
        return self.predict_frame(pd.DataFrame.from_records(records, columns=self.ref.features))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        return np.asarray(self.workflow.predict(self.model, frame))

    def _accelerate(self, records: Records) -> None:
        name = f"{self.ref.model_name} v{self.ref.version}"
        if accelerate(self.model):
            log.info("%s: fast categorical path verified and enabled", name)
        self.fast = records_predictor(self.workflow, self.model, self.ref.features,
                                      self.predict_frame, records)
        if self.fast is not None:
            log.info("%s: rows scored without a DataFrame (verified equal)", name)


def load_model(store: ArtifactStore, ref: VersionRef,
               workflow_modules: tuple[str, ...] = (),
               workflow_packages: tuple[str, ...] = ()) -> LoadedModel:
    """Load a version (:func:`~modelyard.runtime.trained.load_trained`) with the schema its
    rows must fit.

    Raises:
        ArtifactError: the bytes do not match the model id (never served).
        NotFound: the model or its job's provenance is missing from the artefact store.
    """
    if not ref.job_id:
        raise LookupError(f"version {ref.version} of {ref.model_name!r} has no training request")
    trained = load_trained(store, ref.model_id, ref.job_id, workflow_modules, workflow_packages)
    schema = row_schema(f"version {ref.version} of {ref.model_name!r}", ref.features,
                        trained.column_types, ref.missing_values)
    return LoadedModel(ref=ref, model=trained.model, workflow=trained.workflow,
                       nbytes=int(trained.nbytes * RESIDENT_FACTOR), schema=schema)


class ModelCache:
    """Loaded models by :attr:`VersionRef.key`, least recently used evicted first once over the
    byte budget."""

    def __init__(self, store: ArtifactStore, budget_bytes: int,
                 workflow_modules: tuple[str, ...] = (),
                 workflow_packages: tuple[str, ...] = ()) -> None:
        self.store = store
        self.budget_bytes = budget_bytes
        self.workflow_modules = workflow_modules
        self.workflow_packages = workflow_packages
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0
        self.evictions = 0

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def peek(self, ref: VersionRef) -> LoadedModel | None:
        """The loaded model if cached (no load, no LRU update: lock-free for the hot path)."""
        return self._models.get(ref.key)

    def get(self, ref: VersionRef) -> LoadedModel:
        """The loaded model for ``ref`` (loading it once, however many threads ask at once)."""
        with self._lock:
            found = self._models.get(ref.key)
            if found is not None:
                self._models.move_to_end(ref.key)
                return found
            key_lock = self._loading.setdefault(ref.key, threading.Lock())
        with key_lock:
            with self._lock:
                found = self._models.get(ref.key)
            if found is not None:
                return found
            loaded = load_model(self.store, ref, self.workflow_modules,
                                self.workflow_packages)
            with self._lock:
                self._models[ref.key] = loaded
                self.loads += 1
                self._loading.pop(ref.key, None)
                self._evict(keep=ref.key)
            return loaded

    def _evict(self, keep: str) -> None:
        total = sum(m.nbytes for m in self._models.values())
        while total > self.budget_bytes and len(self._models) > 1:
            oldest = next(iter(self._models))
            if oldest == keep:
                self._models.move_to_end(oldest)
                continue
            total -= self._models.pop(oldest).nbytes
            self.evictions += 1

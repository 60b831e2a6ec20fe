"""The serving model cache: verified loads, one load per model under concurrency, LRU eviction
within the memory budget."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.artifacts import ArtifactStore
from modelyard.errors import ArtifactError
from modelyard.protocol.events import JobFinished, WorkerSpec
from modelyard.runtime.training import execute
from modelyard.serving.loading import RESIDENT_FACTOR, ModelCache, VersionRef
from modelyard.synthetic import example_request, write_payments

FEATURES = ("charge_amount", "card_age_days", "hour_of_day")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArtifactStore, str, list[str]]:
    """A real job's artefacts plus five distinct models stored beside them."""
    root = tmp_path_factory.mktemp("cache")
    write_payments(root / "data" / "p.parquet", rows=3_000, merchants=30)
    logistic = {"estimator": "sklearn.linear_model.LogisticRegression"}
    request = example_request("p.parquet", workflow_name="sklearn",
                              classifier_features=list(FEATURES), custom_params=logistic)
    events: list[object] = []
    execute(WorkerSpec("job1", request, (str(root / "data"),), str(root / "artifacts")),
            events.append)
    assert isinstance(events[-1], JobFinished)
    store = ArtifactStore(str(root / "artifacts"))
    x = [[i, i % 7, i % 24] for i in range(200)]
    y = [i % 2 for i in range(200)]
    ids = [store.put_bytes(pickle.dumps(LogisticRegression(C=c).fit(x, y)))
           for c in (0.1, 0.2, 0.3, 0.4, 0.5)]
    return store, "job1", ids


def _ref(model_id: str, n: int) -> VersionRef:
    return VersionRef("m", f"t{n}", 1, model_id, "job1", FEATURES)


def test_lru_stays_within_the_memory_budget(trained: tuple[ArtifactStore, str, list[str]]
                                            ) -> None:
    store, _, ids = trained
    size = int(len(store.get_bytes(ids[0])) * RESIDENT_FACTOR)  # budgeted as resident size
    cache = ModelCache(store, budget_bytes=int(size * 2.5))
    for n, model_id in enumerate(ids):
        cache.get(_ref(model_id, n))
        assert cache.nbytes <= cache.budget_bytes
    assert len(cache) == 2 and cache.loads == 5 and cache.evictions == 3
    cache.get(_ref(ids[-1], 4))  # cached: no load
    assert cache.loads == 5
    cache.get(_ref(ids[0], 0))  # evicted earlier: loaded again, the least recent one goes
    assert cache.loads == 6
    assert cache.peek(_ref(ids[-1], 4)) is not None and cache.peek(_ref(ids[-2], 3)) is None


def test_concurrent_requests_load_a_model_once(trained: tuple[ArtifactStore, str, list[str]]
                                               ) -> None:
    store, _, ids = trained
    cache = ModelCache(store, budget_bytes=10**9)
    threads = [threading.Thread(target=cache.get, args=(_ref(ids[1], 1),)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1


def test_tampered_bytes_are_never_loaded(trained: tuple[ArtifactStore, str, list[str]],
                                         tmp_path: Path) -> None:
    store, _, ids = trained
    path = Path(store.blob_path(ids[2]))
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-2] + b"!!")
        with pytest.raises(ArtifactError, match="is corrupt"):
            ModelCache(store, budget_bytes=10**9).get(_ref(ids[2], 2))
    finally:
        path.write_bytes(original)

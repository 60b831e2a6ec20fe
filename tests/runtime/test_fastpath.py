"""The boosted trees' categorical look-up changes speed, never scores."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from modelyard.artifacts import ArtifactStore
from modelyard.request import parse_request
from modelyard.runtime import fastpath
from modelyard.runtime.builtin import SklearnWorkflow
from modelyard.runtime.fastpath import accelerate
from modelyard.synthetic import example_request, payments_table

from .conftest import RunWorker
from .test_training import finished, with_train


def _fit(rows: int = 5_000, seed: int = 0, **params: Any) -> tuple[Any, SklearnWorkflow, Any]:
    frame = payments_table(rows=rows, merchants=50, seed=seed).to_pandas()
    workflow = SklearnWorkflow(parse_request(example_request("p.parquet", custom_params=params)))
    return workflow.train(frame, frame), workflow, frame


def _awkward_rows(workflow: SklearnWorkflow, frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[workflow.features].sample(500, random_state=0).reset_index(drop=True)
    rows.loc[:9, "charge_type"] = "never seen"  # unseen category
    rows.loc[10:19, "charge_country"] = None  # missing category
    rows.loc[20:29, "charge_amount"] = np.nan  # missing number
    return rows


def test_boosted_trees_with_categories_score_identically_on_the_fast_path() -> None:
    model, workflow, frame = _fit(max_iter=20)
    fast = pickle.loads(pickle.dumps(model))
    assert accelerate(fast)
    rows = _awkward_rows(workflow, frame)
    np.testing.assert_array_equal(model.predict_proba(rows), fast.predict_proba(rows))
    assert type(fast.steps[-1][1]._preprocessor).__name__ == "CategoricalLookup"


def test_a_second_model_of_a_verified_layout_scores_identically_without_a_probe() -> None:
    first, _, _ = _fit(max_iter=5)
    assert accelerate(pickle.loads(pickle.dumps(first)))  # verifies the layout
    # Other data, other categories seen (fewer merchants' countries and types): only the
    # per-model checks run now, and the scores must still be exactly the model's own.
    model, workflow, frame = _fit(rows=300, seed=7, max_iter=20)
    assert fastpath._verified_layouts
    fast = pickle.loads(pickle.dumps(model))
    assert accelerate(fast)
    rows = _awkward_rows(workflow, payments_table(rows=2_000, merchants=50, seed=3).to_pandas())
    np.testing.assert_array_equal(model.predict_proba(rows), fast.predict_proba(rows))
    with pytest.raises(ValueError, match="fitted on 5 features"):
        fast.steps[-1][1]._preprocessor.transform(np.zeros((2, 4)))


def test_a_preprocessor_that_encodes_differently_is_left_untouched() -> None:
    model, _, _ = _fit(max_iter=5)
    accelerate(pickle.loads(pickle.dumps(model)))
    encoder = model.steps[-1][1]._preprocessor.named_transformers_["encoder"]
    encoder.unknown_value = -1  # unseen categories -> -1, not what the look-up gives
    before = pickle.dumps(model)
    assert not accelerate(model)
    assert pickle.dumps(model) == before


def test_a_model_fitted_on_named_columns_is_left_untouched() -> None:
    frame = pd.DataFrame({"a": np.arange(200) % 3, "b": np.linspace(0, 1, 200)})
    model = HistGradientBoostingClassifier(max_iter=3, categorical_features=["a"]).fit(
        frame, np.arange(200) % 2)
    assert not accelerate(model)  # the look-up could not check column names or order


def test_any_model_may_be_passed_in() -> None:
    class Stepped:  # a user's model that counts its training steps
        steps = 100

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(name)

    assert not accelerate(Stepped()) and not accelerate(Broken()) and not accelerate(None)


@pytest.mark.parametrize("estimator", ["sklearn.linear_model.LogisticRegression",
                                       "sklearn.ensemble.RandomForestClassifier"])
def test_other_models_are_left_untouched(estimator: str) -> None:
    model, _, _ = _fit(estimator=estimator)
    before = pickle.dumps(model)
    assert not accelerate(model)
    assert pickle.dumps(model) == before


def test_a_jobs_holdout_scores_are_exactly_the_stored_models(
    run_worker: RunWorker, fraud_request: dict[str, Any], payments: pa.Table,
    artifact_root: Any,
) -> None:
    req = with_train(fraud_request, workflow_name="sklearn", custom_params={"max_iter": 20})
    result = finished(run_worker(req))
    stored = pickle.loads(ArtifactStore(str(artifact_root)).get_bytes(result.model_id))
    assert accelerate(pickle.loads(pickle.dumps(stored))), "the evaluation took the fast path"
    assert type(stored.steps[-1][1]._preprocessor).__name__ == "ColumnTransformer", (
        "the stored bytes keep sklearn's own preprocessor")
    frame = payments.to_pandas()
    countries = req["filters"][0]["feature_value"]["string_vals"]
    holdout = frame[frame.charge_country.isin(countries)
                    & (frame.created_at >= pd.Timestamp("2018-10-01"))
                    & (frame.created_at < pd.Timestamp("2019-01-01"))]
    expected = stored.predict_proba(holdout[req["train"]["classifier_features"]])[:, 1]
    scores = pd.read_csv(result.evaluation_holdout_data_path, sep="\t")["score"]
    np.testing.assert_array_equal(scores.to_numpy(), expected)

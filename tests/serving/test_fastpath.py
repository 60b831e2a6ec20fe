"""The serving fast path changes speed, never scores."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from modelyard.request import parse_request
from modelyard.runtime.builtin import SklearnWorkflow
from modelyard.serving.fastpath import accelerate
from modelyard.synthetic import example_request, payments_table


def _fit(**params: Any) -> tuple[Any, SklearnWorkflow, Any]:
    frame = payments_table(rows=5_000, merchants=50).to_pandas()
    workflow = SklearnWorkflow(parse_request(example_request("p.parquet", custom_params=params)))
    return workflow.train(frame, frame), workflow, frame


def test_boosted_trees_with_categories_score_identically_on_the_fast_path() -> None:
    model, workflow, frame = _fit(max_iter=20)
    fast = pickle.loads(pickle.dumps(model))
    assert accelerate(fast)
    rows = frame[workflow.features].sample(500, random_state=0).reset_index(drop=True)
    rows.loc[:9, "charge_type"] = "never seen"  # unseen category
    rows.loc[10:19, "charge_country"] = None  # missing category
    rows.loc[20:29, "charge_amount"] = np.nan  # missing number
    np.testing.assert_array_equal(model.predict_proba(rows), fast.predict_proba(rows))
    assert type(fast.steps[-1][1]._preprocessor).__name__ == "_CategoricalLookup"


@pytest.mark.parametrize("estimator", ["sklearn.linear_model.LogisticRegression",
                                       "sklearn.ensemble.RandomForestClassifier"])
def test_other_models_are_left_untouched(estimator: str) -> None:
    model, _, _ = _fit(estimator=estimator)
    before = pickle.dumps(model)
    assert not accelerate(model)
    assert pickle.dumps(model) == before

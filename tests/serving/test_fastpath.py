"""Rows scored without a DataFrame: the same scores as the workflow's own predict, or unused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.request import parse_request
from modelyard.runtime.builtin import SklearnWorkflow
from modelyard.serving.fastpath import records_predictor
from modelyard.synthetic import example_request, payments_table


def _fit(**params: Any) -> tuple[Any, SklearnWorkflow, Any]:
    frame = payments_table(rows=5_000, merchants=50).to_pandas()
    workflow = SklearnWorkflow(parse_request(example_request("p.parquet", custom_params=params)))
    return workflow.train(frame, frame), workflow, frame


def _frame_predict(workflow: SklearnWorkflow, model: Any) -> Any:
    return lambda frame: workflow.predict(model, frame)


@pytest.mark.parametrize("params", [
    {"max_iter": 20},  # boosted trees: category codes
    {"estimator": "sklearn.linear_model.LogisticRegression"},  # one-hot, scaled numbers
], ids=["codes", "one-hot"])
def test_rows_scored_without_a_dataframe_match_the_workflow_exactly(
    params: dict[str, Any],
) -> None:
    model, workflow, frame = _fit(**params)
    features = workflow.features
    sample = frame[features].head(3).to_dict("records")
    fast = records_predictor(workflow, model, features, _frame_predict(workflow, model), sample)
    assert fast is not None
    rows = frame[features].sample(300, random_state=1).to_dict("records")
    rows[0]["charge_type"] = "never seen"
    rows[1]["charge_country"] = None
    rows[2]["charge_amount"] = None
    rows[3]["charge_amount"] = "12.5"  # numbers sent as text parse as in pandas
    rows[4]["card_age_days"] = "not a number"
    for batch in (rows[:1], rows[1:2], rows[:5], rows):  # one row, and the large-batch path
        expected = workflow.predict(model, pd.DataFrame.from_records(batch, columns=features))
        np.testing.assert_array_equal(fast(batch), expected)


def test_a_pipeline_of_scikit_learns_own_encoders_keeps_the_dataframe_path() -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    _, workflow, frame = _fit(max_iter=5)
    encode = make_column_transformer((OneHotEncoder(), ["charge_type", "charge_country"]),
                                     remainder="passthrough")
    model = make_pipeline(encode, RandomForestClassifier(n_estimators=5, random_state=0))
    model.fit(frame[workflow.features], frame[workflow.label])
    sample = frame[workflow.features].head(3).to_dict("records")
    assert records_predictor(workflow, model, workflow.features,
                             _frame_predict(workflow, model), sample) is None


def test_a_workflow_with_its_own_predict_keeps_the_dataframe_path() -> None:
    model, _, frame = _fit(max_iter=5)

    class Custom(SklearnWorkflow):
        def predict(self, model: Any, df: pd.DataFrame) -> Any:
            return super().predict(model, df) * 0.5

    custom = Custom(parse_request(example_request("p.parquet", custom_params={})))
    sample = frame[custom.features].head(3).to_dict("records")
    assert records_predictor(custom, model, custom.features,
                             _frame_predict(custom, model), sample) is None


def test_a_fast_path_that_disagrees_is_not_used() -> None:
    model, workflow, frame = _fit(max_iter=5)
    sample = frame[workflow.features].head(3).to_dict("records")
    shifted = lambda f: workflow.predict(model, f) + 1e-12  # noqa: E731
    assert records_predictor(workflow, model, workflow.features, shifted, sample) is None

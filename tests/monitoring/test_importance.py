"""The importances a profile holds: the model's own where it has them, else permutation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor

from modelyard.monitoring.importance import importances

RNG = np.random.default_rng(3)
FRAME = pd.DataFrame({"strong": RNG.normal(size=2_000), "weak": RNG.normal(size=2_000),
                      "noise": RNG.normal(size=2_000)})
TARGET = 5 * FRAME["strong"] + FRAME["weak"]


def _predict(model: Any, frame: pd.DataFrame) -> Any:
    return model.predict(frame[list(FRAME.columns)])


@pytest.mark.parametrize(("estimator", "method"), [
    (RandomForestRegressor(n_estimators=10, random_state=0), "model"),  # feature_importances_
    (LinearRegression(), "model"),  # |coef_|
    (HistGradientBoostingRegressor(max_iter=20), "model"),  # its trees' split gains
    (KNeighborsRegressor(), "permutation"),  # none of those
])
def test_the_strong_feature_ranks_first_whichever_way_it_is_measured(estimator: Any,
                                                                      method: str) -> None:
    model = estimator.fit(FRAME, TARGET)
    weights, how = importances(model, _predict, FRAME, list(FRAME.columns))
    assert how == method
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["strong"] > weights["weak"] > weights["noise"]

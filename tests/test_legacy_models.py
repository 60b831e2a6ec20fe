"""Models pickled by a released Modelyard keep loading and scoring the same.

A pickle names the classes it holds by module path (``modelyard.runtime.encoders.CategoryCodes``,
``modelyard.runtime.torch_workflow.TabularNet``): moving or renaming one of them breaks every
model users already have. These bytes were written by 0.1.0 (tests/fixtures/legacy_models/make.py)
and are loaded the way serving loads a version: unpickle, resolve the request's workflow, predict.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.request.loading import parse_request
from modelyard.runtime.workflow import resolve_workflow

HERE = Path(__file__).parent / "fixtures" / "legacy_models"
EXPECTED: dict[str, Any] = json.loads((HERE / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_released_model_loads_and_scores_the_same(name: str) -> None:
    case = EXPECTED[name]
    with warnings.catch_warnings():
        # A lock refresh that moves scikit-learn warns here; that is scikit-learn's promise, not
        # ours. What this test guards is that our own classes are still where pickles name them.
        warnings.filterwarnings("ignore", message=".*Trying to unpickle estimator.*")
        model = pickle.loads((HERE / f"{name}.pkl").read_bytes())  # noqa: S301 - our fixture
    request = parse_request(case["request"])
    workflow = resolve_workflow(request.train.workflow_name, ())(request)
    rows = pd.DataFrame.from_records(json.loads((HERE / "rows.json").read_text()))
    scores = np.asarray(workflow.predict(model, rows), dtype=float)
    np.testing.assert_allclose(scores, case["scores"], rtol=1e-6, atol=1e-9)

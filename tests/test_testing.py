"""check_workflow: the contract checks users run in their CI, run over every built-in workflow."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from modelyard import Workflow
from modelyard.runtime.builtin import LightGBMWorkflow, SklearnWorkflow, XGBoostWorkflow
from modelyard.runtime.torch_workflow import TorchWorkflow
from modelyard.synthetic import example_request
from modelyard.testing import WorkflowCheckFailed, check_workflow

NUMERIC = ["charge_amount", "card_age_days", "hour_of_day"]


@pytest.fixture(autouse=True)
def one_native_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread, as the runtime tests' worker has: the checks fit in this process,
    and on a busy two-core machine the threads of a histogram gradient boosting fit spin at
    barriers, so a short fit takes many times longer."""
    with threadpool_limits(limits=1):
        yield


def _request(workflow: str, **params: Any) -> dict[str, Any]:
    return example_request("payments.parquet", workflow_name=workflow, custom_params=params)


@pytest.mark.parametrize(
    ("workflow", "params"),
    [
        (SklearnWorkflow, {}),
        (SklearnWorkflow, {"estimator": "sklearn.linear_model.LogisticRegression", "C": 0.5}),
        (SklearnWorkflow, {"estimator": "sklearn.ensemble.RandomForestClassifier",
                           "n_estimators": 20}),
        (LightGBMWorkflow, {"n_estimators": 20}),
        pytest.param(XGBoostWorkflow, {"n_estimators": 20}, marks=pytest.mark.skipif(
            importlib.util.find_spec("xgboost") is None, reason="xgboost not installed")),
        (TorchWorkflow, {"epochs": 2, "hidden": [16]}),
    ],
    ids=["sklearn-default", "sklearn-onehot-logreg", "sklearn-forest", "lightgbm", "xgboost",
         "torch"],
)
def test_builtin_workflows_pass_the_contract(workflow: type[Workflow], params: dict[str, Any]
                                             ) -> None:
    check_workflow(workflow, request=_request(workflow.registered_name(), **params))


def test_builtin_sklearn_regression() -> None:
    # A numeric label picks the default estimator's regressor; 20 boosting rounds show it as
    # well as the default's 100.
    request = _request("sklearn", max_iter=20)
    request["train"]["label"] = "charge_amount"
    request["train"]["classifier_features"] = ["charge_type", "card_age_days", "hour_of_day"]
    check_workflow(SklearnWorkflow, request=request)


def test_builtin_sklearn_names_bad_params() -> None:
    from modelyard.errors import WorkflowError

    with pytest.raises(WorkflowError, match=r"custom_params \['max_deph'\] are not parameters"):
        check_workflow(SklearnWorkflow, request=_request("sklearn", max_deph=3))


class HasInit(Workflow):
    def __init__(self, request: Any) -> None:
        super().__init__(request)
        self.model = LogisticRegression()


class Unseeded(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        return LogisticRegression(max_iter=2000).fit(train_df[NUMERIC], train_df[self.label])

    def predict(self, model: Any, df: pd.DataFrame) -> Any:
        return model.predict_proba(df[NUMERIC])[:, 1] + np.random.default_rng().random(len(df))


class Mutates(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        train_df["charge_amount"] = train_df["charge_amount"].clip(0, 100)
        return LogisticRegression(max_iter=2000).fit(train_df[NUMERIC], train_df[self.label])


class ShortPredict(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        return LogisticRegression(max_iter=2000).fit(train_df[NUMERIC], train_df[self.label])

    def predict(self, model: Any, df: pd.DataFrame) -> Any:
        return model.predict_proba(df[NUMERIC][:-1])[:, 1]


class Unpicklable(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        model = LogisticRegression(max_iter=2000).fit(train_df[NUMERIC], train_df[self.label])
        model.hook = lambda x: x
        return model

    def predict(self, model: Any, df: pd.DataFrame) -> Any:
        return model.predict_proba(df[NUMERIC])[:, 1]


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        (HasInit, "defines __init__"),
        (Unseeded, "not deterministic"),
        (Mutates, "modified its input frames"),
        (ShortPredict, "returned 2999 predictions|predictions for"),
        (Unpicklable, "does not survive pickling"),
    ],
)
def test_contract_violations_are_named(workflow: type[Workflow], message: str) -> None:
    with pytest.raises(WorkflowCheckFailed, match=message):
        check_workflow(workflow)

"""Workflows the runtime tests run by name (``WorkerSpec.workflow_modules`` names this file).

Each one is small and fast; most misbehave in exactly one way so that a test can pin the message
the worker reports for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelyard import Workflow


class TrainingDiverged(Exception):
    """A workflow's own exception type: the worker must report it by its full name."""


class Logistic(Workflow):
    """A fast, well-behaved binary model: one-hot text columns, scaled numbers, logistic loss."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        x = train_df[self.features]
        text = [c for c in self.features if not pd.api.types.is_numeric_dtype(x[c])]
        encode = ColumnTransformer(
            [("text", OneHotEncoder(handle_unknown="ignore"), text)],
            remainder=StandardScaler(),
        )
        model = make_pipeline(encode, LogisticRegression(max_iter=1_000))
        return model.fit(x, train_df[self.label])


class EchoParams(Workflow):
    """Returns a prior-only classifier that carries the ``custom_params`` it was given."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        model = DummyClassifier(strategy="prior").fit(train_df[self.features], train_df[self.label])
        model.custom_params_seen = self.custom_params
        model.train_rows_seen = len(train_df)
        model.holdout_rows_seen = len(holdout_df)
        return model


class Prior(Workflow):
    """Predicts the class priors for every row, so only the majority class is ever predicted."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        return DummyClassifier(strategy="prior").fit(train_df[self.features], train_df[self.label])


class Raises(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        raise ValueError(f"boom: max_depth={self.custom_params.get('max_depth')} is not allowed")


class Diverges(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        raise TrainingDiverged("loss is nan at iteration 3")


class ReturnsNone(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        DummyClassifier().fit(train_df[self.features], train_df[self.label])  # forgot `return`


class Unpicklable(Workflow):
    """Returns a closure, which pickle refuses."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        rate = float(train_df[self.label].mean())
        return lambda df: np.full(len(df), rate)


class ShortPredict(Workflow):
    """A fine model whose ``predict`` drops the last holdout row."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        return DummyClassifier(strategy="prior").fit(train_df[self.features], train_df[self.label])

    def predict(self, model: Any, df: pd.DataFrame) -> np.ndarray[Any, Any]:
        return super().predict(model, df)[:-1]

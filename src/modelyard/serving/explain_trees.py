"""Explainers of tree models behind the built-in encoders: the boosters' own contributions and
``shap``'s TreeExplainer.

Both read the matrix the model's pipeline builds (its encoder's ``transform`` of a frame, as the
workflow's ``predict`` does) and sum the encoded columns' contributions back to the features
(:func:`~modelyard.serving.explain.to_features`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelyard.serving.explain import Attribution, Output, encoded_groups, to_features


class Inexact(Exception):
    """The explainer's values do not add up to the model's output on these rows."""


class _Encoded:
    """A pipeline's encoder, and which feature each of its columns belongs to."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.features = list(encoder.features)
        self.groups = encoded_groups(encoder)

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray[Any, Any]:
        frame = pd.DataFrame.from_records(list(rows), columns=self.features)
        return np.asarray(self.encoder.transform(frame), dtype=np.float64)

    def attribution(self, raw: np.ndarray[Any, Any], base: Any) -> Attribution:
        values = to_features(np.asarray(raw, dtype=np.float64), self.groups, len(self.features))
        return Attribution(values, np.broadcast_to(np.asarray(base, dtype=np.float64),
                                                   (len(values),)))


class BoosterContributions:
    """LightGBM's ``pred_contrib`` or XGBoost's ``pred_contribs``: exact SHAP values of the
    booster's raw score, its last column the base value."""

    def __init__(self, encoder: Any, estimator: Any, library: str, classifier: bool) -> None:
        self.encoded = _Encoded(encoder)
        self.estimator = estimator
        self.library = library
        self.method = ("lightgbm_pred_contrib" if library == "lightgbm"
                       else "xgboost_pred_contribs")
        self.output: Output = "log_odds" if classifier else "raw_score"

    def attribute(self, rows: Sequence[Mapping[str, Any]]) -> Attribution:
        x = self.encoded.matrix(rows)
        if self.library == "lightgbm":
            raw = np.asarray(self.estimator.predict(x, pred_contrib=True))
        else:
            import xgboost

            raw = np.asarray(self.estimator.get_booster().predict(xgboost.DMatrix(x),
                                                                 pred_contribs=True))
        return self.encoded.attribution(raw[:, :-1], raw[:, -1])


class TreeShap:
    """``shap.TreeExplainer`` of a scikit-learn tree model; checked against the model's own
    output on every batch, since shap reads the trees without all of their split rules."""

    method = "tree_shap"

    def __init__(self, encoder: Any, estimator: Any, classifier: bool) -> None:
        import shap

        self.encoded = _Encoded(encoder)
        self.estimator = estimator
        self.classifier = classifier
        self.explainer = shap.TreeExplainer(estimator)
        # Classifiers whose trees hold probabilities (forests, single trees) are explained per
        # class, and the positive class's probability is what the contributions add up to.
        self.output: Output = "log_odds" if classifier else "prediction"

    def attribute(self, rows: Sequence[Mapping[str, Any]]) -> Attribution:
        x = self.encoded.matrix(rows)
        values = np.asarray(self.explainer.shap_values(x, check_additivity=False),
                            dtype=np.float64)
        expected = np.asarray(self.explainer.expected_value, dtype=np.float64).reshape(-1)
        if values.ndim == 3:
            values, base = values[:, :, -1], expected[-1]
            wanted = np.asarray(self.estimator.predict_proba(x))[:, -1]
            self.output = "probability"
        else:
            base = expected[0]
            wanted = np.asarray(self.estimator.decision_function(x) if self.classifier
                                else self.estimator.predict(x)).reshape(-1)
        if not np.allclose(values.sum(axis=1) + base, wanted, rtol=1e-4, atol=1e-4):
            raise Inexact(f"{type(self.estimator).__name__}: shap's values do not add up to "
                          "the model's output")
        return self.encoded.attribution(values, base)


def tree_explainer(model: Any, workflow_predict_is_default: bool, features: Sequence[str]
                   ) -> BoosterContributions | TreeShap | None:
    """The tree explainer for a built-in pipeline (encoder, estimator), else None."""
    from modelyard.runtime.encoders import CategoryCodes

    steps = getattr(model, "steps", None)
    if (not workflow_predict_is_default or not isinstance(steps, list) or len(steps) != 2
            or not isinstance(steps[0][1], CategoryCodes)
            or list(steps[0][1].features) != list(features)):
        return None
    encoder, estimator = steps[0][1], steps[1][1]
    classifier = hasattr(estimator, "classes_")
    module = type(estimator).__module__.split(".")[0]
    if module in ("lightgbm", "xgboost"):
        return BoosterContributions(encoder, estimator, module, classifier)
    if module == "sklearn" and _is_tree_model(estimator):
        return TreeShap(encoder, estimator, classifier)
    return None


def _is_tree_model(estimator: Any) -> bool:
    return (hasattr(estimator, "tree_") or hasattr(estimator, "estimators_")
            or hasattr(estimator, "_predictors")) and not hasattr(estimator, "coef_")

"""Feature importances for a profile: the model's own when it has them, else a cheap measure.

* ``model``: the fitted estimator's ``feature_importances_`` (trees, boosting), the absolute
  ``coef_`` (linear models, averaged over classes), or for scikit-learn's histogram gradient
  boosting, which has neither, the split gains of its trees; taken from the estimator itself or
  the last step of a pipeline, when it has exactly one value per feature (an encoder that widens
  the columns, such as one-hot, has more, and the measure below is used instead). The built-in
  workflow's default model is the last kind, so a fleet's thousand models pay nothing here.
* ``permutation``: the mean absolute change of the score when one feature's values are shuffled,
  on at most :data:`SAMPLE_ROWS` holdout rows, every feature's shuffled copy scored in one
  ``predict`` call. It needs no label and costs one call on ``features x SAMPLE_ROWS`` rows,
  so a fleet's thousand small models pay little for it.

Importances are normalised to sum to 1 (all zero when nothing moves the score).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

SAMPLE_ROWS = 128
SEED = 0


def importances(model: Any, predict: Callable[[Any, pd.DataFrame], Any],
                holdout: pd.DataFrame, features: Sequence[str]) -> tuple[dict[str, float], str]:
    """Per-feature importances of ``model`` and how they were measured."""
    own = _own(model, len(features))
    if own is not None:
        return _normalised(features, own), "model"
    return _normalised(features, _permutation(model, predict, holdout, features)), "permutation"


def _own(model: Any, n_features: int) -> np.ndarray[Any, Any] | None:
    estimator = model
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        estimator = steps[-1][1]
    values = getattr(estimator, "feature_importances_", None)
    if values is None and getattr(estimator, "coef_", None) is not None:
        values = np.abs(np.asarray(estimator.coef_, dtype=float))
        values = values.reshape(-1, values.shape[-1]).mean(axis=0) if values.ndim > 1 else values
    if values is None:
        values = _split_gains(estimator, n_features)
    if values is None:
        return None
    try:
        array = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if len(array) != n_features or not np.all(np.isfinite(array)):
        return None
    magnitude: np.ndarray[Any, Any] = np.abs(array)
    return magnitude


def _split_gains(estimator: Any, n_features: int) -> np.ndarray[Any, Any] | None:
    """Total split gain per feature of a histogram gradient boosting model's trees."""
    trees = getattr(estimator, "_predictors", None)
    if not isinstance(trees, list) or getattr(estimator, "n_features_in_", None) != n_features:
        return None
    try:
        nodes = np.concatenate([p.nodes for iteration in trees for p in iteration])
        splits = nodes[~nodes["is_leaf"].astype(bool)]
        gains: np.ndarray[Any, Any] = np.bincount(
            splits["feature_idx"].astype(np.int64), weights=np.maximum(splits["gain"], 0.0),
            minlength=n_features)
    except (AttributeError, KeyError, TypeError, ValueError):  # not the layout we know
        return None
    return gains if len(gains) == n_features else None


def _permutation(model: Any, predict: Callable[[Any, pd.DataFrame], Any],
                 holdout: pd.DataFrame, features: Sequence[str]) -> np.ndarray[Any, Any]:
    if len(holdout) == 0 or not features:
        return np.zeros(len(features))
    rng = np.random.default_rng(SEED)
    sample = holdout.iloc[rng.permutation(len(holdout))[:SAMPLE_ROWS]].reset_index(drop=True)
    n = len(sample)
    copies = []
    for feature in features:
        shuffled = sample.copy()
        shuffled[feature] = sample[feature].to_numpy()[rng.permutation(n)]
        copies.append(shuffled)
    scores = _one_column(predict(model, pd.concat([sample, *copies], ignore_index=True)))
    base = scores[:n]
    moved = np.abs(scores[n:].reshape(len(features), n) - base)
    out: np.ndarray[Any, Any] = np.nan_to_num(moved.mean(axis=1))
    return out


def _one_column(scores: Any) -> np.ndarray[Any, Any]:
    array = np.asarray(scores, dtype=float)
    column: np.ndarray[Any, Any] = array.reshape(len(array), -1)[:, -1]
    return column


def _normalised(features: Sequence[str], values: np.ndarray[Any, Any]) -> dict[str, float]:
    total = float(values.sum())
    return {f: (float(v) / total if total > 0 else 0.0)
            for f, v in zip(features, values, strict=True)}

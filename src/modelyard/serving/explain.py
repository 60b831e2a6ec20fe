"""Why a version scored what it scored: each row's feature contributions, on request.

``POST /predict/{name}`` with ``"explain": true`` adds an :class:`Explanation` to the answer:
per row the ``explain_top`` features that moved its score most, each with the row's value and
its contribution, the base value, ``others`` (what the remaining features contributed) and the
margin they add up to: ``base_value + sum(contributions) + others == margin``.

Contributions are on the scale of the request's own columns: an encoder that widens a feature
(one-hot) has its columns' contributions summed back to the feature. Which method explains a
version is chosen once, when it is first asked (:func:`explainer_for`):

* ``lightgbm_pred_contrib`` / ``xgboost_pred_contribs``: the boosters' own SHAP values, on their
  raw margin (log-odds for a binary classifier, the prediction for a regression);
* ``tree_shap``: the ``shap`` library's TreeExplainer for scikit-learn's trees and histogram
  gradient boosting (the ``explain`` extra), on the margin the explainer reports, and used only
  where its values add up to the model's own output on the rows explained (it does not know
  histogram gradient boosting's categorical splits, for one);
* ``kernel_shap``: for any other model, ``shap``'s Kernel SHAP of the workflow's own
  ``predict`` against a reference row (:mod:`modelyard.serving.explain_agnostic`), for at most
  :data:`~modelyard.serving.explain_agnostic.MAX_ROWS` rows per request.

Multi-class versions are not explained. Explaining runs on its own thread, beside the
micro-batches of ordinary requests, which never pass through this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from modelyard.errors import RequestError

Output = Literal["log_odds", "raw_score", "probability", "prediction", "score"]
MAX_TOP = 50  # the most contributions per row a request may ask for


@dataclasses.dataclass(frozen=True)
class Attribution:
    """Contributions of a batch of rows, one column per feature, and each row's base value."""

    values: np.ndarray[Any, Any]  # (rows, features)
    base: np.ndarray[Any, Any]  # (rows,)


class Explainer(Protocol):
    """One way of attributing a version's output to its features."""

    method: str
    output: Output  # what the contributions add up to

    def attribute(self, rows: Sequence[Mapping[str, Any]]) -> Attribution: ...


@dataclasses.dataclass(frozen=True)
class Contribution:
    feature: str
    value: Any  # the row's value of the feature, as sent
    contribution: float


@dataclasses.dataclass(frozen=True)
class RowExplanation:
    base_value: float
    margin: float  # base_value + every feature's contribution
    others: float  # the contributions of the features not listed
    contributions: list[Contribution]  # the largest first, by absolute value


@dataclasses.dataclass(frozen=True)
class Explanation:
    method: str
    output: Output
    rows: list[RowExplanation]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def explain(explainer: Explainer, features: Sequence[str], rows: Sequence[Mapping[str, Any]],
            top: int) -> Explanation:
    """Each row's ``top`` largest contributions by ``explainer``."""
    attribution = explainer.attribute(rows)
    values = np.asarray(attribution.values, dtype=np.float64)
    base = np.asarray(attribution.base, dtype=np.float64).reshape(-1)
    out = []
    for i, row in enumerate(rows):
        order = np.argsort(-np.abs(values[i]), kind="stable")
        kept, rest = order[:top], order[top:]
        out.append(RowExplanation(
            base_value=float(base[i]),
            margin=float(base[i] + values[i].sum()),
            others=float(values[i, rest].sum()),
            contributions=[Contribution(features[j], row.get(features[j]), float(values[i, j]))
                           for j in kept]))
    return Explanation(explainer.method, explainer.output, out)


def to_features(encoded: np.ndarray[Any, Any], groups: np.ndarray[Any, Any],
                n_features: int) -> np.ndarray[Any, Any]:
    """Contributions of encoded columns summed back to the features they came from
    (``groups[j]``: the feature of encoded column ``j``)."""
    if encoded.shape[1] == n_features and np.array_equal(groups, np.arange(n_features)):
        return encoded
    out = np.zeros((encoded.shape[0], n_features), dtype=np.float64)
    np.add.at(out.T, groups, encoded.T)
    return out


def encoded_groups(encoder: Any) -> np.ndarray[Any, Any]:
    """The feature (its index in ``encoder.features``) of each column the encoder writes."""
    from modelyard.runtime.encoders import OneHotCodes

    features = list(encoder.features)
    if not isinstance(encoder, OneHotCodes):  # a column per feature, in feature order
        return np.arange(len(features))
    groups: list[int] = []
    for c in encoder.categorical:  # its blocks first, then the numbers (see its transform)
        groups += [features.index(c)] * int(encoder.widths_[c])
    groups += [features.index(c) for c in encoder.numeric]
    return np.asarray(groups, dtype=np.intp)


def not_available(label: str, why: str) -> RequestError:
    return RequestError(
        f"explain: not available for {label}: {why}. Explanations cover binary classifiers "
        "and regressions: LightGBM and XGBoost by their own contributions, scikit-learn trees "
        "and histogram gradient boosting by shap's TreeExplainer, other models by a "
        "Kernel SHAP against their training profile; send the request without "
        "\"explain\"")


"""The model-agnostic explainer: ``shap``'s Kernel SHAP of the workflow's ``predict``.

Any version is explained this way when no tree explainer fits it: a user's workflow, a linear
model behind one-hot columns, the torch network. It sees the model only through the workflow's
own ``predict`` on the request's columns, so encoders need no mapping back.

The background is one reference row, built from the version's training profile
(:mod:`modelyard.monitoring.profile`, stored when it trained): each number's median and each
category's most frequent value. A feature is "absent" when it takes the reference row's value,
so the base value is the model's score of that row, and a row's contributions add up to its
score minus the base value (Kernel SHAP's constraint). With up to 8 features every coalition is
scored and the values are exact Shapley values; with more, :data:`MAX_EVALS` sampled coalitions
estimate them. That is one predict call of up to :data:`MAX_EVALS` rows per row explained, so a
request explains at most :data:`MAX_ROWS` rows this way. (Kernel SHAP rather than shap's
permutation explainer: that one compiles numba code at its first call in each process, which a
server's first explain request would wait for.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import RequestError
from modelyard.monitoring.profile import FeatureProfile, Profile
from modelyard.runtime.workflow import Workflow
from modelyard.serving.explain import Attribution, Output, not_available
from modelyard.serving.schema import RowSchema

MAX_ROWS = 20  # rows one request may have explained this way
MAX_EVALS = 512  # predictions per row explained: the coalitions Kernel SHAP scores


class KernelShap:
    method = "kernel_shap"
    output: Output = "score"  # what the workflow's predict returns

    def __init__(self, workflow: Workflow, model: Any, schema: RowSchema,
                 profile: Profile) -> None:
        self.workflow = workflow
        self.model = model
        self.schema = schema
        self.features = list(schema.features)
        self.reference = reference_row(profile, schema)

    def attribute(self, rows: Sequence[Mapping[str, Any]]) -> Attribution:
        if len(rows) > MAX_ROWS:
            raise RequestError(
                f"rows: {len(rows)} rows to explain, but {self.schema.label} is explained by "
                f"Kernel SHAP, at most {MAX_ROWS} rows per request; send fewer rows with "
                "\"explain\"")
        import shap

        codec = _Codec(self.features, [*rows, self.reference])
        explainer = shap.KernelExplainer(self._scorer(codec), codec.encode([self.reference]),
                                         link="identity")
        # Every coalition of up to 8 features fits in MAX_EVALS: their values are exact then.
        values = explainer.shap_values(codec.encode(rows), nsamples=MAX_EVALS, l1_reg=False,
                                       silent=True)
        base = np.full(len(rows), float(np.asarray(explainer.expected_value).reshape(-1)[0]))
        return Attribution(np.asarray(values, dtype=np.float64).reshape(len(rows), -1), base)

    def _scorer(self, codec: _Codec) -> Any:
        def score(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            scores = np.asarray(self.workflow.predict(self.model, codec.decode(z)),
                                dtype=np.float64)
            if scores.ndim != 1:
                raise not_available(self.schema.label, "it scores several classes per row")
            return scores

        return score


def reference_row(profile: Profile, schema: RowSchema) -> dict[str, Any]:
    """Each feature's median (numbers) or most frequent value (the rest) in the training rows."""
    row: dict[str, Any] = {}
    for column in schema.columns:
        feature = profile.feature(column.name)
        row[column.name] = None if feature is None else _typical(feature, column.kind)
    return row


def _typical(feature: FeatureProfile, kind: str) -> Any:
    if feature.number is not None and feature.number.grid:
        return feature.number.grid[len(feature.number.grid) // 2]
    category = feature.category
    if category is None or not category.categories:
        return None
    top = category.categories[int(np.argmax(category.proportions))]
    if kind == "boolean":
        return top == "True"
    if kind == "number":
        return float(top)
    return top


class _Codec:
    """Rows as the float matrix shap's masker needs: numbers as they are, any other column's
    values as their position among the values seen in this call."""

    def __init__(self, features: list[str], rows: Sequence[Mapping[str, Any]]) -> None:
        self.features = features
        self.vocab: dict[str, list[Any]] = {}
        for c in features:
            values = [r.get(c) for r in rows]
            if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
                       for v in values):
                self.vocab[c] = list(dict.fromkeys(values))

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray[Any, Any]:
        out = np.empty((len(rows), len(self.features)), dtype=np.float64)
        for j, c in enumerate(self.features):
            vocab = self.vocab.get(c)
            for i, r in enumerate(rows):
                v = r.get(c)
                out[i, j] = (vocab.index(v) if vocab is not None
                             else np.nan if v is None else float(v))
        return out

    def decode(self, z: np.ndarray[Any, Any]) -> pd.DataFrame:
        columns: dict[str, Any] = {}
        for j, c in enumerate(self.features):
            vocab = self.vocab.get(c)
            columns[c] = (z[:, j] if vocab is None
                          else [vocab[int(k)] for k in z[:, j]])
        return pd.DataFrame(columns, columns=self.features)

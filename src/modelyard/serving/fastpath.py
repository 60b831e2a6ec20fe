"""Serving fast path: rows scored without a DataFrame, verified equal before use.

For the built-in workflow's models (a Pipeline that starts with
:class:`~modelyard.runtime.encoders.CategoryCodes` or its one-hot subclass
:class:`~modelyard.runtime.encoders.OneHotCodes`), :func:`records_predictor` encodes rows that
arrive as JSON mappings straight into the model's float matrix, skipping the DataFrame that
costs more than the model on a single row. It is used only once it gives exactly the scores of
the DataFrame path on probe rows (every known category, unseen and missing values) and on the
rows being served. The boosted trees' own categorical look-up is
:func:`modelyard.runtime.fastpath.accelerate`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("modelyard.serving")

Records = Sequence[Mapping[str, Any]]
RecordsPredict = Callable[[Records], np.ndarray[Any, Any]]


def records_predictor(workflow: Any, model: Any, features: Sequence[str],
                      frame_predict: Callable[[pd.DataFrame], np.ndarray[Any, Any]],
                      sample: Records) -> RecordsPredict | None:
    """A predict over mappings that skips the DataFrame, if verified equal to ``frame_predict``
    (the workflow's own predict) on probe rows and on ``sample``; else None."""
    from modelyard.runtime.encoders import CategoryCodes
    from modelyard.runtime.workflow import Workflow

    steps = getattr(model, "steps", None)
    if (type(workflow).predict is not Workflow.predict or not steps or len(steps) < 2
            or not isinstance(steps[0][1], CategoryCodes)
            or list(steps[0][1].features) != list(features)):
        return None
    encoder = steps[0][1]
    rest = model[1:] if len(steps) > 2 else steps[-1][1]
    proba = hasattr(model, "predict_proba")

    def predict(records: Records) -> np.ndarray[Any, Any]:
        x = encoder.transform_records(records)
        if proba:
            out = np.asarray(rest.predict_proba(x))
            return out[:, 1] if out.ndim == 2 and out.shape[1] == 2 else out
        return np.asarray(rest.predict(x))

    try:
        for rows in (_probe_records(encoder, features), list(sample)):
            expected = frame_predict(pd.DataFrame.from_records(rows, columns=list(features)))
            if not np.array_equal(np.asarray(expected), predict(rows), equal_nan=True):
                log.info("records fast path differs from the model's own predict; not used")
                return None
    except Exception:
        log.debug("no records fast path", exc_info=True)
        return None
    return predict


def _probe_records(encoder: Any, features: Sequence[str]) -> list[dict[str, Any]]:
    """Every known category of every categorical feature, an unseen and a missing value, and
    numbers (some missing, some given as text) for the others."""
    categories = getattr(encoder, "categories_", {})
    longest = max((len(v) for v in categories.values()), default=0) + 3
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = [{} for _ in range(longest)]
    for c in features:
        if c in categories:
            values: list[Any] = [*categories[c], "\x00unseen", None]
        else:
            values = [None, "12.5", *(float(v) for v in rng.normal(size=longest) * 100)]
        for i, row in enumerate(rows):
            row[c] = values[i % len(values)]
    return rows

"""A cheaper predict for boosted trees with categories: same scores, verified before use.

HistGradientBoosting with native categorical features re-encodes its input on every predict
with an internal ColumnTransformer + OrdinalEncoder, most of a predict on a fleet tenant's
holdout or of a one-row serving call (figures in docs/performance.md). :func:`accelerate` swaps
it for a numpy look-up over the same fitted categories. The worker does so before
evaluating a model (after its bytes were stored), serving on a model's third predict.

Whether the look-up gives what the preprocessor gives is checked on probe rows built from every
known category, unseen values and missing values, the first time a preprocessor of that *layout*
(its parts and the encoder's settings: everything but the fitted categories) is seen in the
process. Later models of the same layout are only checked for what varies between them (column
masks, sorted numeric categories), which costs far less than a transform: a worker evaluating
hundreds of fleet tenants verifies once. Anything unexpected (another sklearn
layout, a check that differs, a preprocessor fitted on named columns) leaves the model
untouched: the fast path is an optimisation, never a behaviour change. Stored bytes are never
modified.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

import numpy as np

log = logging.getLogger("modelyard.fastpath")

# Preprocessor layouts whose output the look-up reproduced exactly on probe rows, in this process.
_verified_layouts: set[Hashable] = set()


class CategoricalLookup:
    """What HGB's internal preprocessor computes: categorical columns first as category
    indices (unseen or missing: NaN), then the numerical columns, as float64."""

    def __init__(self, categorical: np.ndarray[Any, Any], categories: list[np.ndarray[Any, Any]]
                 ) -> None:
        self.width = len(categorical)
        self.cat_idx = np.flatnonzero(categorical)
        self.num_idx = np.flatnonzero(~categorical)
        self.categories = [np.asarray(c, dtype=float) for c in categories]

    def transform(self, x: Any) -> np.ndarray[Any, Any]:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.width:
            raise ValueError(f"X has shape {arr.shape}; the model was fitted on {self.width} "
                             "features")
        out = np.empty(arr.shape, dtype=np.float64)
        for k, (column, cats) in enumerate(zip(self.cat_idx, self.categories, strict=True)):
            values = arr[:, column]
            pos = np.minimum(np.searchsorted(cats, values), len(cats) - 1)
            out[:, k] = np.where(cats[pos] == values, pos, np.nan)
        out[:, len(self.cat_idx):] = arr[:, self.num_idx]
        return out


def accelerate(model: Any) -> bool:
    """Swap a verified fast path into ``model`` (a Pipeline ending in HistGradientBoosting, or
    the estimator itself) in place; True if it did. Never raises: any model is passed in, and
    one it does not know (say, a user's class with a ``steps`` count) is left as it is."""
    try:
        return _accelerate(model)
    except Exception:  # an sklearn layout we do not know: keep the model as it is
        log.debug("no fast path for %r", type(model).__name__, exc_info=True)
        return False


def _accelerate(model: Any) -> bool:
    from sklearn.pipeline import Pipeline

    estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
    pre = getattr(estimator, "_preprocessor", None)
    categorical = getattr(estimator, "is_categorical_", None)
    if (pre is None or categorical is None or not hasattr(pre, "named_transformers_")
            or hasattr(pre, "feature_names_in_")):  # named columns: the look-up cannot check them
        return False
    categorical = np.asarray(categorical, dtype=bool)
    encoder = pre.named_transformers_["encoder"]
    fast = CategoricalLookup(categorical, list(encoder.categories_))
    if not _fits(pre, categorical, fast):
        return False
    layout = _layout(pre, encoder)
    if layout not in _verified_layouts:
        probe = _probe_rows(fast)
        expected = np.asarray(pre.transform(probe), dtype=np.float64)
        if not np.array_equal(expected, fast.transform(probe), equal_nan=True):
            return False
        _verified_layouts.add(layout)
    estimator._preprocessor = fast
    return True


def _layout(pre: Any, encoder: Any) -> Hashable:
    """Everything that decides the preprocessor's output except the fitted categories and
    column masks (checked per model by :func:`_fits`)."""
    parts = tuple((name, type(part).__qualname__, type(part).__module__,
                   repr(getattr(part, "func", None)))
                  for name, part, _ in pre.transformers_)
    return (type(pre).__qualname__, parts, repr(getattr(pre, "remainder", None)),
            encoder.handle_unknown, repr(encoder.unknown_value),
            repr(encoder.encoded_missing_value), np.dtype(encoder.dtype).str)


def _fits(pre: Any, categorical: np.ndarray[Any, Any], fast: CategoricalLookup) -> bool:
    """What varies between models of one layout, as the look-up assumes it: the encoder on the
    categorical columns, the rest passed through after them, categories sorted numbers."""
    transformers = [t for t in pre.transformers_ if not (t[0] == "remainder" and t[1] == "drop")]
    if [t[0] for t in transformers] != ["encoder", "numerical"]:
        return False
    cat_cols = np.asarray(transformers[0][2])
    num_cols = np.asarray(transformers[1][2])
    if cat_cols.dtype != bool or num_cols.dtype != bool:
        return False
    if not (np.array_equal(cat_cols, categorical) and np.array_equal(num_cols, ~categorical)):
        return False
    for cats in fast.categories:
        if cats.ndim != 1:
            return False
        # NaN, if fitted, is the last category; the look-up never matches it (missing -> NaN
        # either way). The others must be strictly increasing for its binary search.
        known = cats[:-1] if len(cats) and np.isnan(cats[-1]) else cats
        if np.isnan(known).any() or (len(known) > 1 and not bool(np.all(known[1:] > known[:-1]))):
            return False
    return True


def _probe_rows(fast: CategoricalLookup) -> np.ndarray[Any, Any]:
    """Every known category of every categorical column, plus unseen and missing values."""
    longest = max((len(c) for c in fast.categories), default=1) + 3
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(longest, fast.width)) * 100
    for column, cats in zip(fast.cat_idx, fast.categories, strict=True):
        known = cats[~np.isnan(cats)]
        extra = np.array([known.max() + 1 if len(known) else 1.0, -12345.0, np.nan])
        values = np.concatenate([cats, extra])
        rows[:, column] = np.resize(values, longest)
    rows[0, fast.num_idx] = np.nan
    return rows

"""The built-in workflows' feature encoders: a frame in, one float matrix out.

- :class:`CategoryCodes`: a column per feature, categories as integer codes. For estimators
  with native categorical support (histogram gradient boosting, LightGBM, XGBoost).
- :class:`OneHotCodes`: a column per category, numbers imputed and standardised. For every other
  estimator (linear models, SVMs, k-NN, single trees, the torch network).

They replace ColumnTransformers of per-column scikit-learn encoders for two reasons:

- **Serving.** Serving scores a few JSON rows at a time, where a ColumnTransformer's fixed cost
  per call dwarfs the model's; these are vectorised over a whole column, and
  :meth:`CategoryCodes.transform_records` skips the DataFrame altogether.
- **Fitting.** OneHotEncoder with infrequent categories counts them in Python, value by value,
  which dominates a small job's fit and grows with a column's distinct values; these count them
  vectorised. (The figures are in docs/performance.md.)

:class:`OneHotCodes` gives the same matrix as the scikit-learn encoders it replaces; the tests
compare the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

MISSING = "__missing__"
"""The category that missing values of a one-hot column fall into."""


class CategoryCodes(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Features as one float matrix, categories as integer codes (-1: missing or unseen).

    Codes are positions in the sorted training categories. Vectorised look-ups for large
    frames (an Arrow hash look-up for Arrow text), dict look-ups for small batches.
    """

    _SMALL = 64
    selects_columns = True  # reads the features by name: give it the whole frame, no copy

    def __init__(self, features: list[str], categorical: list[str], impute: bool = False) -> None:
        self.features = features
        self.categorical = categorical
        self.impute = impute

    def fit(self, x: pd.DataFrame, y: Any = None) -> CategoryCodes:
        self.categories_: dict[str, list[str]] = {}
        self.codes_: dict[str, dict[str, int]] = {}
        for c in self.categorical:
            # Distinct values first, missing ones dropped from those: dropna() would copy the
            # whole column to drop a few values.
            values = sorted({str(v) for v in x[c].unique() if not _missing(v)})
            self.categories_[c] = values
            self.codes_[c] = {v: i for i, v in enumerate(values)}
        self._fit_numbers(x)
        return self

    def _fit_numbers(self, x: pd.DataFrame) -> None:
        # A column with no value at all is imputed with 0 (its median would be NaN).
        self.medians_ = {c: float(np.nan_to_num(pd.Series(_numbers(x[c])).median()))
                         for c in self.numeric} if self.impute else {}
        self.n_features_in_ = len(self.features)

    @property
    def numeric(self) -> list[str]:
        """The features that are not categorical, in feature order."""
        cats = set(self.categorical)
        return [c for c in self.features if c not in cats]

    def transform(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
        out = np.empty((len(x), len(self.features)), dtype=np.float64)
        small = len(x) <= self._SMALL
        for j, c in enumerate(self.features):
            codes = self.codes_.get(c)
            column = x[c]
            if codes is None:
                out[:, j] = self._impute(c, _numbers(column))
            elif small:
                out[:, j] = [-1 if _missing(v) else codes.get(str(v), -1) for v in column]
            else:
                out[:, j] = self._positions(c, column)
        return out

    def _impute(self, c: str, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if c in self.medians_:
            return np.where(np.isnan(values), self.medians_[c], values)
        return values

    def _positions(self, c: str, column: pd.Series,
                   missing: str | None = None) -> np.ndarray[Any, Any]:
        """Each value's position in the sorted training categories of ``c``, -1 if unseen,
        vectorised. Missing values are -1 too, or, given ``missing``, looked up as that text."""
        dtype = column.dtype
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
            # Arrow-backed text (pandas' default since 3.0): a hash look-up in Arrow, without
            # converting every value to a Python string first.
            import pyarrow as pa
            import pyarrow.compute as pc

            values = pa.array(column.array)
            if missing is not None and values.null_count:
                values = pc.fill_null(values, missing)
            found = pc.index_in(values, value_set=self._lookup(c, values.type))
            arrow_codes: np.ndarray[Any, Any] = found.fill_null(-1).to_numpy(zero_copy_only=False)
            return arrow_codes
        index = self._lookup(c, None)
        codes: np.ndarray[Any, Any] = index.get_indexer(column.astype(str))
        absent = column.isna().to_numpy()
        if absent.any():
            known = missing is not None and missing in index
            codes[absent] = index.get_loc(missing) if known else -1
        return codes

    def _lookup(self, c: str, arrow_type: Any) -> Any:
        """Column ``c``'s categories as a pandas Index (``arrow_type`` None) or an Arrow array
        of that type; built once per model and kept out of its pickle."""
        cache: dict[tuple[str, Any], Any] = self.__dict__.setdefault("_lookups", {})
        key = (c, arrow_type)
        if key not in cache:
            if arrow_type is None:
                cache[key] = pd.Index(self.categories_[c])
            else:
                import pyarrow as pa

                cache[key] = pa.array(self.categories_[c], type=arrow_type)
        return cache[key]

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        return {k: v for k, v in state.items() if k != "_lookups"}

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray[Any, Any]:
        """:meth:`transform` of rows given as mappings, without building a DataFrame first.

        Online serving receives JSON rows; for a few of them pandas' frame construction costs
        more than the model. Numbers that do not parse become missing, as in :meth:`transform`.
        """
        out = np.empty((len(records), len(self.features)), dtype=np.float64)
        for j, c in enumerate(self.features):
            codes = self.codes_.get(c)
            values = [r[c] for r in records]
            if codes is not None:
                get = codes.get
                out[:, j] = [get(v, -1) if type(v) is str
                             else -1 if _missing(v) else get(str(v), -1) for v in values]
            else:
                out[:, j] = self._impute(c, _record_numbers(values))
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, Any]:
        return np.asarray(self.features, dtype=object)


class OneHotCodes(CategoryCodes):
    """Categories one-hot, numbers imputed with their median and standardised.

    The output has a block of columns per categorical feature, in feature order, then the
    numeric features in feature order. Each block has a column per training category in sorted
    order; missing values are the category :data:`MISSING`. Past ``max_categories`` the rarest
    categories share one last "infrequent" column, which also takes values never seen in
    training; without it an unseen value is all zeros. These are the rules, and the output, of
    scikit-learn's ``OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=...)``
    on text, and of ``SimpleImputer(strategy="median")`` then ``StandardScaler`` on numbers
    (a number column with no value at all is imputed with 0 instead of being dropped).
    """

    def __init__(self, features: list[str], categorical: list[str],
                 max_categories: int | None = 64) -> None:
        super().__init__(features, categorical, impute=True)
        self.max_categories = max_categories

    def fit(self, x: pd.DataFrame, y: Any = None) -> OneHotCodes:
        if self.max_categories is not None and self.max_categories < 1:
            raise ValueError(f"max_categories of OneHotCodes must be at least 1, "
                             f"got {self.max_categories}")
        self.categories_ = {}
        self.codes_ = {}
        self.widths_: dict[str, int] = {}
        self.unseen_: dict[str, int] = {}
        for c in self.categorical:
            counts = _text_counts(x[c])
            values = sorted(counts)
            column = np.arange(len(values))
            unseen = -1
            if self.max_categories is not None and self.max_categories <= len(values):
                # scikit-learn's rule: keep the max_categories - 1 most frequent, ties going to
                # the later category in sorted order (a stable sort of the counts).
                n_rare = len(values) - (self.max_categories - 1)
                rare = np.argsort([counts[v] for v in values], kind="mergesort")[:n_rare]
                kept = np.ones(len(values), dtype=bool)
                kept[rare] = False
                unseen = int(kept.sum())
                column = np.where(kept, np.cumsum(kept) - 1, unseen)
            self.categories_[c] = values
            self.codes_[c] = dict(zip(values, column.tolist(), strict=True))
            self.unseen_[c] = unseen
            self.widths_[c] = len(values) if unseen < 0 else unseen + 1
        self._fit_numbers(x)
        self.means_: dict[str, float] = {}
        self.scales_: dict[str, float] = {}
        for c in self.numeric:
            numbers = self._impute(c, _numbers(x[c]))
            mean, var = float(numbers.mean()), float(numbers.var())
            n, eps = len(numbers), np.finfo(np.float64).eps
            constant = var <= n * eps * var + (n * mean * eps) ** 2  # as StandardScaler decides
            self.means_[c], self.scales_[c] = mean, 1.0 if constant else float(np.sqrt(var))
        return self

    @property
    def n_features_out_(self) -> int:
        return sum(self.widths_.values()) + len(self.numeric)

    def transform(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
        out = np.zeros((len(x), self.n_features_out_), dtype=np.float64)
        rows = np.arange(len(x))
        small = len(x) <= self._SMALL
        at = 0
        for c in self.categorical:
            if small:
                columns = np.asarray([self._column(c, v) for v in x[c]], dtype=np.intp)
            else:  # position -1 (unseen) picks the last entry: the unseen values' column
                to_column = np.append(np.asarray(list(self.codes_[c].values()), dtype=np.intp),
                                      self.unseen_[c])
                columns = to_column[self._positions(c, x[c], missing=MISSING)]
            hit = columns >= 0
            out[rows[hit], at + columns[hit]] = 1.0
            at += self.widths_[c]
        for c in self.numeric:
            out[:, at] = self._scale(c, self._impute(c, _numbers(x[c])))
            at += 1
        return out

    def _column(self, c: str, value: Any) -> int:
        """The block column of one value (-1: none)."""
        text = value if type(value) is str else MISSING if _missing(value) else str(value)
        return self.codes_[c].get(text, self.unseen_[c])

    def _scale(self, c: str, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return (values - self.means_[c]) / self.scales_[c]

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray[Any, Any]:
        out = np.zeros((len(records), self.n_features_out_), dtype=np.float64)
        at = 0
        for c in self.categorical:
            for i, r in enumerate(records):
                j = self._column(c, r[c])
                if j >= 0:
                    out[i, at + j] = 1.0
            at += self.widths_[c]
        for c in self.numeric:
            out[:, at] = self._scale(c, self._impute(c, _record_numbers([r[c] for r in records])))
            at += 1
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, Any]:
        names: list[str] = []
        for c in self.categorical:
            kept = [v for v, j in self.codes_[c].items() if j != self.unseen_[c]]
            names += [f"{c}_{v}" for v in kept]
            if self.unseen_[c] >= 0:
                names.append(f"{c}_infrequent")
        return np.asarray(names + self.numeric, dtype=object)


def encoder_for(features: list[str], categorical: list[str], *, native: bool,
                allow_nan: bool) -> CategoryCodes:
    """Codes for estimators with native categorical support, else one-hot and scaled numbers."""
    if native:
        return CategoryCodes(features, categorical, impute=not allow_nan)
    return OneHotCodes(features, categorical)


def _text_counts(column: pd.Series) -> dict[str, int]:
    """How often each value occurs, by its text; missing values count as :data:`MISSING`.

    Counted by pandas first and turned into text per distinct value, not per row.
    """
    counts: dict[str, int] = {}
    for value, n in column.value_counts(dropna=False, sort=False).items():
        if n:  # a categorical column lists its unused categories with a count of 0
            text = MISSING if pd.isna(value) else str(value)
            counts[text] = counts.get(text, 0) + int(n)
    return counts


def _numbers(column: pd.Series) -> np.ndarray[Any, Any]:
    """A numeric column as float64, missing (or unparsable) values as NaN."""
    dtype = column.dtype
    values: np.ndarray[Any, Any]
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
        values = column.to_numpy(dtype=np.float64)  # numpy numbers: missing is NaN already
    else:
        if not pd.api.types.is_numeric_dtype(dtype):
            column = pd.to_numeric(column, errors="coerce")
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _record_numbers(values: list[Any]) -> np.ndarray[Any, Any]:
    """Numbers, None (missing) and numeric text, converted by numpy at C speed where it can."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return np.asarray([_number(v) for v in values], dtype=np.float64)


def _number(value: Any) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _missing(value: Any) -> bool:
    """None, NaN, or pandas' NA (what a nullable "string" column yields for a missing value)."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)

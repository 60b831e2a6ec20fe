"""A version's reference profile: a compact summary of its training data and holdout scores.

Monitoring compares production traffic with this profile and never reads the training data
again. Per feature:

* a number: its quantile grid (the distinct values at :data:`GRID_LEVELS` + 1 evenly spaced
  levels) with the training data's exact CDF at each grid value, the PSI bins (deciles, as
  interior edges; each bin is ``(lower, upper]``) with their shares, min, max, mean;
* text, categories and booleans: the :data:`TOP_CATEGORIES` most frequent values with their
  shares and the share of all the others;
* its null rate and its type.

Shares are of the non-null values. Beside the features: the score distribution on the
holdout (a number profile of one score per row: the positive class's probability, the
regression's prediction, the last class's probability), the model's feature importances
(:mod:`~modelyard.monitoring.importance`), the newest training row's date when the request names
a date column, the rows and every column's kind (so a new column in traffic is seen).

The grid is what keeps KS cheap and bounded: the training CDF is exact at each grid value, and
between two neighbouring grid values lies at most ``1 / GRID_LEVELS`` of the training rows, so a
KS statistic measured on the grid is within that of the one against the full training data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

GRID_LEVELS = 50  # quantile steps of a number's grid: KS is exact to 1/50 of the rows
PSI_BINS = 10  # deciles
TOP_CATEGORIES = 20
PROFILE_VERSION = 1
BOOL_TEXT = {True: "true", False: "false"}  # how a boolean category is held
_LEVELS = np.linspace(0.0, 1.0, GRID_LEVELS + 1)

Kind = Literal["number", "category", "other"]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclasses.dataclass(frozen=True)
class NumberProfile:
    """A numeric column (or the scores): its quantile grid, exact CDF there, and PSI bins."""

    grid: list[float]  # distinct quantile values, ascending
    cdf: list[float]  # share of the non-null training values <= each grid value
    edges: list[float]  # interior PSI edges (a subset of grid); bins are (lower, upper]
    proportions: list[float]  # share of the non-null values in each PSI bin (len(edges) + 1)
    min: float | None
    max: float | None
    mean: float | None


@dataclasses.dataclass(frozen=True)
class CategoryProfile:
    """A text, categorical or boolean column: its top values and the share of the rest."""

    categories: list[str]
    proportions: list[float]  # of the non-null values, one per category
    other: float  # share of the non-null values not among the categories


@dataclasses.dataclass(frozen=True)
class FeatureProfile:
    name: str
    kind: Kind
    dtype: str  # the pandas dtype in the training frame
    null_rate: float
    number: NumberProfile | None = None
    category: CategoryProfile | None = None


@dataclasses.dataclass(frozen=True)
class Profile:
    """What monitoring knows of a version's training data (``profile.json`` of its job)."""

    rows: int
    features: list[FeatureProfile]
    columns: dict[str, Kind]  # every column of the training frame, features or not
    score: NumberProfile | None  # the holdout's scores, one per row
    importance: dict[str, float]  # per feature, summing to 1 (or all 0)
    importance_method: str  # "model" (its own importances) or "permutation"
    newest_training_row: dt.datetime | None
    version: int = PROFILE_VERSION

    def feature(self, name: str) -> FeatureProfile | None:
        return next((f for f in self.features if f.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON values: ``dataclasses.asdict``'s dict, without its copy of
        every list element one by one."""
        out = _fields_json(self)
        out["features"] = [_feature_json(f) for f in self.features]
        out["score"] = _fields_json(self.score) if self.score is not None else None
        newest = self.newest_training_row
        out["newest_training_row"] = newest.isoformat() if newest is not None else None
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Profile:
        newest = obj.get("newest_training_row")
        return cls(
            rows=int(obj["rows"]),
            features=[_feature_from_json(f) for f in obj["features"]],
            columns=dict(obj.get("columns") or {}),
            score=_number_from_json(obj.get("score")),
            importance={str(k): float(v) for k, v in (obj.get("importance") or {}).items()},
            importance_method=str(obj.get("importance_method") or "none"),
            newest_training_row=dt.datetime.fromisoformat(newest) if newest else None,
            version=int(obj.get("version", PROFILE_VERSION)),
        )


def _fields_json(record: Any) -> dict[str, Any]:
    """A record's fields in order, its lists and dicts copied whole."""
    out = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        out[field.name] = value.copy() if isinstance(value, list | dict) else value
    return out


def _feature_json(feature: FeatureProfile) -> dict[str, Any]:
    out = _fields_json(feature)
    for name, part in (("number", feature.number), ("category", feature.category)):
        out[name] = _fields_json(part) if part is not None else None
    return out


def _number_from_json(obj: Mapping[str, Any] | None) -> NumberProfile | None:
    if obj is None:
        return None
    names = {f.name for f in dataclasses.fields(NumberProfile)}
    return NumberProfile(**{k: v for k, v in obj.items() if k in names})


def _feature_from_json(obj: Mapping[str, Any]) -> FeatureProfile:
    category = obj.get("category")
    return FeatureProfile(
        name=obj["name"], kind=obj["kind"], dtype=obj["dtype"], null_rate=float(obj["null_rate"]),
        number=_number_from_json(obj.get("number")),
        category=CategoryProfile(**category) if category is not None else None)


def kind_of(series: pd.Series) -> Kind:
    """How a column is profiled: numbers (not booleans), categories (text, categoricals,
    booleans), or other (dates, lists, ...: their null rate and type only)."""
    return kind_of_dtype(series.dtype)


def kind_of_dtype(dtype: Any) -> Kind:
    """:func:`kind_of` a column of this pandas dtype."""
    if pd.api.types.is_bool_dtype(dtype):
        return "category"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "category"
    return "other"


def column_kinds(frame: pd.DataFrame) -> dict[str, Kind]:
    """Every column's :func:`kind_of`, read from the frame's dtypes (no column is built)."""
    return {str(c): kind_of_dtype(d) for c, d in frame.dtypes.items()}


def as_text(series: pd.Series) -> pd.Series:
    """Category values as the strings profiles hold (booleans as ``true``/``false``)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.map(BOOL_TEXT)
    return series.astype("string")


def number_profile(values: Any) -> NumberProfile:
    """The grid, exact CDF, PSI bins and moments of the finite values of ``values``."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]  # a copy: sorted in place
    x.sort()
    if len(x) == 0:
        return NumberProfile([], [], [], [], None, None, None)
    levels = _sorted_quantiles(x, _LEVELS)
    grid = _distinct(levels)
    cdf = np.searchsorted(x, grid, side="right") / len(x)
    # The deciles are grid values (every fifth level), so the drift computation can map each
    # grid cell to its PSI bin.
    step = GRID_LEVELS // PSI_BINS
    edges = _distinct(levels[step:-1:step])
    edges = edges[edges < grid[-1]]  # a last bin (max, inf] would always be empty
    # Each bin's count from where its edges fall in the sorted values, not each value's bin.
    bounds = [0, *np.searchsorted(x, edges, side="right").tolist(), len(x)]
    return NumberProfile(
        grid=grid.tolist(), cdf=cdf.tolist(), edges=edges.tolist(),
        proportions=[(upper - lower) / len(x) for lower, upper in itertools.pairwise(bounds)],
        min=float(x[0]), max=float(x[-1]), mean=float(x.mean()))


def _distinct(levels: FloatArray) -> FloatArray:
    """``np.unique(levels)`` of quantile levels: strictly increasing ones (continuous values)
    are returned as they are, without its sort."""
    if bool((levels[1:] > levels[:-1]).all()):
        return levels
    out: FloatArray = np.unique(levels)
    return out


def _sorted_quantiles(x: FloatArray, q: FloatArray) -> FloatArray:
    """``np.quantile(x, q)`` (its linear method) of values already sorted: no partitioning."""
    position = q * (len(x) - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, len(x) - 1)
    out: FloatArray = x[lower] + (position - lower) * (x[upper] - x[lower])
    return out


def category_profile(series: pd.Series) -> CategoryProfile:
    """The top values of a text, categorical or boolean column and the rest's share.

    The values are ranked as ``Series.value_counts`` ranks them: most frequent first, ties in
    the order it counts them (a categorical's categories, else first appearance).
    """
    values, counts = _category_counts(series)
    present = np.flatnonzero(counts)  # a categorical's unused categories are left out
    total = int(counts[present].sum())
    if total == 0:
        return CategoryProfile([], [], 0.0)
    top = present[np.argsort(-counts[present], kind="stable")[:TOP_CATEGORIES]]
    shares = (counts[top] / total).tolist()
    names = values.take(pa.array(top)).to_pylist() if isinstance(values, pa.Array) else [
        values[i] for i in top]
    return CategoryProfile([str(c) for c in names], shares, max(0.0, 1.0 - sum(shares)))


def _category_counts(series: pd.Series) -> tuple[Any, np.ndarray[Any, np.dtype[np.int64]]]:
    """A category column's distinct non-null values and their counts, in the order
    ``value_counts`` counts them, without building its Series; any other dtype through it."""
    dtype, array = series.dtype, series.array
    if isinstance(dtype, np.dtype) and dtype.kind == "b":  # counted in order of appearance
        flags = series.to_numpy()
        trues = int(np.count_nonzero(flags))
        first = bool(flags[0]) if len(flags) else True
        order = [first, not first]
        counts = [trues if v else len(flags) - trues for v in order]
        return [BOOL_TEXT[v] for v in order], np.asarray(counts, dtype=np.int64)
    if isinstance(dtype, pd.CategoricalDtype):
        codes = np.asarray(array.codes)
        return dtype.categories, np.bincount(codes[codes >= 0],
                                             minlength=len(dtype.categories)).astype(np.int64)
    if isinstance(array, pd.arrays.ArrowExtensionArray):
        chunks = array.__arrow_array__()
        if pa.types.is_string(chunks.type) or pa.types.is_large_string(chunks.type):
            counted = pc.value_counts(chunks)
            valid = counted.field(0).is_valid()
            return (counted.field(0).filter(valid),
                    counted.field(1).filter(valid).to_numpy(zero_copy_only=False))
    counted = (as_text(series) if pd.api.types.is_bool_dtype(dtype) else series).value_counts(
        dropna=True)
    return counted.index, counted.to_numpy(dtype=np.int64)


def null_count(series: pd.Series) -> int:
    """``series.isna().sum()``, without building a Series for numpy columns."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind in "biu":
            return 0
        values = series.to_numpy()
        if dtype.kind in "fc":
            return int(np.count_nonzero(np.isnan(values)))
        if dtype.kind in "mM":
            return int(np.count_nonzero(np.isnat(values)))
        return int(np.count_nonzero(pd.isna(values)))
    return int(np.count_nonzero(series.array.isna()))


def feature_profile(name: str, series: pd.Series) -> FeatureProfile:
    kind = kind_of(series)
    rows = len(series)
    null_rate = float(null_count(series) / rows) if rows else 0.0
    if kind == "number":
        return FeatureProfile(name, kind, str(series.dtype), null_rate,
                              number=number_profile(series.to_numpy(dtype=float, na_value=np.nan)))
    if kind == "category":
        return FeatureProfile(name, kind, str(series.dtype), null_rate,
                              category=category_profile(series))
    return FeatureProfile(name, kind, str(series.dtype), null_rate)


def build_profile(frame: pd.DataFrame, features: Sequence[str], scores: Any, *,
                  importance: Mapping[str, float], importance_method: str,
                  date_column: str | None = None) -> Profile:
    """The profile of a version trained on ``frame`` whose holdout scored ``scores``.

    Args:
        frame: the training rows, as the workflow saw them.
        features: the columns the model uses (profiled); the others are listed by kind.
        scores: the holdout's scores (one per row, or one column per class: the last is kept).
        importance: per feature (see :mod:`~modelyard.monitoring.importance`).
        importance_method: how ``importance`` was measured.
        date_column: the request's date column, if any: its newest value is recorded.
    """
    score_array = np.asarray(scores, dtype=float)
    score_array = score_array.reshape(len(score_array), -1)[:, -1] if score_array.size else (
        score_array.reshape(-1))
    return Profile(
        rows=len(frame),
        features=[feature_profile(f, frame[f]) for f in features],
        columns=column_kinds(frame),
        score=number_profile(score_array),
        importance={f: float(importance.get(f, 0.0)) for f in features},
        importance_method=importance_method,
        newest_training_row=_newest(frame, date_column),
    )


def _newest(frame: pd.DataFrame, date_column: str | None) -> dt.datetime | None:
    """The date column's newest value, in UTC (a naive one taken as UTC), as
    ``pd.to_datetime(column, errors="coerce", utc=True).max()`` has it."""
    if date_column is None or date_column not in frame.columns:
        return None
    column = frame[date_column]
    if pd.api.types.is_datetime64_any_dtype(column.dtype) and not isinstance(
            column.dtype, pd.ArrowDtype):
        newest = column.array.max()  # dates already: no parsing, no converted copy
        if not pd.isna(newest):
            newest = (newest.tz_localize(dt.UTC) if newest.tzinfo is None
                      else newest.tz_convert(dt.UTC))
    else:
        newest = pd.to_datetime(column, errors="coerce", utc=True).max()
    if newest is pd.NaT or pd.isna(newest):
        return None
    value: dt.datetime = newest.to_pydatetime()
    return value

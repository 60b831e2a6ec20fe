"""Drift of current values against a reference profile: PSI, KS, null rates, schema changes.

Every statistic is computed over the profile's bins, with numpy and scipy, and never needs the
training data:

* a number's current values are sorted once; the current CDF at the profile's grid values and
  decile edges is then a binary search of each in them. The KS statistic is the largest
  distance between the current CDF and the training CDF at the grid values (within
  ``1 / GRID_LEVELS`` of the KS statistic against the training rows themselves, see
  :mod:`~modelyard.monitoring.profile`); the PSI is over the decile bins ``(lower, upper]``.
  The p-value is the one-sample KS test's (``scipy.stats.kstwo``, asymptotic for large
  samples), the profile standing for the reference distribution.
* a category's values are counted over the profile's top categories and "other".
* PSI is ``sum((a - e) * ln(a / e))`` over the bins, each share floored at :data:`PSI_FLOOR` so
  an empty bin is a large shift rather than an infinite one; below 0.1 is ``ok``, from 0.1
  ``moderate``, from 0.25 ``major``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from modelyard.monitoring.profile import (
    CategoryProfile,
    FeatureProfile,
    Kind,
    NumberProfile,
    Profile,
    as_text,
    kind_of,
)

PSI_FLOOR = 1e-4
MODERATE = 0.1
MAJOR = 0.25
EXACT_KS_ROWS = 10_000

Band = Literal["ok", "moderate", "major"]
Change = Literal["missing", "new", "retyped"]


@dataclasses.dataclass(frozen=True)
class Shift:
    """How far current values moved from a profile's."""

    psi: float
    ks_statistic: float | None  # numbers only
    ks_pvalue: float | None
    values: int  # non-null current values compared
    nulls: int  # null (or NaN) current values, left out
    mean: float | None = None  # numbers only


@dataclasses.dataclass(frozen=True)
class SchemaChange:
    column: str
    change: Change
    reference_type: str | None  # the kind it was trained on: number, category, other
    current_type: str | None


def band(psi: float) -> Band:
    if psi >= MAJOR:
        return "major"
    return "moderate" if psi >= MODERATE else "ok"


def psi(expected: Any, actual: Any) -> float:
    """Population stability index of shares ``actual`` against ``expected`` (same bins)."""
    e = np.clip(np.asarray(expected, dtype=float), PSI_FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=float), PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def number_shift(profile: NumberProfile, values: Any) -> Shift | None:
    """PSI and KS of the non-null ``values`` against a number profile; None if either is
    empty."""
    x = np.sort(np.asarray(values, dtype=float))
    nulls = len(x)
    x = x[:np.searchsorted(x, np.inf, side="right")]  # NaN sorts after inf: drop it
    nulls -= len(x)
    grid = np.asarray(profile.grid, dtype=float)
    if len(x) == 0 or len(grid) == 0:
        return None
    n = len(x)
    # Sorted once, the current CDF at any point is a binary search of the point in the values.
    current_cdf = np.searchsorted(x, grid, side="right") / n
    ks = float(np.max(np.abs(current_cdf - np.asarray(profile.cdf, dtype=float))))
    at_edges = np.searchsorted(x, np.asarray(profile.edges, dtype=float), side="right")
    shares = np.diff(np.r_[0, at_edges, n]) / n  # bins (lower, upper]
    return Shift(psi=psi(profile.proportions, shares), ks_statistic=ks,
                 ks_pvalue=ks_pvalue(ks, n), values=n, nulls=nulls, mean=float(x.mean()))


def ks_pvalue(statistic: float, n: int) -> float:
    """The one-sample KS test's p-value: exact for small samples, asymptotic for large ones
    (where the exact distribution is slow to evaluate and no different)."""
    if n <= EXACT_KS_ROWS:
        return float(sps.kstwo.sf(statistic, n))
    return float(sps.kstwobign.sf(statistic * np.sqrt(n)))


def category_shift(profile: CategoryProfile, values: pd.Series) -> Shift | None:
    """PSI of a column's values over a category profile's top values and "other"."""
    text = as_text(values).dropna()
    if len(text) == 0 or not profile.categories:
        return None
    codes = pd.Index(profile.categories).get_indexer(text)  # -1: not a top category
    shares = np.bincount(codes + 1,
                         minlength=len(profile.categories) + 1) / len(text)
    return Shift(psi=psi([profile.other, *profile.proportions], shares), ks_statistic=None,
                 ks_pvalue=None, values=len(text), nulls=len(values) - len(text))


def feature_shift(feature: FeatureProfile, values: pd.Series) -> Shift | None:
    """The shift of a feature's current values, by the kind it was profiled as."""
    if feature.number is not None:
        if kind_of(values) != "number":
            return None
        return number_shift(feature.number, values.to_numpy(dtype=float, na_value=np.nan))
    if feature.category is not None:
        return category_shift(feature.category, values)
    return None


def schema_changes(profile: Profile, current: Mapping[str, Kind], *,
                   ignore: frozenset[str] = frozenset()) -> list[SchemaChange]:
    """Features missing from ``current`` or of another kind there, and columns it has that the
    training data did not (``ignore``: columns of the log itself)."""
    out: list[SchemaChange] = []
    for feature in profile.features:
        now = current.get(feature.name)
        if now is None:
            out.append(SchemaChange(feature.name, "missing", feature.kind, None))
        elif now != feature.kind and now != "other":
            out.append(SchemaChange(feature.name, "retyped", feature.kind, now))
    known = set(profile.columns) | {f.name for f in profile.features} | ignore
    out += [SchemaChange(c, "new", None, kind) for c, kind in current.items() if c not in known]
    return out

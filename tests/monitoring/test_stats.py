"""Drift statistics from a stored profile, checked against numpy and scipy on the raw data.

PSI: the profile's decile bins are ``(lower, upper]``; on continuous values (no value on an
edge) ``np.histogram`` over the same edges counts the same rows, and on whole numbers
``pd.cut(right=True)`` does. KS: the profile keeps the training CDF at a quantile grid of
``GRID_LEVELS`` steps, so the statistic it gives is at most the two-sample KS statistic on the
raw rows (it looks at fewer points) and at most ``1 / GRID_LEVELS`` below it (between two grid
values lies at most that share of the training rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from modelyard.monitoring.profile import (
    GRID_LEVELS,
    Profile,
    build_profile,
    category_profile,
    number_profile,
)
from modelyard.monitoring.stats import (
    SchemaChange,
    band,
    category_shift,
    number_shift,
    psi,
    schema_changes,
)

RNG = np.random.default_rng(7)
KS_SLACK = 1 / GRID_LEVELS + 1e-9


def _direct_psi(train: np.ndarray, current: np.ndarray, edges: list[float]) -> float:
    bins = np.r_[-np.inf, edges, np.inf]
    expected = np.histogram(train, bins)[0] / len(train)
    actual = np.histogram(current, bins)[0] / len(current)
    return psi(expected, actual)


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_psi_and_ks_of_numbers_match_numpy_and_scipy_on_the_raw_rows(shift: float) -> None:
    train = RNG.lognormal(size=20_000)
    current = RNG.lognormal(mean=shift, size=5_000)
    current[::50] = np.nan  # nulls are left out of both
    profile = number_profile(train)
    got = number_shift(profile, current)
    assert got is not None
    present = current[~np.isnan(current)]
    assert got.values == len(present)
    assert got.psi == pytest.approx(_direct_psi(train, present, profile.edges), rel=1e-12)
    direct = sps.ks_2samp(train, present).statistic
    assert got.ks_statistic is not None
    assert direct - KS_SLACK <= got.ks_statistic <= direct + 1e-12
    assert got.mean == pytest.approx(present.mean())
    assert got.ks_pvalue == pytest.approx(sps.kstwo.sf(got.ks_statistic, len(present)))
    if shift == 0.0:
        assert band(got.psi) == "ok" and got.ks_pvalue > 0.01
    if shift == 1.0:
        assert band(got.psi) == "major" and got.ks_pvalue < 1e-6


def test_whole_numbers_with_ties_bin_right_closed() -> None:
    train = RNG.integers(0, 24, size=10_000).astype(float)  # every edge is a value
    current = RNG.integers(6, 24, size=3_000).astype(float)
    profile = number_profile(train)
    got = number_shift(profile, current)
    assert got is not None
    bins = [-np.inf, *profile.edges, np.inf]

    def shares(x: np.ndarray) -> np.ndarray:
        codes = pd.cut(x, bins, right=True, labels=False)
        return np.bincount(codes, minlength=len(bins) - 1) / len(x)

    expected, actual = shares(train), shares(current)
    np.testing.assert_allclose(profile.proportions, expected, rtol=1e-12)
    assert got.psi == pytest.approx(psi(expected, actual), rel=1e-12)
    direct = sps.ks_2samp(train, current).statistic
    assert got.ks_statistic is not None
    assert direct - KS_SLACK <= got.ks_statistic <= direct + 1e-12


def test_category_psi_counts_top_values_and_the_rest() -> None:
    train = pd.Series(RNG.choice(["US", "CA", "GB", "FR"], p=[0.6, 0.2, 0.15, 0.05],
                                 size=10_000))
    current = pd.Series(RNG.choice(["US", "CA", "GB", "MX"], p=[0.3, 0.2, 0.2, 0.3],
                                   size=4_000))
    profile = category_profile(train)
    got = category_shift(profile, current)
    assert got is not None
    order = ["US", "CA", "GB", "FR"]
    assert profile.categories == order and profile.other == pytest.approx(0.0)
    expected = [0.0, *(train.value_counts(normalize=True)[order])]
    counts = current.value_counts(normalize=True)
    actual = [counts.get("MX", 0.0), *(counts.get(c, 0.0) for c in order)]
    assert got.psi == pytest.approx(psi(expected, actual), rel=1e-12)
    assert band(got.psi) == "major" and got.ks_statistic is None


def test_bands_are_0_1_and_0_25() -> None:
    assert [band(x) for x in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "ok", "ok", "moderate", "moderate", "major", "major"]


def test_profile_keeps_null_rates_and_columns_and_finds_schema_changes() -> None:
    frame = pd.DataFrame({"amount": [1.0, None, 3.0, 4.0], "country": ["US", "CA", None, "US"],
                          "age": [1, 2, 3, 4], "label": [0, 1, 0, 1]})
    profile = Profile.from_json(build_profile(
        frame, ["amount", "country", "age"], [0.1, 0.9], importance={"amount": 1.0},
        importance_method="model").to_json())
    assert [(f.name, f.kind, f.null_rate) for f in profile.features] == [
        ("amount", "number", 0.25), ("country", "category", 0.25), ("age", "number", 0.0)]
    current = {"amount": "number", "country": "number", "extra": "category", "label": "number"}
    assert schema_changes(profile, current) == [
        SchemaChange("country", "retyped", "category", "number"),
        SchemaChange("age", "missing", "number", None),
        SchemaChange("extra", "new", None, "category"),
    ]

"""``build_profile`` against the pandas implementation it replaced, kept here as the oracle.

The profile counts categories, null rates and dates with numpy and Arrow instead of pandas
Series methods; every frame below must give the same profile, value for value: the same top
categories in the same order (ties included), the same floats, null rates, kinds and dtype
strings, and the same newest date.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelyard.monitoring.profile import (
    GRID_LEVELS,
    PSI_BINS,
    TOP_CATEGORIES,
    CategoryProfile,
    FeatureProfile,
    Kind,
    NumberProfile,
    Profile,
    build_profile,
    column_kinds,
    kind_of,
)
from modelyard.synthetic import payments_table

# --- the oracle: the profile as pandas computed it -------------------------------------------


def _ref_kind_of(series: pd.Series) -> Kind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "category"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "category"
    return "other"


def _ref_as_text(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.map({True: "true", False: "false"})
    return series.astype("string")


def _ref_number_profile(values: Any) -> NumberProfile:
    x = np.asarray(values, dtype=float)
    x = np.sort(x[np.isfinite(x)])
    if len(x) == 0:
        return NumberProfile([], [], [], [], None, None, None)
    q = np.linspace(0.0, 1.0, GRID_LEVELS + 1)
    position = q * (len(x) - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, len(x) - 1)
    levels = x[lower] + (position - lower) * (x[upper] - x[lower])
    grid = np.unique(levels)
    cdf = np.searchsorted(x, grid, side="right") / len(x)
    step = GRID_LEVELS // PSI_BINS
    edges = np.unique(levels[step:-1:step])
    edges = edges[edges < grid[-1]]
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
    return NumberProfile(
        grid=grid.tolist(), cdf=cdf.tolist(), edges=edges.tolist(),
        proportions=(counts / len(x)).tolist(), min=float(x[0]), max=float(x[-1]),
        mean=float(x.mean()))


def _ref_category_profile(series: pd.Series) -> CategoryProfile:
    counts = (_ref_as_text(series) if pd.api.types.is_bool_dtype(series.dtype) else series
              ).value_counts(dropna=True)
    counts = counts[counts > 0]
    total = int(counts.sum())
    if total == 0:
        return CategoryProfile([], [], 0.0)
    top = counts.iloc[:TOP_CATEGORIES]
    shares = (top / total).tolist()
    return CategoryProfile([str(c) for c in top.index], shares, max(0.0, 1.0 - sum(shares)))


def _ref_feature_profile(name: str, series: pd.Series) -> FeatureProfile:
    kind = _ref_kind_of(series)
    rows = len(series)
    null_rate = float(series.isna().sum() / rows) if rows else 0.0
    if kind == "number":
        return FeatureProfile(name, kind, str(series.dtype), null_rate, number=_ref_number_profile(
            series.to_numpy(dtype=float, na_value=np.nan)))
    if kind == "category":
        return FeatureProfile(name, kind, str(series.dtype), null_rate,
                              category=_ref_category_profile(series))
    return FeatureProfile(name, kind, str(series.dtype), null_rate)


def _ref_newest(frame: pd.DataFrame, date_column: str | None) -> dt.datetime | None:
    if date_column is None or date_column not in frame.columns:
        return None
    newest = pd.to_datetime(frame[date_column], errors="coerce", utc=True).max()
    if newest is pd.NaT or pd.isna(newest):
        return None
    value: dt.datetime = newest.to_pydatetime()
    return value


def _ref_build_profile(frame: pd.DataFrame, features: Sequence[str], scores: Any, *,
                       importance: Mapping[str, float], importance_method: str,
                       date_column: str | None = None) -> Profile:
    score_array = np.asarray(scores, dtype=float)
    score_array = score_array.reshape(len(score_array), -1)[:, -1] if score_array.size else (
        score_array.reshape(-1))
    return Profile(
        rows=len(frame),
        features=[_ref_feature_profile(f, frame[f]) for f in features],
        columns={str(c): _ref_kind_of(frame[c]) for c in frame.columns},
        score=_ref_number_profile(score_array),
        importance={f: float(importance.get(f, 0.0)) for f in features},
        importance_method=importance_method,
        newest_training_row=_ref_newest(frame, date_column),
    )


def _ref_to_json(profile: Profile) -> dict[str, Any]:
    out = dataclasses.asdict(profile)
    newest = profile.newest_training_row
    out["newest_training_row"] = newest.isoformat() if newest is not None else None
    return out


# --- the comparison --------------------------------------------------------------------------


def assert_same_profile(frame: pd.DataFrame, features: Sequence[str] | None = None,
                        scores: Any = (), date_column: str | None = None) -> Profile:
    features = list(frame.columns) if features is None else list(features)
    kwargs: dict[str, Any] = {"importance": dict.fromkeys(features, 0.5),
                              "importance_method": "model", "date_column": date_column}
    expected = _ref_build_profile(frame, features, scores, **kwargs)
    got = build_profile(frame, features, scores, **kwargs)
    for want, have in zip(expected.features, got.features, strict=True):
        assert have == want, want.name
    assert got == expected
    # == takes 1 for 1.0 and 0.0 for -0.0; the stored JSON does not
    assert json.dumps(got.to_json()) == json.dumps(_ref_to_json(expected))
    assert Profile.from_json(json.loads(json.dumps(got.to_json()))).features == got.features
    newest, ref_newest = got.newest_training_row, expected.newest_training_row
    assert (newest.tzinfo if newest else None) == (ref_newest.tzinfo if ref_newest else None)
    return got


RNG = np.random.default_rng(18)


def _tied_texts(rows: int) -> list[str | None]:
    """25 values whose counts tie in groups, shuffled, some missing: ties decide the top 20."""
    values = [f"v{i:02d}" for i in range(25)]
    counts = [rows // 50] * 10 + [rows // 100] * 15
    out: list[str | None] = [v for v, n in zip(values, counts, strict=True) for _ in range(n)]
    out += [None] * (rows - len(out))
    return [out[i] for i in RNG.permutation(len(out))]


def test_a_fleet_tenant_and_the_global_frame() -> None:
    table = payments_table(60_000, 50, seed=3)
    frame = table.to_pandas()
    features = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
    tenant = frame[frame["merchant_id"] == frame["merchant_id"].iloc[0]].reset_index(drop=True)
    for part in (frame, tenant):
        profile = assert_same_profile(part, features, RNG.random((len(part) // 4, 2)),
                                      "created_at")
        assert profile.newest_training_row is not None
        assert profile.columns["has_fraud_dispute"] == "category"


def test_ties_in_counts_keep_the_order_pandas_counts_in() -> None:
    texts = _tied_texts(5_000)
    frame = pd.DataFrame({
        "arrow": pd.Series(texts, dtype="str"),
        "arrow_na": pd.Series(texts, dtype=pd.StringDtype("pyarrow")),
        "python": pd.Series(texts, dtype=pd.StringDtype("python")),
        "object": pd.Series(texts, dtype=object),
        "arrow_dtype": pd.Series(texts, dtype=pd.ArrowDtype(pa.string())),
        "large": pd.Series(texts, dtype=pd.ArrowDtype(pa.large_string())),
        "categorical": pd.Series(texts, dtype=pd.CategoricalDtype(
            [f"v{i:02d}" for i in reversed(range(30))])),
    })
    profile = assert_same_profile(frame)
    for feature in profile.features:
        assert feature.category is not None and len(feature.category.categories) == 20
    pairs = pd.DataFrame({"pair": pd.Series(["b", "a"] * 7 + ["c", "d"] * 3, dtype="str")})
    assert assert_same_profile(pairs).features[0].category == CategoryProfile(
        ["b", "a", "c", "d"], [7 / 20, 7 / 20, 3 / 20, 3 / 20], pytest.approx(0.0, abs=1e-12))


def test_text_split_over_arrow_chunks() -> None:
    parts = [pa.table({"t": pa.array(["x", "y", None, "y"])}),
             pa.table({"t": pa.array(["z", "z", "x", "w"])})]
    frame = pa.concat_tables(parts).to_pandas()
    assert assert_same_profile(frame).features[0].category is not None


@pytest.mark.parametrize("values", [
    [True, False, False, True], [False, True], [True] * 5, [False] * 3,
    [True, False, True, False],
])
def test_booleans(values: list[bool]) -> None:
    frame = pd.DataFrame({
        "flag": np.asarray(values, dtype=bool),
        "nullable": pd.array([*values, None], dtype="boolean")[1:],
        "arrow": pd.Series(values, dtype=pd.ArrowDtype(pa.bool_())),
    })
    assert_same_profile(frame)


def test_categoricals() -> None:
    frame = pd.DataFrame({
        "unused": pd.Categorical(["a", "c", None, "a", "c"], categories=["c", "b", "a"]),
        "ordered": pd.Categorical(["lo", "hi", "hi", "lo", None], categories=["lo", "mid", "hi"],
                                  ordered=True),
        "ints": pd.Categorical([3, 1, 3, 1, 2]),
        "floats": pd.Categorical([1.5, np.nan, 2.0, 1.5, 2.0]),
        "dates": pd.Categorical(pd.to_datetime(
            ["2020-01-02", "2020-01-01", "2020-01-02", None, "2020-01-01"])),
        "all_missing": pd.Categorical([None] * 5, categories=["a"]),
    })
    assert_same_profile(frame)


def test_numbers_nulls_and_infinities() -> None:
    rows = 3_000
    floats = RNG.normal(size=rows)
    floats[RNG.random(rows) < 0.1] = np.nan
    floats[:3] = [np.inf, -np.inf, np.inf]
    ints = RNG.integers(0, 7, size=rows)  # few distinct values: values lie on the PSI edges
    frame = pd.DataFrame({
        "floats": floats,
        "float32": floats.astype(np.float32),
        "ints": ints,
        "int8": ints.astype(np.int8),
        "uint": ints.astype(np.uint32),
        "nullable": pd.array(np.where(RNG.random(rows) < 0.2, None, ints), dtype="Int64"),
        "arrow_float": pd.Series(floats, dtype=pd.ArrowDtype(pa.float64())),
        "constant": np.full(rows, 2.5),
        "all_nan": np.full(rows, np.nan),
        "only_inf": np.full(rows, np.inf),
        "negative_zero": np.where(RNG.random(rows) < 0.5, -0.0, 1.0),
    })
    assert_same_profile(frame, scores=RNG.random(rows))


def test_all_missing_columns() -> None:
    rows = 40
    frame = pd.DataFrame({
        "arrow": pd.Series([None] * rows, dtype="str"),
        "arrow_na": pd.Series([None] * rows, dtype=pd.StringDtype("pyarrow")),
        "python": pd.Series([None] * rows, dtype=pd.StringDtype("python")),
        "object": pd.Series([None, np.nan] * (rows // 2), dtype=object),
        "floats": np.full(rows, np.nan),
        "dates": pd.Series([pd.NaT] * rows, dtype="datetime64[us]"),
        "nullable_bool": pd.array([None] * rows, dtype="boolean"),
    })
    profile = assert_same_profile(frame, date_column="dates")
    assert profile.newest_training_row is None


def test_an_empty_frame() -> None:
    frame = pd.DataFrame({
        "text": pd.Series([], dtype="str"),
        "object": pd.Series([], dtype=object),
        "flag": pd.Series([], dtype=bool),
        "number": pd.Series([], dtype=float),
        "category": pd.Categorical([], categories=["a"]),
        "when": pd.Series([], dtype="datetime64[ns]"),
    })
    assert_same_profile(frame, date_column="when")
    assert_same_profile(pd.DataFrame(), features=[], scores=np.empty((0, 2)))


@pytest.mark.parametrize("dates", [
    pd.Series(pd.to_datetime(["2021-03-01 10:00", None, "2021-02-01 00:00"]),
              dtype="datetime64[us]"),
    pd.Series(pd.to_datetime(["2021-03-01 10:00:00.000000001", "2021-02-01 00:00:00.000000000"])),
    pd.Series(pd.to_datetime(["2021-03-28 01:30", None, "2021-10-31 02:30"]).tz_localize(
        "Europe/Paris", ambiguous=True)),
    pd.Series(pd.to_datetime(["2021-01-01", "2020-01-01"]).tz_localize("UTC")),
    pd.Series(pd.to_datetime(["2021-01-01 23:00", "2020-01-01 00:00"]).tz_localize(
        dt.timezone(dt.timedelta(hours=-5)))),
    pd.Series(["2021-01-01", "not a date", None], dtype="str"),
    pd.Series([dt.datetime(2021, 1, 1, tzinfo=dt.UTC), None], dtype=object),
    pd.Series([pd.NaT, pd.NaT], dtype="datetime64[s]"),
    pd.Series(pd.to_datetime(["2021-01-01", None]), dtype=pd.ArrowDtype(pa.timestamp("ms"))),
])
def test_the_newest_date(dates: pd.Series) -> None:
    frame = pd.DataFrame({"when": dates, "x": np.arange(len(dates), dtype=float)})
    # to_pydatetime warns when it drops nanoseconds, in both implementations
    with pytest.warns(UserWarning) if _nanoseconds(dates) else contextlib.nullcontext():
        assert_same_profile(frame, ["when", "x"], date_column="when")
    assert build_profile(frame, ["x"], [], importance={}, importance_method="model",
                         date_column="missing").newest_training_row is None


def _nanoseconds(dates: pd.Series) -> bool:
    return str(dates.dtype) == "datetime64[ns]" and bool((dates.dt.nanosecond != 0).any())


@pytest.mark.parametrize("seed", range(6))
def test_random_frames(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, 400))
    alphabet = np.asarray([f"c{i}" for i in range(int(rng.integers(1, 40)))])
    texts = alphabet[rng.integers(0, len(alphabet), size=rows)].astype(object)
    texts[rng.random(rows) < 0.1] = None
    numbers = np.round(rng.normal(size=rows), int(rng.integers(0, 3)))
    numbers[rng.random(rows) < 0.1] = np.nan
    frame = pd.DataFrame({
        "text": pd.Series(texts, dtype="str"),
        "object": pd.Series(texts, dtype=object),
        "category": pd.Series(texts, dtype="category"),
        "flag": rng.random(rows) < rng.random(),
        "number": numbers,
        "count": rng.integers(0, 5, size=rows),
        "when": pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(
            rng.integers(0, 10**6, size=rows), unit="s")).dt.tz_localize("America/New_York"),
    })
    assert_same_profile(frame, scores=rng.random((rows, 3)), date_column="when")


def test_column_kinds_agree_with_kind_of() -> None:
    frame = pd.DataFrame({"a": [1], "b": ["x"], "c": [True], "d": pd.to_datetime(["2020"]),
                          "e": pd.Categorical(["x"]), 1: [1.5]})
    assert column_kinds(frame) == {str(c): kind_of(frame[c]) for c in frame.columns}

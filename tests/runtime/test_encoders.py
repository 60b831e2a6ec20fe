"""The built-in workflows' encoders: the same matrix whatever the frame's text type, and the
one-hot encoder's matrix equal to the scikit-learn encoders it replaces."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.runtime.builtin import _to_text
from modelyard.runtime.encoders import CategoryCodes, OneHotCodes
from modelyard.synthetic import payments_table

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
CATEGORICAL = ["charge_type", "charge_country"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    data = payments_table(rows=3_000, merchants=20).to_pandas()
    data.loc[5, "charge_country"] = None  # missing
    data.loc[6, "charge_type"] = "never seen in training"  # unseen
    return data


def _expected(encoder: CategoryCodes, frame: pd.DataFrame) -> np.ndarray:
    """The codes by definition: position in the sorted training categories, else -1."""
    out = np.empty((len(frame), len(FEATURES)))
    for j, c in enumerate(FEATURES):
        if c in encoder.codes_:
            out[:, j] = [-1 if v is None or v != v else encoder.codes_[c].get(str(v), -1)
                         for v in frame[c].astype(object)]
        else:
            out[:, j] = frame[c].to_numpy(dtype=float)
    return out


def test_codes_are_the_same_for_arrow_text_python_objects_and_small_batches(
    frame: pd.DataFrame,
) -> None:
    encoder = CategoryCodes(FEATURES, CATEGORICAL).fit(frame.iloc[10:])
    assert frame["charge_type"].dtype.storage == "pyarrow"  # pandas' default text type
    expected = _expected(encoder, frame)
    assert expected[5, 2] == -1 and expected[6, 0] == -1
    np.testing.assert_array_equal(encoder.transform(frame), expected)  # Arrow look-up
    as_objects = frame.astype({c: object for c in CATEGORICAL})
    np.testing.assert_array_equal(encoder.transform(as_objects), expected)  # pandas look-up
    np.testing.assert_array_equal(encoder.transform(frame.head(20)), expected[:20])  # dicts


def test_the_look_up_tables_stay_out_of_the_pickle(frame: pd.DataFrame) -> None:
    encoder = CategoryCodes(FEATURES, CATEGORICAL).fit(frame)
    encoder.transform(frame)
    assert "_lookups" in vars(encoder)
    restored = pickle.loads(pickle.dumps(encoder))
    assert "_lookups" not in vars(restored) and "_lookups" in vars(encoder)
    np.testing.assert_array_equal(restored.transform(frame), encoder.transform(frame))


@pytest.mark.parametrize("dtype", ["str", "string", object, "category"])
def test_codes_leave_missing_values_out_of_the_categories(dtype: Any) -> None:
    kinds = pd.Series(["b", None, "a"] * 30).astype(dtype)
    encoder = CategoryCodes(["kind"], ["kind"]).fit(pd.DataFrame({"kind": kinds}))
    assert encoder.categories_ == {"kind": ["a", "b"]}
    for rows in (90, 3):  # the vectorised path, and small batches
        codes = encoder.transform(pd.DataFrame({"kind": kinds.head(rows)}))[:, 0]
        assert codes.tolist() == [1.0, -1.0, 0.0] * (rows // 3)


def test_the_encoder_reads_its_columns_from_a_wider_frame(frame: pd.DataFrame) -> None:
    encoder = CategoryCodes(FEATURES, CATEGORICAL).fit(frame)  # label, dates and ids beside
    np.testing.assert_array_equal(encoder.transform(frame),
                                  encoder.transform(frame[FEATURES].copy()))


# -- one-hot ----------------------------------------------------------------------------------

WIDE = [*FEATURES, "merchant_id"]  # 20 merchants of skewed sizes: infrequent ones, tied counts
WIDE_CATEGORICAL = [*CATEGORICAL, "merchant_id"]


def _sklearn_one_hot(features: list[str], categorical: list[str], max_categories: int) -> Any:
    """The ColumnTransformer the built-in workflows used before OneHotCodes."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    text = make_pipeline(
        FunctionTransformer(_to_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=max_categories,
                      sparse_output=False),
    )
    numbers = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    numeric = [c for c in features if c not in categorical]
    return ColumnTransformer([("c", text, categorical), ("n", numbers, numeric)],
                             verbose_feature_names_out=False)


@pytest.fixture(scope="module")
def wide(frame: pd.DataFrame) -> pd.DataFrame:
    data = frame.copy()
    data.loc[7, "merchant_id"] = None  # missing in a column with an infrequent bucket
    data.loc[8, "merchant_id"] = "a merchant never seen"
    data.loc[9, "card_age_days"] = None  # numbers: a missing value to impute
    return data


@pytest.mark.parametrize("max_categories", [30, 12, 3, 1])
def test_one_hot_equals_scikit_learns_encoders(wide: pd.DataFrame, max_categories: int) -> None:
    train, test = wide.iloc[10:], wide
    ours = OneHotCodes(WIDE, WIDE_CATEGORICAL, max_categories=max_categories).fit(train)
    bucket = train["merchant_id"].nunique() >= max_categories  # 20 merchants
    assert (ours.unseen_["merchant_id"] >= 0) is bucket
    theirs = _sklearn_one_hot(WIDE, WIDE_CATEGORICAL, max_categories).fit(train[WIDE])
    expected = theirs.transform(test[WIDE])
    n_one_hot = sum(ours.widths_.values())
    assert ours.n_features_out_ == expected.shape[1]
    assert list(ours.get_feature_names_out()) == [
        n.replace("_infrequent_sklearn", "_infrequent") for n in theirs.get_feature_names_out()]

    def check(got: np.ndarray, rows: slice = slice(None)) -> None:
        np.testing.assert_array_equal(got[:, :n_one_hot], expected[rows, :n_one_hot])
        np.testing.assert_allclose(got[:, n_one_hot:], expected[rows, n_one_hot:], rtol=1e-12)

    check(ours.transform(test))  # Arrow text: vectorised Arrow look-up
    check(ours.transform(test.astype({c: object for c in WIDE_CATEGORICAL})))  # pandas look-up
    check(ours.transform(test.head(20)), slice(0, 20))  # small batch: dict look-ups
    records = test[WIDE].head(20).astype(object).where(test[WIDE].head(20).notna(), None)
    check(ours.transform_records(records.to_dict("records")), slice(0, 20))
    # Rows 7 and 8: a missing and an unseen merchant, neither in training.
    end = n_one_hot
    start = end - ours.widths_["merchant_id"]
    merchants = ours.transform(test)[7:9, start:end]
    assert merchants.sum(axis=1).tolist() == ([1.0, 1.0] if bucket else [0.0, 0.0])
    assert not bucket or merchants[:, -1].tolist() == [1.0, 1.0]  # the infrequent column


def test_one_hot_breaks_ties_in_counts_as_scikit_learn_does() -> None:
    data = pd.DataFrame({"kind": list("aabbccd") + [None, "e"], "x": range(9)})
    train = data.iloc[:7]  # a, b, c twice, d once
    for max_categories in (4, 2, 3):
        ours = OneHotCodes(["kind", "x"], ["kind"], max_categories=max_categories).fit(train)
        theirs = _sklearn_one_hot(["kind", "x"], ["kind"], max_categories).fit(train)
        np.testing.assert_allclose(ours.transform(data), theirs.transform(data), rtol=1e-12)
    kept = [v for v, j in ours.codes_["kind"].items() if j != ours.unseen_["kind"]]
    assert kept == ["b", "c"]  # max_categories 3: of the tied a, b, c the later two stay


def test_one_hot_unseen_values_without_an_infrequent_column_are_all_zeros(
    frame: pd.DataFrame,
) -> None:
    encoder = OneHotCodes(FEATURES, CATEGORICAL).fit(frame.iloc[10:])
    assert all(u == -1 for u in encoder.unseen_.values())  # few categories: no bucket
    row = encoder.transform(frame.iloc[[6]])[0]  # charge_type never seen in training
    block = encoder.widths_["charge_type"]
    assert row[:block].tolist() == [0.0] * block
    assert row[block:block + encoder.widths_["charge_country"]].sum() == 1.0


def test_one_hot_keeps_a_number_column_without_values_and_counts_used_categories_only() -> None:
    data = pd.DataFrame({
        "kind": pd.Categorical(["a", "b", "a", None], categories=["a", "b", "never used"]),
        "flag": [True, False, True, True],
        "empty": [np.nan] * 4,
        "amount": [1.0, 2.0, 3.0, 4.0],
    })
    encoder = OneHotCodes(["kind", "flag", "empty", "amount"], ["kind", "flag"]).fit(data)
    assert encoder.categories_ == {"kind": ["__missing__", "a", "b"], "flag": ["False", "True"]}
    out = encoder.transform(data)
    assert out.shape == (4, 3 + 2 + 2)
    np.testing.assert_array_equal(out[:, 5], 0.0)  # imputed with 0, not dropped
    np.testing.assert_allclose(out[:, 6], (data["amount"] - 2.5) / data["amount"].std(ddof=0))
    restored = pickle.loads(pickle.dumps(encoder))
    np.testing.assert_array_equal(restored.transform(data), out)


@pytest.mark.parametrize("dtype", ["str", "string", object])  # missing: NaN, pd.NA, None
def test_one_hot_missing_values_are_one_category_in_every_text_type(dtype: Any) -> None:
    kinds = pd.Series(["a", None, "b"] * 30).astype(dtype)
    encoder = OneHotCodes(["kind"], ["kind"]).fit(pd.DataFrame({"kind": kinds}))
    assert encoder.categories_["kind"] == ["__missing__", "a", "b"]
    expected = np.tile(np.eye(3)[[1, 0, 2]], (30, 1))
    for rows in (90, 3):  # the vectorised path, and small batches
        frame = pd.DataFrame({"kind": kinds.head(rows)})
        np.testing.assert_array_equal(encoder.transform(frame), expected[:rows])


def test_one_hot_refuses_max_categories_below_one(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="max_categories of OneHotCodes must be at least 1"):
        OneHotCodes(FEATURES, CATEGORICAL, max_categories=0).fit(frame)

"""The built-in workflows' category encoder: one set of codes whatever the frame's text type."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from modelyard.runtime.builtin import CategoryCodes
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


def test_the_encoder_reads_its_columns_from_a_wider_frame(frame: pd.DataFrame) -> None:
    encoder = CategoryCodes(FEATURES, CATEGORICAL).fit(frame)  # label, dates and ids beside
    np.testing.assert_array_equal(encoder.transform(frame),
                                  encoder.transform(frame[FEATURES].copy()))

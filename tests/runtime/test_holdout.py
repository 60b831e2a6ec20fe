"""The train/holdout split: date ranges take their start and leave their end, on timestamps and
dates; random fractions are seeded; the date column must be a date.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from modelyard.errors import DataError
from modelyard.request.models import DateRangeSampling, HoldoutSampling
from modelyard.runtime.holdout import date_bound, scan_window, split_date_range, split_random

from .conftest import ids_table


def test_date_bound_refuses_a_column_that_is_not_a_date() -> None:
    schema = pa.schema([("ts", pa.timestamp("us")), ("d", pa.date32()), ("s", pa.string())])
    assert date_bound(schema, "ts") == pa.timestamp("us")
    assert date_bound(schema, "d") == pa.date32()
    with pytest.raises(DataError, match=r"date_range_sampling\.date_column 's' has type string, "
                                        r"not a date or timestamp"):
        date_bound(schema, "s")


def test_a_date_range_holdout_has_the_scan_read_only_rows_before_its_end() -> None:
    sampling = HoldoutSampling.model_validate({
        "sampling_function": "DATE_RANGE",
        "date_range_sampling": {"date_column": "ts", "start_date": "2018-10-01",
                                "end_date": "2019-01-01"}})
    last, end = dt.datetime(2018, 12, 31, 23, 59), dt.datetime(2019, 1, 1)
    table = pa.table({"ts": pa.array([last, end, None], type=pa.timestamp("us"))})
    window = scan_window(sampling, table.schema)
    assert window is not None and table.filter(window)["ts"].to_pylist() == [last]
    random = HoldoutSampling.model_validate({
        "sampling_function": "RANDOM_FRACTION", "random_fraction_sampling": {"fraction": 0.2}})
    assert scan_window(random, table.schema) is None


def test_date_range_split_takes_start_and_leaves_end_on_timestamps() -> None:
    drs = DateRangeSampling.model_validate(
        {"date_column": "ts", "start_date": "2018-10-01", "end_date": "2019-01-01"}
    )
    micro = dt.timedelta(microseconds=1)
    start, end = dt.datetime(2018, 10, 1), dt.datetime(2019, 1, 1)
    table = pa.table({
        "id": list(range(8)),
        "ts": pa.array([start - micro, start, dt.datetime(2018, 11, 15), end - micro, end,
                        dt.datetime(2019, 2, 1), None, dt.datetime(2018, 1, 1)],
                       type=pa.timestamp("us")),
    })
    train, holdout = split_date_range(table, "ts", drs.start_date, drs.end_date)
    assert sorted(train["id"].to_pylist()) == [0, 7]
    assert sorted(holdout["id"].to_pylist()) == [1, 2, 3]


def test_date_range_split_on_a_date_column_with_date_bounds() -> None:
    table = pa.table({
        "id": [0, 1, 2, 3, 4],
        "d": pa.array([dt.date(2018, 9, 30), dt.date(2018, 10, 1), dt.date(2018, 12, 31),
                       dt.date(2019, 1, 1), dt.date(2017, 1, 1)], type=pa.date32()),
    })
    train, holdout = split_date_range(table, "d", dt.date(2018, 10, 1),
                                              dt.date(2019, 1, 1))
    assert sorted(train["id"].to_pylist()) == [0, 4]
    assert sorted(holdout["id"].to_pylist()) == [1, 2]


def test_random_split_is_seeded_and_near_its_fraction() -> None:
    table = ids_table(10_000)
    train, holdout = split_random(table, 0.2, seed=1)
    train_ids, holdout_ids = set(train["id"].to_pylist()), set(holdout["id"].to_pylist())
    assert train_ids.isdisjoint(holdout_ids) and train_ids | holdout_ids == set(range(10_000))
    assert abs(len(holdout_ids) / 10_000 - 0.2) < 0.02
    again = split_random(table, 0.2, seed=1)[1]["id"].to_pylist()
    assert again == holdout["id"].to_pylist()
    other = split_random(table, 0.2, seed=2)[1]["id"].to_pylist()
    assert set(other) != holdout_ids
    half = split_random(table, 0.5, seed=1)[1]
    assert abs(half.num_rows / 10_000 - 0.5) < 0.03

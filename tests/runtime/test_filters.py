"""The request's filters on a real parquet file: every predicate on every column type, checked row
for row against pandas; wrong values, missing columns and a filter that leaves no rows are named
in the message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import DataError
from modelyard.request import parse_request
from modelyard.request.models import Predicate, TrainRequest
from modelyard.runtime import data as datamod
from modelyard.runtime.filters import build_filter, explain_empty_filter

from .conftest import make_filter, read_ids, write


def request_for(
    path: str, names: list[str], filters: Sequence[dict[str, Any]] = ()
) -> TrainRequest:
    return parse_request(
        {
            "metadata": {"model_name": "m"},
            "data": {"features": {"names": names, "path": path}},
            "filters": list(filters),
            "holdout_sampling": {
                "sampling_function": "RANDOM_FRACTION",
                "random_fraction_sampling": {"fraction": 0.2},
            },
            "train": {
                "workflow_name": "sklearn",
                "classifier_features": names[:-1],
                "label": names[-1],
            },
        }
    )


# --------------------------------------------------------------------------------------------
# every predicate, on every column type, against pandas

ROWS = 240
NULLABLE = ["s", "x", "n", "b", "ts", "tz", "d", "cat"]


def predicate_frame() -> pd.DataFrame:
    """Strings, floats, ints, bools, naive and UTC timestamps, dates and a category, with nulls."""
    rng = np.random.default_rng(3)
    strings = rng.choice(np.array(["US", "CA", "GB", "FR"], dtype=object), size=ROWS)
    hours = rng.integers(0, 365 * 24, size=ROWS)
    ts = pd.Series(pd.Timestamp("2018-01-01") + pd.to_timedelta(hours, unit="h")).astype(
        "datetime64[us]"
    )
    ts.iloc[[5, 6, 7]] = pd.Timestamp("2018-03-01 12:00:00")  # exact hits for Equals
    frame = pd.DataFrame(
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "s": strings,
            "x": rng.choice([0.5, 1.5, 2.5, 3.5], size=ROWS),
            "n": pd.array(rng.integers(1, 5, size=ROWS), dtype="Int64"),
            "b": pd.Series(rng.random(ROWS) < 0.4, dtype=object),
            "ts": ts,
            "tz": ts.dt.tz_localize("UTC"),
            "d": pd.Series([t.date() for t in ts], dtype=object),
            "cat": rng.choice(np.array(["US", "CA", "GB", "FR"], dtype=object), size=ROWS),
        }
    )
    for i, column in enumerate(NULLABLE):  # about 10% nulls in every column but id
        nulls = np.random.default_rng(100 + i).random(ROWS) < 0.1
        frame.loc[nulls, column] = None
    return frame


@pytest.fixture(scope="module")
def pred_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, datamod.Source]:
    root = tmp_path_factory.mktemp("predicates")
    frame = predicate_frame()
    # Written with small row groups, `s` as parquet's usual string, `ls` as a large string and
    # `cat` dictionary-encoded (a pandas Categorical).
    table = pa.Table.from_pandas(
        frame.assign(ls=frame["s"], cat=pd.Categorical(frame["cat"])), preserve_index=False
    )
    table = table.set_column(1, "s", table["s"].cast(pa.string()))
    write(root / "pred.parquet", table, row_group_size=50)
    frame["ls"] = frame["s"]
    return frame, datamod.resolve_source("pred.parquet", [str(root)])


def test_predicate_file_has_the_types_under_test(pred_data: Any) -> None:
    _, source = pred_data
    schema = datamod.open_dataset(source).schema
    types = {name: schema.field(name).type for name in schema.names}
    assert types["s"] == pa.string() and types["ls"] == pa.large_string()
    assert types["x"] == pa.float64()
    assert types["n"] == pa.int64() and types["b"] == pa.bool_()
    assert types["ts"] == pa.timestamp("us") and types["tz"] == pa.timestamp("us", tz="UTC")
    assert types["d"] == pa.date32()
    assert pa.types.is_dictionary(types["cat"])
    assert pq.ParquetFile(source.files[0]).metadata.num_row_groups == 5


def pandas_ids(frame: pd.DataFrame, column: str, predicate: str, value: Any) -> set[int]:
    """The ids a direct pandas computation selects; a null never passes a value predicate."""
    series = frame[column]
    present = series.notna()
    if predicate == "IsNull":
        return set(frame.loc[~present, "id"])
    if predicate == "IsNotNull":
        return set(frame.loc[present, "id"])
    v = series[present]
    if predicate == "Between":
        mask = (v >= value[0]) & (v <= value[1])
    else:
        mask = {
            "IsIn": lambda: v.isin(value),
            "NotIn": lambda: ~v.isin(value),
            "Equals": lambda: v == value,
            "NotEquals": lambda: v != value,
            "GreaterThan": lambda: v > value,
            "GreaterThanOrEqual": lambda: v >= value,
            "LessThan": lambda: v < value,
            "LessThanOrEqual": lambda: v <= value,
        }[predicate]()
    return set(frame.loc[present, "id"][mask.to_numpy(dtype=bool)])


T = pd.Timestamp
D = dt.date

CASES = [
    # strings
    ("s", "IsIn", {"string_vals": ["US", "CA"]}, ["US", "CA"]),
    ("s", "NotIn", {"string_vals": ["US"]}, ["US"]),
    ("s", "Equals", {"string_val": "GB"}, "GB"),
    ("s", "NotEquals", {"string_val": "GB"}, "GB"),
    ("s", "GreaterThan", {"string_val": "FR"}, "FR"),
    ("s", "GreaterThanOrEqual", {"string_val": "FR"}, "FR"),
    ("s", "LessThan", {"string_val": "GB"}, "GB"),
    ("s", "LessThanOrEqual", {"string_val": "GB"}, "GB"),
    ("s", "Between", {"min": "CA", "max": "GB"}, ("CA", "GB")),
    ("s", "IsNull", None, None),
    ("s", "IsNotNull", None, None),
    ("ls", "IsIn", {"string_vals": ["US", "CA"]}, ["US", "CA"]),
    ("ls", "GreaterThan", {"string_val": "FR"}, "FR"),
    # floats
    ("x", "IsIn", {"number_vals": [0.5, 3.5]}, [0.5, 3.5]),
    ("x", "NotIn", {"number_vals": [0.5]}, [0.5]),
    ("x", "Equals", {"number_val": 1.5}, 1.5),
    ("x", "NotEquals", {"number_val": 1.5}, 1.5),
    ("x", "GreaterThan", {"number_val": 1.5}, 1.5),
    ("x", "GreaterThanOrEqual", {"number_val": 1.5}, 1.5),
    ("x", "LessThan", {"number_val": 2.5}, 2.5),
    ("x", "LessThanOrEqual", {"number_val": 2.5}, 2.5),
    ("x", "Between", {"min": 1, "max": 2.5}, (1.0, 2.5)),
    ("x", "IsNull", None, None),
    ("x", "IsNotNull", None, None),
    # integers
    ("n", "IsIn", {"number_vals": [1, 3]}, [1, 3]),
    ("n", "NotIn", {"number_vals": [2]}, [2]),
    ("id", "NotIn", {"number_vals": [0, 1, 2, 239]}, [0, 1, 2, 239]),
    ("n", "Equals", {"number_val": 2}, 2),
    ("n", "NotEquals", {"number_val": 2}, 2),
    ("n", "GreaterThan", {"number_val": 2}, 2),
    ("n", "GreaterThanOrEqual", {"number_val": 2}, 2),
    ("n", "LessThan", {"number_val": 3}, 3),
    ("n", "LessThanOrEqual", {"number_val": 3}, 3),
    ("n", "Between", {"min": 2, "max": 3}, (2, 3)),
    ("n", "IsNull", None, None),
    ("n", "IsNotNull", None, None),
    ("id", "GreaterThan", {"number_val": 99.5}, 99.5),
    ("id", "Between", {"min": 9.5, "max": 20.5}, (9.5, 20.5)),
    # booleans
    ("b", "Equals", {"bool_val": True}, True),
    ("b", "Equals", {"bool_val": False}, False),
    ("b", "NotEquals", {"bool_val": True}, True),
    ("b", "IsNull", None, None),
    ("b", "IsNotNull", None, None),
    # naive timestamps
    ("ts", "Equals", {"date_val": "2018-03-01T12:00:00"}, T("2018-03-01 12:00")),
    ("ts", "NotEquals", {"date_val": "2018-03-01T12:00:00"}, T("2018-03-01 12:00")),
    ("ts", "GreaterThan", {"date_val": "2018-06-01"}, T("2018-06-01")),
    ("ts", "GreaterThanOrEqual", {"date_val": "2018-06-01"}, T("2018-06-01")),
    ("ts", "LessThan", {"date_val": "2018-06-01"}, T("2018-06-01")),
    ("ts", "LessThanOrEqual", {"date_val": "2018-03-01T12:00:00"}, T("2018-03-01 12:00")),
    ("ts", "Between", {"min": "2018-03-01", "max": "2018-06-30"}, (T("2018-03-01"),
                                                                   T("2018-06-30"))),
    # an offset is converted to UTC for a naive column
    ("ts", "GreaterThanOrEqual", {"date_val": "2018-06-01T02:00:00+02:00"}, T("2018-06-01")),
    ("ts", "IsNull", None, None),
    ("ts", "IsNotNull", None, None),
    # UTC timestamps: a naive value means UTC
    ("tz", "GreaterThanOrEqual", {"date_val": "2018-06-01"}, T("2018-06-01", tz="UTC")),
    ("tz", "LessThan", {"date_val": "2018-06-01T02:00:00+02:00"}, T("2018-06-01", tz="UTC")),
    ("tz", "Between", {"min": "2018-03-01", "max": "2018-04-01"}, (T("2018-03-01", tz="UTC"),
                                                                   T("2018-04-01", tz="UTC"))),
    # dates
    ("d", "Equals", {"date_val": "2018-03-01"}, D(2018, 3, 1)),
    ("d", "NotEquals", {"date_val": "2018-03-01"}, D(2018, 3, 1)),
    ("d", "GreaterThan", {"date_val": "2018-06-01"}, D(2018, 6, 1)),
    ("d", "LessThanOrEqual", {"date_val": "2018-06-01"}, D(2018, 6, 1)),
    ("d", "Between", {"min": "2018-03-01", "max": "2018-03-31"}, (D(2018, 3, 1),
                                                                  D(2018, 3, 31))),
    ("d", "IsNull", None, None),
    ("d", "IsNotNull", None, None),
    # a dictionary-encoded (categorical) column
    ("cat", "IsIn", {"string_vals": ["US", "FR"]}, ["US", "FR"]),
    ("cat", "NotIn", {"string_vals": ["US"]}, ["US"]),
    ("cat", "Equals", {"string_val": "US"}, "US"),
    ("cat", "NotEquals", {"string_val": "US"}, "US"),
    ("cat", "GreaterThan", {"string_val": "CA"}, "CA"),
    ("cat", "GreaterThanOrEqual", {"string_val": "FR"}, "FR"),
    ("cat", "LessThan", {"string_val": "GB"}, "GB"),
    ("cat", "LessThanOrEqual", {"string_val": "FR"}, "FR"),
    ("cat", "Between", {"min": "CA", "max": "GB"}, ("CA", "GB")),
    ("cat", "IsNull", None, None),
    ("cat", "IsNotNull", None, None),
]


def case_id(case: Any) -> str:
    column, predicate, value = (case.values if hasattr(case, "values") else case)[:3]
    return f"{column}-{predicate}-{value}".replace(" ", "")


@pytest.mark.parametrize(
    ("column", "predicate", "value", "pandas_value"), CASES, ids=[case_id(c) for c in CASES]
)
def test_filter_selects_what_pandas_selects(
    pred_data: Any, column: str, predicate: str, value: Any, pandas_value: Any
) -> None:
    frame, source = pred_data
    expected = pandas_ids(frame, column, predicate, pandas_value)
    assert 0 < len(expected) < ROWS, "a case that keeps all or no rows proves little"
    assert read_ids(source, [make_filter(column, predicate, value)]) == expected


def test_the_cases_cover_every_predicate_on_every_type() -> None:
    covered: dict[str, set[str]] = {}
    for case in CASES:
        column, predicate = (case.values if hasattr(case, "values") else case)[:2]
        covered.setdefault(str(column), set()).add(str(predicate))
    every = {p.value for p in Predicate}
    for column in ("s", "x", "n", "cat"):
        assert covered[column] == every, column
    assert covered["ts"] == every - {"IsIn", "NotIn"}  # there is no date_vals kind
    assert covered["d"] >= {"Equals", "GreaterThan", "Between", "IsNull"}
    assert covered["b"] >= {"Equals", "NotEquals", "IsNull", "IsNotNull"}


def test_filters_are_anded_and_only_the_asked_columns_come_back(pred_data: Any) -> None:
    frame, source = pred_data
    filters = [
        make_filter("s", "IsIn", {"string_vals": ["US", "CA"]}),
        make_filter("x", "GreaterThan", {"number_val": 1.0}),
        make_filter("ts", "LessThan", {"date_val": "2018-07-01"}),
    ]
    dataset = datamod.open_dataset(source)
    table = datamod.scan(dataset, ["id", "s"], build_filter(filters, dataset.schema))
    assert table.column_names == ["id", "s"]
    expected = (
        pandas_ids(frame, "s", "IsIn", ["US", "CA"])
        & pandas_ids(frame, "x", "GreaterThan", 1.0)
        & pandas_ids(frame, "ts", "LessThan", T("2018-07-01"))
    )
    assert set(table["id"].to_pylist()) == expected
    assert build_filter([], dataset.schema) is None


def test_equals_on_a_large_integer_id_selects_that_row(tmp_path: Path) -> None:
    big = 2**53
    write(tmp_path / "ids.parquet", pa.table({"id": pa.array([big, big + 1, big + 2])}))
    source = datamod.resolve_source("ids.parquet", [str(tmp_path)])
    assert read_ids(source, [make_filter("id", "Equals", {"number_val": big + 1})]) == {big + 1}


WRONG_TYPES = [
    ("x", "Equals", {"string_val": "abc"},
     r"filter on 'x': the value 'abc' does not fit the column's type double; "
     r"use a number_val / number_vals value"),
    ("s", "Equals", {"number_val": 3},
     r"filter on 's': the value 3 does not fit the column's type string; "
     r"use a string_val / string_vals value"),
    ("s", "IsIn", {"number_vals": [1, 2]}, r"filter on 's': .* type string; use a string_val"),
    ("n", "Equals", {"bool_val": True},
     r"filter on 'n': the value True .* type int64; use a number"),
    ("b", "Equals", {"number_val": 1},
     r"filter on 'b': the value 1 .* type bool; use a bool_val"),
    ("ts", "GreaterThan", {"string_val": "next tuesday"},
     r"filter on 'ts': the value 'next tuesday' does not fit the column's type timestamp\[us\]; "
     r"use a date_val"),
    ("d", "Between", {"min": 1, "max": 2}, r"filter on 'd': the value 1 .* type date32"),
    ("s", "Equals", {"date_val": "2018-01-01"}, r"filter on 's': .* type string; use a string_val"),
    ("cat", "Equals", {"number_val": 1}, r"filter on 'cat': .* type string; use a string_val"),
]


@pytest.mark.parametrize(
    ("column", "predicate", "value", "message"), WRONG_TYPES, ids=[case_id(c) for c in WRONG_TYPES]
)
def test_a_value_of_the_wrong_type_names_the_filter(
    pred_data: Any, column: str, predicate: str, value: Any, message: str
) -> None:
    _, source = pred_data
    schema = datamod.open_dataset(source).schema
    with pytest.raises(DataError, match=message):
        build_filter([make_filter(column, predicate, value)], schema)


def test_a_missing_column_is_named_with_the_columns_there_are(pred_data: Any) -> None:
    _, source = pred_data
    dataset = datamod.open_dataset(source)
    columns = r"\(columns: id, s, x, n, b, ts, tz, d, cat, ls\)"
    with pytest.raises(DataError, match=rf"data\.features\.names: no column 'nope' in "
                                        rf"pred\.parquet {columns}"):
        datamod.check_columns(dataset, request_for("pred.parquet", ["s", "nope", "x"]), source)
    req = request_for("pred.parquet", ["s", "x"], [
        {"feature_name": "zzz", "predicate": "IsNull"}])
    with pytest.raises(DataError, match=rf"filters: no column 'zzz' in pred\.parquet {columns}"):
        datamod.check_columns(dataset, req, source)
    datamod.check_columns(dataset, request_for("pred.parquet", ["s", "x", "n"]), source)


def test_a_filter_that_leaves_no_rows_is_explained_filter_by_filter(pred_data: Any) -> None:
    frame, source = pred_data
    dataset = datamod.open_dataset(source)
    filters = [
        make_filter("s", "Equals", {"string_val": "ZZ"}),
        make_filter("x", "GreaterThan", {"number_val": 0}),
    ]
    kept = len(pandas_ids(frame, "x", "GreaterThan", 0.0))
    message = explain_empty_filter(dataset, filters, ROWS, source.display)
    assert message == (
        f"the filters leave no rows of the {ROWS} in pred.parquet (s Equals "
        f"{{'string_val': 'ZZ'}} keeps 0; x GreaterThan {{'number_val': 0}} keeps {kept}); "
        "loosen the filters"
    )

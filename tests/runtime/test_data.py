"""The data layer on real parquet files: path resolution inside the data roots, filters pushed into
the scan (checked row for row against pandas, and by the bytes a selective scan reads), the
train/holdout splits, and the fingerprint of what was read.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from modelyard.errors import DataAccessDenied, DataError
from modelyard.request import parse_request
from modelyard.request.models import DateRangeSampling, Filter, Predicate, TrainRequest
from modelyard.runtime import data as datamod
from modelyard.runtime.filters import build_filter, explain_empty_filter
from modelyard.runtime.holdout import date_bound, split_date_range, split_random

from .conftest import CountingFileSystem

# --------------------------------------------------------------------------------------------
# helpers


def write(path: Path, table: pa.Table | pd.DataFrame, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(table, path, **kwargs)
    return path


def ids_table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(np.arange(start, start + n, dtype=np.int64))})


def make_filter(column: str, predicate: str, value: dict[str, Any] | None) -> Filter:
    body: dict[str, Any] = {"feature_name": column, "predicate": predicate}
    if value is not None:
        body["feature_value"] = value
    return Filter.model_validate(body)


def read_ids(source: datamod.Source, filters: list[Filter]) -> set[int]:
    dataset = datamod.open_dataset(source)
    table = datamod.scan(dataset, ["id"], build_filter(filters, dataset.schema))
    return set(table["id"].to_pylist())


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


def test_date_bound_refuses_a_column_that_is_not_a_date(pred_data: Any) -> None:
    _, source = pred_data
    schema = datamod.open_dataset(source).schema
    assert date_bound(schema, "ts") == pa.timestamp("us")
    assert date_bound(schema, "d") == pa.date32()
    with pytest.raises(DataError, match=r"date_range_sampling\.date_column 's' has type string, "
                                        r"not a date or timestamp"):
        date_bound(schema, "s")


# --------------------------------------------------------------------------------------------
# path resolution


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two data roots and a folder outside both."""
    root1, root2, outside = tmp_path / "root1", tmp_path / "root2", tmp_path / "outside"
    for folder in (root1, root2, outside):
        folder.mkdir()
    write(outside / "secret.parquet", ids_table(3, start=900))
    return root1, root2, outside


def real(path: Path) -> str:
    return os.path.realpath(path)


def test_a_file_is_resolved_and_read(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "a.parquet", ids_table(5))
    source = datamod.resolve_source("a.parquet", [str(root1)])
    assert source.files == [real(root1 / "a.parquet")] and source.display == "a.parquet"
    assert read_ids(source, []) == set(range(5))
    absolute = datamod.resolve_source(str(root1 / "a.parquet"), [str(root1)])
    assert absolute.files == [real(root1 / "a.parquet")]


def test_a_folder_of_hive_partitions_reads_the_partition_column(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "events" / "country=US" / "part-0.parquet", ids_table(3))
    write(root1 / "events" / "country=CA" / "part-0.parquet", ids_table(2, start=10))
    (root1 / "events" / "_SUCCESS").write_text("")
    (root1 / "events" / "country=CA" / ".part-1.parquet.crc").write_text("")
    source = datamod.resolve_source("events", [str(root1)])
    assert len(source.files) == 2
    dataset = datamod.open_dataset(source)
    assert "country" in dataset.schema.names
    table = datamod.scan(dataset, ["id", "country"], None).sort_by("id")
    assert table.to_pydict() == {"id": [0, 1, 2, 10, 11], "country": ["US"] * 3 + ["CA"] * 2}
    only_ca = make_filter("country", "Equals", {"string_val": "CA"})
    assert read_ids(source, [only_ca]) == {10, 11}


def test_a_folder_with_one_hive_partition_reads_the_partition_column(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "events" / "country=US" / "part-0.parquet", ids_table(3))
    dataset = datamod.open_dataset(datamod.resolve_source("events", [str(root1)]))
    assert "country" in dataset.schema.names


def test_a_glob_matches_parquet_files_only(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "parts" / "a.parquet", ids_table(2))
    write(root1 / "parts" / "b.parquet", ids_table(2, start=2))
    write(root1 / "parts" / "sub" / "c.parquet", ids_table(2, start=4))
    (root1 / "parts" / "readme.txt").write_text("not data")
    flat = datamod.resolve_source("parts/*", [str(root1)])
    assert flat.files == [real(root1 / "parts" / "a.parquet"), real(root1 / "parts" / "b.parquet")]
    assert read_ids(flat, []) == {0, 1, 2, 3}
    deep = datamod.resolve_source("parts/**/*.parquet", [str(root1)])
    assert read_ids(deep, []) == set(range(6))
    with pytest.raises(DataError, match=r"data path parts/\*\.csv does not exist"):
        datamod.resolve_source("parts/*.csv", [str(root1)])


def test_a_relative_path_is_looked_up_in_the_roots_in_order(roots: Any) -> None:
    root1, root2, _ = roots
    write(root1 / "shared.parquet", ids_table(1, start=100))
    write(root2 / "shared.parquet", ids_table(1, start=200))
    write(root2 / "only2.parquet", ids_table(1, start=300))
    both = [str(root1), str(root2)]
    assert read_ids(datamod.resolve_source("shared.parquet", both), []) == {100}
    assert read_ids(datamod.resolve_source("shared.parquet", both[::-1]), []) == {200}
    assert read_ids(datamod.resolve_source("only2.parquet", both), []) == {300}


def test_a_missing_path_names_the_roots_it_looked_in(roots: Any) -> None:
    root1, root2, _ = roots
    with pytest.raises(DataError, match=rf"data path nope\.parquet does not exist \(looked in: "
                                        rf"{root1}, {root2}\); check data\.features\.path") as exc:
        datamod.resolve_source("nope.parquet", [str(root1), str(root2)])
    assert not isinstance(exc.value, DataAccessDenied)
    with pytest.raises(DataError, match=r"does not exist"):
        datamod.resolve_source(str(root1 / "nope.parquet"), [str(root1)])


def test_an_absolute_path_outside_the_roots_is_denied(roots: Any) -> None:
    root1, _, outside = roots
    with pytest.raises(DataAccessDenied, match=rf"data path {outside}/secret\.parquet is outside "
                                               r"the configured data roots"):
        datamod.resolve_source(str(outside / "secret.parquet"), [str(root1)])


def test_a_root_is_not_a_prefix_of_its_sibling(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data-private" / "x.parquet", ids_table(1))
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source(str(tmp_path / "data-private" / "x.parquet"),
                               [str(tmp_path / "data")])


def test_dotdot_cannot_escape_a_root(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "a.parquet", ids_table(1))
    with pytest.raises(DataAccessDenied, match=r"data path \.\./outside/secret\.parquet is "
                                               r"outside the configured data roots"):
        datamod.resolve_source("../outside/secret.parquet", [str(root1)])
    with pytest.raises(DataError):
        datamod.resolve_source("../outside/*.parquet", [str(root1)])
    # `..` that stays inside the root is fine
    inside = datamod.resolve_source("sub/../a.parquet", [str(root1)])
    assert inside.files == [real(root1 / "a.parquet")]


def test_a_symlink_to_a_file_outside_the_root_is_denied(roots: Any) -> None:
    root1, _, outside = roots
    (root1 / "link.parquet").symlink_to(outside / "secret.parquet")
    (root1 / "linked_dir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source("link.parquet", [str(root1)])
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source("linked_dir", [str(root1)])


@pytest.mark.parametrize("path", ["mixed", "mixed/*.parquet"])
def test_a_symlink_inside_a_folder_or_glob_cannot_read_outside(roots: Any, path: str) -> None:
    root1, _, outside = roots
    write(root1 / "mixed" / "ok.parquet", ids_table(2))
    (root1 / "mixed" / "evil.parquet").symlink_to(outside / "secret.parquet")
    try:
        source = datamod.resolve_source(path, [str(root1)])
    except DataAccessDenied:
        return
    assert read_ids(source, []) == {0, 1}, "rows of a file outside the data root were read"


def test_a_file_that_is_not_parquet_says_so(roots: Any) -> None:
    root1, _, _ = roots
    (root1 / "notes.parquet").write_text("charge_id,amount\n1,2\n")
    (root1 / "table.csv").write_text("charge_id,amount\n1,2\n")
    for name in ("notes.parquet", "table.csv"):
        source = datamod.resolve_source(name, [str(root1)])
        with pytest.raises(DataError, match=rf"^{name.replace('.', '[.]')} is not readable as "
                                            r"parquet: .*; Modelyard reads parquet files"):
            datamod.open_dataset(source)


def test_an_arrow_ipc_file_is_read_as_parquet_is(roots: Any) -> None:
    """A fleet's plan writes its tenants' partitions in Arrow's file format."""
    import pyarrow.ipc

    root1, _, _ = roots
    with pa.OSFile(str(root1 / "t000001.arrow"), "wb") as fh, \
            pyarrow.ipc.new_file(fh, ids_table(8).schema) as writer:
        writer.write_table(ids_table(8))
    source = datamod.resolve_source("t000001.arrow", [str(root1)])
    dataset = datamod.open_dataset(source)
    assert read_ids(source, []) == set(range(8))
    assert dataset.count_rows(filter=pc.field("id") < 3) == 3
    fingerprint = datamod.fingerprint(source, dataset)
    assert fingerprint["total_rows"] is None  # no parquet footer: the job counts the rows
    assert fingerprint["files"][0]["size"] == (root1 / "t000001.arrow").stat().st_size
    (root1 / "broken.arrow").write_text("not arrow")
    with pytest.raises(DataError, match=r"^broken[.]arrow is not readable as an Arrow IPC file"):
        datamod.open_dataset(datamod.resolve_source("broken.arrow", [str(root1)]))


def test_a_folder_without_parquet_files_says_so(roots: Any) -> None:
    root1, _, _ = roots
    (root1 / "empty").mkdir()
    (root1 / "empty" / "data.csv").write_text("a\n1\n")
    with pytest.raises(DataError, match=r"data folder empty holds no \.parquet files"):
        datamod.resolve_source("empty", [str(root1)])


def test_a_memory_url_is_read_inside_its_root_and_denied_outside(
    memory_bucket: str, tmp_path: Path
) -> None:
    fs = fsspec.filesystem("memory")
    for name, start in (("a", 0), ("b", 10)):
        with fs.open(f"memory://{memory_bucket}/t/{name}.parquet", "wb") as fh:
            pq.write_table(ids_table(3, start=start), fh)
    root = f"memory://{memory_bucket}/"
    one = datamod.resolve_source(f"memory://{memory_bucket}/t/a.parquet", [str(tmp_path), root])
    assert one.display == f"memory://{memory_bucket}/t/a.parquet"
    assert read_ids(one, []) == {0, 1, 2}
    folder = datamod.resolve_source(f"memory://{memory_bucket}/t/", [root])
    assert read_ids(folder, []) == {0, 1, 2, 10, 11, 12}
    glob = datamod.resolve_source(f"memory://{memory_bucket}/t/b*", [root])
    assert read_ids(glob, [make_filter("id", "GreaterThan", {"number_val": 10})]) == {11, 12}
    for other_roots in ([str(tmp_path)], [f"memory://{memory_bucket}-other/"], []):
        with pytest.raises(DataAccessDenied, match=rf"data URL memory://{memory_bucket}/t/a\."
                                                   r"parquet is outside the configured data roots"):
            datamod.resolve_source(f"memory://{memory_bucket}/t/a.parquet", other_roots)
    with pytest.raises(DataError, match=r"names no parquet file; check data\.features\.path"):
        datamod.resolve_source(f"memory://{memory_bucket}/t/nope.parquet", [root])


def test_dotdot_in_a_url_cannot_escape_a_root(roots: Any) -> None:
    root1, _, _ = roots
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source(f"file://{root1}/../outside/secret.parquet", [f"file://{root1}/"])


# --------------------------------------------------------------------------------------------
# filters are pushed down into the scan


def test_a_selective_filter_on_a_sorted_column_reads_few_row_groups(
    tmp_path: Path, counting_fs: type[CountingFileSystem]
) -> None:
    rows = 100_000
    rng = np.random.default_rng(0)
    table = pa.table({
        "k": pa.array(np.arange(rows, dtype=np.int64)),
        "v": pa.array(rng.random(rows)),
        "s": pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], size=rows)),
    })
    write(tmp_path / "big.parquet", table, row_group_size=10_000)  # 10 row groups
    source = datamod.resolve_source(f"counting://{tmp_path}/big.parquet",
                                    [f"counting://{tmp_path}/"])
    dataset = datamod.open_dataset(source)

    def bytes_for(columns: list[str], filters: list[Filter]) -> tuple[int, int]:
        counting_fs.bytes_read = 0
        out = datamod.scan(dataset, columns, build_filter(filters, dataset.schema))
        return counting_fs.bytes_read, out.num_rows

    everything, n_all = bytes_for(["k", "v", "s"], [])
    last_group, n_last = bytes_for(
        ["k", "v", "s"], [make_filter("k", "GreaterThanOrEqual", {"number_val": 95_000})])
    one_column, _ = bytes_for(["k"], [])
    assert (n_all, n_last) == (rows, 5_000)
    # One row group of ten, plus footers: the statistics let the scan skip the other nine.
    assert last_group < everything / 4, (last_group, everything)
    assert one_column < everything / 2, (one_column, everything)


# --------------------------------------------------------------------------------------------
# train/holdout splits


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


# --------------------------------------------------------------------------------------------
# fingerprint


def fingerprint_of(path: str, root: Path) -> dict[str, Any]:
    source = datamod.resolve_source(path, [str(root)])
    return datamod.fingerprint(source, datamod.open_dataset(source))


def test_fingerprint_is_stable_and_changes_when_a_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "data" / "a.parquet", ids_table(10))
    first = fingerprint_of("data", tmp_path)
    assert first["digest"].startswith("sha256:") and len(first["digest"]) == 7 + 64
    assert first["file_count"] == 1 and first["total_bytes"] == path.stat().st_size
    assert first["files"][0]["num_rows"] == 10 and first["schema"] == {"id": "int64"}
    assert first["total_rows"] == 10  # from the footer: the job needs no count of its own
    assert fingerprint_of("data", tmp_path) == first

    write(path, ids_table(11))  # rewritten with other rows
    rewritten = fingerprint_of("data", tmp_path)
    assert rewritten["digest"] != first["digest"]

    stat = path.stat()  # the same bytes written again later
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    touched = fingerprint_of("data", tmp_path)
    assert touched["digest"] != rewritten["digest"]
    assert fingerprint_of("data", tmp_path)["digest"] == touched["digest"]

    write(tmp_path / "data" / "b.parquet", ids_table(1))  # a file added
    added = fingerprint_of("data", tmp_path)
    assert added["file_count"] == 2 and added["digest"] != touched["digest"]
    assert added["total_rows"] == 12

"""The train/holdout split: a date range, or a seeded random fraction of the rows.

DATE_RANGE: the holdout is ``[start_date, end_date)`` and training is every row before
``start_date``, so a model never learns from its holdout's future; rows at or after ``end_date``
are not read at all (:func:`scan_window` joins the filters pushed into the scan).
RANDOM_FRACTION: a seeded Bernoulli draw per row, so the same data and seed give the same split.
A split that leaves either side empty is refused with the window and the dates the data spans.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.errors import DataError
from modelyard.request.models import DateRangeSampling, HoldoutSampling
from modelyard.runtime.filters import scalar_for


def date_range(sampling: HoldoutSampling) -> DateRangeSampling | None:
    """The date range of a DATE_RANGE holdout; None for a random fraction."""
    return sampling.date_range_sampling if sampling.sampling_function == "DATE_RANGE" else None


def scan_window(sampling: HoldoutSampling, schema: pa.Schema) -> pc.Expression | None:
    """The rows a DATE_RANGE holdout needs read: those before its end_date (None: every row).

    Raises:
        DataError: the date column is not a date or timestamp.
    """
    drs = date_range(sampling)
    if drs is None:
        return None
    date_bound(schema, drs.date_column)
    end = scalar_for(drs.end_date, schema.field(drs.date_column), None)
    return pc.field(drs.date_column) < end


def split(table: pa.Table, sampling: HoldoutSampling) -> tuple[pa.Table, pa.Table]:
    """The filtered rows as (training rows, holdout rows), neither of them empty.

    Raises:
        DataError: one side is empty; the message says which dates or fraction to change.
    """
    drs = date_range(sampling)
    if drs is not None:
        return _split_by_dates(table, drs)
    rfs = sampling.random_fraction_sampling
    if rfs is None:
        raise DataError("holdout_sampling.random_fraction_sampling is missing")
    train, holdout = split_random(table, rfs.fraction, rfs.seed)
    if holdout.num_rows == 0 or train.num_rows == 0:
        raise DataError(
            f"a random fraction of {rfs.fraction} of {table.num_rows} filtered rows "
            "leaves an empty training set or holdout; use more data or another fraction"
        )
    return train, holdout


def _split_by_dates(table: pa.Table, drs: DateRangeSampling) -> tuple[pa.Table, pa.Table]:
    train, holdout = split_date_range(table, drs.date_column, drs.start_date, drs.end_date)
    if holdout.num_rows == 0:
        raise DataError(
            f"the holdout is empty: no filtered rows have {drs.date_column} in "
            f"[{drs.start_date}, {drs.end_date}) (filtered rows span "
            f"{date_span(table, drs.date_column)}); move holdout_sampling.date_range_sampling "
            "to dates the data covers"
        )
    if train.num_rows == 0:
        raise DataError(
            f"no training rows: no filtered rows have {drs.date_column} before "
            f"{drs.start_date} (filtered rows span {date_span(table, drs.date_column)}); "
            "move start_date later"
        )
    return train, holdout


def date_bound(table_or_schema: pa.Schema, column: str) -> pa.DataType:
    t = table_or_schema.field(column).type
    if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
        raise DataError(
            f"holdout_sampling.date_range_sampling.date_column {column!r} has type {t}, "
            "not a date or timestamp; store it as a parquet timestamp or date"
        )
    return t


def split_date_range(
    table: pa.Table, column: str, start: dt.date, end: dt.date
) -> tuple[pa.Table, pa.Table]:
    """Holdout is ``[start, end)``; training is everything before ``start`` (no future leakage)."""
    field = table.schema.field(column)
    lo = scalar_for(start, field, None)
    hi = scalar_for(end, field, None)
    col = table[column]
    holdout_mask = pc.and_(pc.greater_equal(col, lo), pc.less(col, hi))
    train_mask = pc.less(col, lo)
    return table.filter(train_mask), table.filter(holdout_mask)


def split_random(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """A seeded Bernoulli draw per row: the same data and seed always give the same split."""
    mask = np.random.default_rng(seed).random(table.num_rows) < fraction
    holdout_mask = pa.array(mask)
    return table.filter(pc.invert(holdout_mask)), table.filter(holdout_mask)


def date_span(table: pa.Table, column: str) -> str:
    if table.num_rows == 0:
        return "no rows"
    mm = pc.min_max(table[column])
    return f"{mm['min'].as_py()} to {mm['max'].as_py()}"

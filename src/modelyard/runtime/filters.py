"""The request's filters as one pyarrow expression, pushed down into the parquet scan.

A request value is turned into a scalar of its column's type (:func:`scalar_for`), or refused with
a message that names the filter, the value and the type to use instead. Comparisons stay in the
column's own type, so row-group statistics keep pruning the scan: on an integer column,
``> 99.5`` becomes ``>= 100`` rather than a cast of every row to float.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, TypeGuard

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from modelyard.errors import DataError
from modelyard.request.models import Filter, Predicate


def build_filter(filters: Sequence[Filter], schema: pa.Schema) -> pc.Expression | None:
    """AND the request's filters into one pyarrow expression the scan pushes down."""
    expr: pc.Expression | None = None
    for f in filters:
        one = _filter_expression(f, schema.field(f.feature_name))
        expr = one if expr is None else expr & one
    return expr


def _filter_expression(f: Filter, field: pa.Field) -> pc.Expression:
    col = pc.field(f.feature_name)
    p = f.predicate
    if p is Predicate.IsNull:
        return col.is_null()
    if p is Predicate.IsNotNull:
        return col.is_valid()
    value = f.feature_value
    if value is None:  # the request model already refuses this; keep the message if bypassed
        raise DataError(f"filter on {f.feature_name!r}: predicate {p.value} needs a feature_value")
    on_integers = pa.types.is_integer(_value_type(field))
    if p in (Predicate.IsIn, Predicate.NotIn):
        raw = value.values()
        if on_integers:  # no integer equals 2.5: such a value can match nothing
            raw = [v for v in raw if not _fractional(v)]
        values = pa.array([_coerce(v, field, f) for v in raw], type=_value_type(field))
        isin = col.isin(values)
        # A null is not "not in" the list, as it is not "not equal" to a value: drop it.
        return isin if p is Predicate.IsIn else ~isin & col.is_valid()
    if p is Predicate.Between:
        low, high = value.min, value.max
        if on_integers:  # between 9.5 and 20.5 is between 10 and 20
            low = math.ceil(low) if _fractional(low) else low
            high = math.floor(high) if _fractional(high) else high
        return (col >= scalar_for(low, field, f)) & (col <= scalar_for(high, field, f))
    if on_integers and _fractional(value.scalar()):
        return _fractional_on_integers(p, value.scalar(), col, field, f)
    v = scalar_for(value.scalar(), field, f)
    ops = {
        Predicate.Equals: col == v,
        Predicate.NotEquals: col != v,
        Predicate.GreaterThan: col > v,
        Predicate.GreaterThanOrEqual: col >= v,
        Predicate.LessThan: col < v,
        Predicate.LessThanOrEqual: col <= v,
    }
    return ops[p]


def _fractional(value: Any) -> TypeGuard[float]:
    return isinstance(value, float) and math.isfinite(value) and not value.is_integer()


def _fractional_on_integers(
    p: Predicate, value: float, col: pc.Expression, field: pa.Field, f: Filter
) -> pc.Expression:
    """Compare an integer column with a number that is not whole, exactly and still in integers
    (so row-group statistics keep pruning the scan): > 99.5 is >= 100, <= 99.5 is <= 99."""
    if p is Predicate.Equals:
        return col.is_valid() & pc.scalar(False)  # no integer equals 99.5
    if p is Predicate.NotEquals:
        return col.is_valid()
    if p in (Predicate.GreaterThan, Predicate.GreaterThanOrEqual):
        return col >= scalar_for(math.ceil(value), field, f)
    return col <= scalar_for(math.floor(value), field, f)


def _value_type(field: pa.Field) -> pa.DataType:
    t = field.type
    return t.value_type if pa.types.is_dictionary(t) else t


def scalar_for(value: Any, field: pa.Field, f: Filter | None = None) -> pa.Scalar:
    """``value`` as a pyarrow scalar of ``field``'s type (for comparisons pushed into a scan)."""
    return pa.scalar(_coerce(value, field, f), type=_value_type(field))


def _coerce(value: Any, field: pa.Field, f: Filter | None) -> Any:
    """Turn a request value into a Python value of the column's type, or say why it cannot be."""
    t = _value_type(field)
    what = f"filter on {field.name!r}" if f is not None else f"column {field.name!r}"
    try:
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            when = value
            if isinstance(when, str):
                when = dt.datetime.fromisoformat(when)
            if isinstance(when, dt.datetime) and pa.types.is_date(t):
                return when.date()
            if isinstance(when, dt.date) and not isinstance(when, dt.datetime):
                when = dt.datetime(when.year, when.month, when.day)
            if not isinstance(when, dt.datetime):
                raise TypeError
            if pa.types.is_timestamp(t) and t.tz is not None and when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            if pa.types.is_timestamp(t) and t.tz is None and when.tzinfo is not None:
                when = when.astimezone(dt.UTC).replace(tzinfo=None)
            return when
        if pa.types.is_boolean(t):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if pa.types.is_integer(t):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            return float(value)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if not isinstance(value, str):
                raise TypeError
            return value
        return pa.scalar(value).cast(t).as_py()
    except (TypeError, ValueError, OverflowError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(
            f"{what}: the value {value!r} does not fit the column's type {t}; "
            f"use a {_value_kind(t)} value"
        ) from None


def _value_kind(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "date_val (ISO date) or min/max dates"
    if pa.types.is_boolean(t):
        return "bool_val"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number_val / number_vals"
    return "string_val / string_vals"


def explain_empty_filter(
    dataset: ds.Dataset, filters: Sequence[Filter], total_rows: int, display: str
) -> str:
    """Say which filter left no rows (one count per filter; only on the error path)."""
    parts = []
    for f in filters:
        expr = _filter_expression(f, dataset.schema.field(f.feature_name))
        n = dataset.count_rows(filter=expr)
        value = f.feature_value.model_dump(exclude_none=True) if f.feature_value else ""
        parts.append(f"{f.feature_name} {f.predicate.value} {value} keeps {n:,}")
    return (
        f"the filters leave no rows of the {total_rows:,} in {display} ("
        + "; ".join(parts)
        + "); loosen the filters"
    )

"""A pipeline's ``validate_data`` step inside the worker: the data must meet its rules.

The column rules (type, nulls, ranges, allowed values) are a pandera schema checked lazily, so
every failing rule is reported at once; row and positive counts, null rates and freshness are
figures pandera does not hold rules for, checked beside it. A failure is a
:class:`~modelyard.errors.DataError` that names each column, the rule and the offending figure
("column 'amount': 3.2% nulls, over max_null_rate 1%"); it fails the job, which stops the
pipeline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from modelyard.errors import DataError
from modelyard.pipelines.blocks import ColumnRule, ValidateDataParams
from modelyard.request.dates import parse_duration
from modelyard.runtime import data, evaluation

MAX_PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class Validated:
    """What the data was found to be: the step's outputs."""

    rows: int
    positives: int | None
    null_rates: dict[str, float]
    newest: str | None  # the newest date_column value, ISO
    fingerprint: str  # the data's digest (files, sizes, modification times)
    path: str

    def outputs(self) -> dict[str, Any]:
        return {"rows": self.rows, "positives": self.positives, "null_rates": self.null_rates,
                "newest": self.newest, "fingerprint": self.fingerprint, "path": self.path}


def validate(params: ValidateDataParams, data_roots: Sequence[str],
             now: dt.datetime | None = None) -> Validated:
    """Read the columns the rules name from ``params.path`` (inside ``data_roots``) and check
    every rule.

    Raises:
        DataAccessDenied: the path is outside the data roots.
        DataError: a missing column, or the rules that fail, each with its figure.
    """
    source = data.resolve_source(params.path, data_roots)
    dataset = data.open_dataset(source)
    wanted = list(dict.fromkeys(
        [*params.columns, *(c for c in (params.date_column, params.label) if c)]))
    missing = [c for c in wanted if c not in dataset.schema.names]
    if missing:
        raise DataError(f"{params.path}: no column {', '.join(map(repr, missing))} (columns: "
                        f"{', '.join(dataset.schema.names)}); fix the validate_data step's "
                        "column names")
    frame = data.to_frame(data.scan(dataset, wanted, None))
    rows = len(frame)
    null_rates = {c: round(float(frame[c].isna().mean()), 6) if rows else 0.0 for c in wanted}
    problems = _count_problems(params, frame) + _schema_problems(params.columns, frame)
    problems += _null_rate_problems(params.columns, null_rates)
    positives = _positives(frame[params.label]) if params.label else None
    if params.min_positives is not None and positives is not None \
            and positives < params.min_positives:
        problems.append(f"column {params.label!r}: {positives:,} positives, under "
                        f"min_positives {params.min_positives:,}")
    newest = _newest(frame[params.date_column]) if params.date_column else None
    if params.max_age is not None and params.date_column is not None:
        problems += _freshness_problems(params.date_column, params.max_age, newest,
                                        now or dt.datetime.now(dt.UTC))
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = f"; and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise DataError(f"{params.path} fails validation: " + "; ".join(shown) + more
                        + "; fix the data, or the rule if the data is right")
    return Validated(rows, positives, null_rates, newest.isoformat() if newest else None,
                     data.fingerprint(source, dataset)["digest"], params.path)


def _count_problems(params: ValidateDataParams, frame: pd.DataFrame) -> list[str]:
    if params.min_rows is not None and len(frame) < params.min_rows:
        return [f"{len(frame):,} rows, under min_rows {params.min_rows:,}"]
    return []


def _schema_problems(rules: dict[str, ColumnRule], frame: pd.DataFrame) -> list[str]:
    """The column rules as a pandera schema, checked lazily: one line per failing rule."""
    import pandera.errors
    import pandera.pandas as pa

    schema = pa.DataFrameSchema({name: pa.Column(
        nullable=rule.nullable, checks=_checks(rule), required=True)
        for name, rule in rules.items()})
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        problems = []
        for (column, check), group in exc.failure_cases.groupby(["column", "check"],
                                                                 sort=False):
            values = [v for v in group["failure_case"].tolist() if not _is_null(v)]
            if check == "not_nullable":
                problems.append(f"column {column!r}: {len(group):,} nulls, but nullable is "
                                "false")
            elif str(check).startswith("type "):  # one failure for the whole column
                problems.append(f"column {column!r}: {check.removeprefix('type ')} expected, "
                                f"but its type is {frame[column].dtype}")
            else:
                example = f" (e.g. {values[0]!r})" if values else ""
                noun = "value" if len(group) == 1 else "values"
                problems.append(f"column {column!r}: {len(group):,} {noun} {check}{example}")
        return problems
    return []


def _checks(rule: ColumnRule) -> list[Any]:
    import pandera.pandas as pa

    checks = []
    if rule.type is not None:
        checks.append(pa.Check(_TYPE_TESTS[rule.type], element_wise=False,
                               error=f"type {rule.type}"))
    if rule.min is not None:
        checks.append(pa.Check.ge(rule.min, error=f"under min {rule.min:g}"))
    if rule.max is not None:
        checks.append(pa.Check.le(rule.max, error=f"over max {rule.max:g}"))
    if rule.isin is not None:
        checks.append(pa.Check.isin(rule.isin, error=f"not in isin {rule.isin}"))
    return checks


_TYPE_TESTS = {
    "int": pd.api.types.is_integer_dtype,
    "float": lambda s: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s),
    "str": lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s),
    "bool": pd.api.types.is_bool_dtype,
    "datetime": pd.api.types.is_datetime64_any_dtype,
}


def _null_rate_problems(rules: dict[str, ColumnRule], rates: dict[str, float]) -> list[str]:
    return [f"column {name!r}: {_pct(rates[name])} nulls, over max_null_rate "
            f"{_pct(rule.max_null_rate)}"
            for name, rule in rules.items()
            if rule.max_null_rate is not None and rates[name] > rule.max_null_rate]


def _positives(label: pd.Series) -> int:
    """Rows of the positive class: True, 1, or (strings) the last class in sorted order."""
    values = label.dropna()
    if values.empty:
        return 0
    positive = evaluation.positive_class(None, values)
    return int((values == positive).sum())


def _newest(column: pd.Series) -> dt.datetime | None:
    values = pd.to_datetime(column.dropna(), utc=True, errors="coerce").dropna()
    return values.max().to_pydatetime() if not values.empty else None


def _freshness_problems(column: str, max_age: str, newest: dt.datetime | None,
                        now: dt.datetime) -> list[str]:
    if newest is None:
        return [f"column {column!r}: no dates, so it cannot be fresher than max_age {max_age}"]
    age = now - newest
    if age <= parse_duration(max_age):
        return []
    return [f"column {column!r}: newest value {newest.isoformat()} is {_age(age)} old, over "
            f"max_age {max_age}"]


def _age(age: dt.timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _pct(rate: float | None) -> str:
    return f"{100 * (rate or 0.0):.3g}%"


def _is_null(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False

"""The monitoring report of one (model, tenant) over a time window: typed, and as JSON.

The drift trigger reads ``features`` (sorted by ``rank_score``: drift x importance) and
``rows``; the decay trigger reads ``decay`` (the latest window's value against
``holdout_value``, with its ``labelled_rows``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal

from modelyard.monitoring.stats import Band, SchemaChange


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: Literal["number", "category"]
    psi: float
    band: Band  # ok below 0.1, moderate from 0.1, major from 0.25
    ks_statistic: float | None  # numbers only
    ks_pvalue: float | None
    null_rate_reference: float
    null_rate_current: float
    importance: float  # the model's, from the profile (they sum to 1)
    rank_score: float  # psi x importance


@dataclasses.dataclass(frozen=True)
class PredictionDrift:
    """The monitored version's scores in the window against its holdout's."""

    psi: float
    band: Band
    ks_statistic: float
    mean_reference: float | None
    mean_current: float
    rows: int


@dataclasses.dataclass(frozen=True)
class DecayWindow:
    start: dt.datetime
    end: dt.datetime
    labelled_rows: int
    value: float | None  # None: no labels, or the metric is undefined on them (one class)


@dataclasses.dataclass(frozen=True)
class Decay:
    """The version's metric on labelled production rows, window by window (oldest first)."""

    metric: str | None  # None: the task has no metric on one score per row (multi-class)
    holdout_value: float | None
    higher_is_better: bool
    windows: list[DecayWindow]


@dataclasses.dataclass(frozen=True)
class Staleness:
    trained_at: dt.datetime
    model_age_days: float
    newest_training_row: dt.datetime | None  # when the request names a date column
    newest_training_row_age_days: float | None


@dataclasses.dataclass(frozen=True)
class MonitoringReport:
    model_name: str
    tenant: str | None  # as asked
    served_by_tenant: str  # the registry tenant whose version answers it
    version: int
    model_id: str
    source: str  # "production log", or the traffic file
    window_start: dt.datetime
    window_end: dt.datetime
    rows: int
    features: list[FeatureDrift]  # by rank_score, highest first; empty without rows
    prediction: PredictionDrift | None  # None: no scores of this version in the window
    schema_changes: list[SchemaChange]
    decay: Decay
    staleness: Staleness
    importance_method: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value

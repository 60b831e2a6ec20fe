"""The train request: Modelyard's public contract, in Railyard's shape.

Pure data, no I/O. Every model forbids unknown fields, so a typo such as ``holdout_sampeling`` is
refused with a message naming it instead of being silently ignored. Strings, lists and
``custom_params`` are capped (``request/limits.py``), and model and tenant names must be usable
in URLs.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from modelyard.request import dates, limits
from modelyard.request.limits import (
    MAX_COLUMN_CHARS,
    MAX_COLUMNS,
    MAX_FILTER_VALUES,
    MAX_FILTERS,
    MAX_LABEL_CHARS,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_TENANTS,
    MAX_TEXT_CHARS,
)

Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]
Column = Annotated[str, Field(min_length=1, max_length=MAX_COLUMN_CHARS)]
Columns = Annotated[list[Column], Field(min_length=1, max_length=MAX_COLUMNS)]
ShortText = Annotated[str, Field(max_length=MAX_COLUMN_CHARS)]  # may be empty, unlike Column
# Names are checked before pydantic reads them as str, which refuses a lone surrogate with a
# message that does not say which character.
ModelName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS),
                      BeforeValidator(lambda v: limits.validate_name("model name", v)
                                      if isinstance(v, str) and v else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    model_name: ModelName
    model_description: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] = ""
    owner: Label = ""
    project: Label = ""
    trainer: Label = ""


class Features(_Strict):
    names: Columns
    path: Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]

    @field_validator("names")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        dupes = sorted(n for n, count in Counter(names).items() if count > 1)
        if dupes:
            raise ValueError(f"column names must be unique; repeated: {_some(dupes)}")
        return names


class Data(_Strict):
    features: Features
    date_column: ShortText | None = None


class Predicate(enum.StrEnum):
    IsIn = "IsIn"
    NotIn = "NotIn"
    Equals = "Equals"
    NotEquals = "NotEquals"
    GreaterThan = "GreaterThan"
    GreaterThanOrEqual = "GreaterThanOrEqual"
    LessThan = "LessThan"
    LessThanOrEqual = "LessThanOrEqual"
    Between = "Between"
    IsNull = "IsNull"
    IsNotNull = "IsNotNull"


_LIST_PREDICATES = {Predicate.IsIn, Predicate.NotIn}
_SCALAR_PREDICATES = {
    Predicate.Equals,
    Predicate.NotEquals,
    Predicate.GreaterThan,
    Predicate.GreaterThanOrEqual,
    Predicate.LessThan,
    Predicate.LessThanOrEqual,
}
_NULL_PREDICATES = {Predicate.IsNull, Predicate.IsNotNull}

Scalar = str | float | int | bool | dt.date | dt.datetime


class FeatureValue(_Strict):
    """Exactly one of the value kinds (``min``/``max`` together count as one, for Between).

    Numbers stay as written: ``int`` before ``float`` in the unions, so pydantic's smart mode keeps
    ``3`` an int (exact past 2**53, where a float would round an id) and ``3.5`` a float. A date is
    held as a datetime at midnight, however it was written, so equal requests hash equal.
    """

    string_vals: Annotated[list[ShortText], Field(max_length=MAX_FILTER_VALUES)] | None = None
    number_vals: Annotated[list[int | float], Field(max_length=MAX_FILTER_VALUES)] | None = None
    string_val: ShortText | None = None
    number_val: int | float | None = None
    bool_val: bool | None = None
    date_val: dt.datetime | None = None
    min: int | float | dt.datetime | ShortText | None = None
    max: int | float | dt.datetime | ShortText | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> FeatureValue:
        given = self.kinds()
        if len(given) != 1:
            raise ValueError(
                "feature_value must hold exactly one of string_vals, number_vals, string_val, "
                f"number_val, bool_val, date_val, or min and max; got {given or 'none'}"
            )
        if given == ["range"] and (self.min is None or self.max is None):
            raise ValueError("feature_value for Between needs both min and max")
        return self

    def kinds(self) -> list[str]:
        names = [
            k
            for k in (
                "string_vals", "number_vals", "string_val", "number_val", "bool_val", "date_val"
            )
            if getattr(self, k) is not None
        ]
        if self.min is not None or self.max is not None:
            names.append("range")
        return names

    def values(self) -> list[Any]:
        """The list of values of an IsIn/NotIn filter."""
        return list(self.string_vals if self.string_vals is not None else self.number_vals or [])

    def scalar(self) -> Any:
        """The single value of an Equals/GreaterThan/... filter."""
        for k in ("string_val", "number_val", "bool_val", "date_val"):
            v = getattr(self, k)
            if v is not None:
                return v
        return None


class Filter(_Strict):
    feature_name: Column
    predicate: Predicate
    feature_value: FeatureValue | None = None

    @model_validator(mode="after")
    def _value_fits_predicate(self) -> Filter:
        p, v = self.predicate, self.feature_value
        if p in _NULL_PREDICATES:
            if v is not None:
                raise ValueError(f"predicate {p.value} takes no feature_value")
            return self
        if v is None:
            raise ValueError(f"predicate {p.value} needs a feature_value")
        kinds = v.kinds()
        if p in _LIST_PREDICATES and kinds[0] not in ("string_vals", "number_vals"):
            raise ValueError(
                f"predicate {p.value} needs string_vals or number_vals, got {kinds[0]}"
            )
        if p in _SCALAR_PREDICATES and kinds[0] not in (
            "string_val",
            "number_val",
            "bool_val",
            "date_val",
        ):
            raise ValueError(
                f"predicate {p.value} needs one of string_val, number_val, bool_val, date_val; "
                f"got {kinds[0]}"
            )
        if p is Predicate.Between and kinds[0] != "range":
            raise ValueError(f"predicate Between needs feature_value {{min, max}}, got {kinds[0]}")
        return self


class DateRangeSampling(_Strict):
    """``start_date`` and ``end_date`` are datetimes: a date means its midnight."""

    date_column: Column
    start_date: dt.datetime
    end_date: dt.datetime

    @model_validator(mode="after")
    def _ordered(self) -> DateRangeSampling:
        if _as_datetime(self.start_date) >= _as_datetime(self.end_date):
            raise ValueError(
                f"start_date ({self.start_date}) must be before end_date ({self.end_date})"
            )
        return self


class RandomFractionSampling(_Strict):
    fraction: Annotated[float, Field(gt=0.0, lt=1.0)]
    seed: int = 0


class HoldoutSampling(_Strict):
    sampling_function: Literal["DATE_RANGE", "RANDOM_FRACTION"]
    date_range_sampling: DateRangeSampling | None = None
    random_fraction_sampling: RandomFractionSampling | None = None

    @model_validator(mode="after")
    def _matching_block(self) -> HoldoutSampling:
        if self.sampling_function == "DATE_RANGE" and self.date_range_sampling is None:
            raise ValueError("sampling_function DATE_RANGE needs a date_range_sampling block")
        if self.sampling_function == "RANDOM_FRACTION" and self.random_fraction_sampling is None:
            raise ValueError(
                "sampling_function RANDOM_FRACTION needs a random_fraction_sampling block "
                "({fraction, seed})"
            )
        return self


class Train(_Strict):
    workflow_name: Column
    classifier_features: Columns
    label: Column
    # Passed through untouched: a workflow's hyper-parameters are its own business. Only their
    # depth and size are checked.
    custom_params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("custom_params", mode="before")
    @classmethod
    def _bounded(cls, params: Any) -> Any:
        limits.check_custom_params(params)
        return params


class ComputeResource(enum.StrEnum):
    CPU = "CPU"
    GPU = "GPU"
    HIGH_MEMORY = "HIGH_MEMORY"


class Tenants(_Strict):
    """Turn one request into a fleet: one model per tenant (customer), plus fallbacks.

    Tenants with fewer than ``min_training_rows`` training rows get no model of their own and
    are served by their fallback: the segment's model when ``segment_column`` is set, else the
    global one.
    """

    column: Column
    include: Literal["all"] | Annotated[
        list[str], Field(min_length=1, max_length=MAX_TENANTS)] = "all"
    min_training_rows: Annotated[int, Field(ge=1)] = 500
    global_model: bool = True
    segment_column: ShortText | None = None

    @field_validator("include", mode="before")
    @classmethod
    def _servable(cls, include: Any) -> Any:
        for i, name in enumerate(include if isinstance(include, list) else ()):
            try:
                if isinstance(name, str):
                    limits.validate_name("tenant name", name)
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        return include


class Resources(_Strict):
    """What one job needs; executors translate it (Ray resources, Kubernetes requests/limits).

    Unset fields take the executor's defaults for the request's ``compute_resource``.
    """

    num_cpus: Annotated[float | None, Field(gt=0)] = None
    memory_gb: Annotated[float | None, Field(gt=0)] = None
    num_gpus: Annotated[float | None, Field(ge=0)] = None


class TrainRequest(_Strict):
    """A request to train one model; see DESIGN.md for the annotated example."""

    metadata: Metadata
    data: Data
    filters: Annotated[list[Filter], Field(max_length=MAX_FILTERS)] = Field(default_factory=list)
    holdout_sampling: HoldoutSampling
    train: Train
    compute_resource: ComputeResource = ComputeResource.CPU
    resources: Resources = Field(default_factory=Resources)
    tenants: Tenants | None = None
    timeout_seconds: Annotated[float | None, Field(gt=0)] = None
    # Filled when the request is accepted: each relative date it held ("-28d", "today-7d")
    # and the date that replaced it, so a rerun or replay reads the same window.
    resolved_dates: Annotated[dict[Column, dates.ResolvedDate] | None,
                              Field(max_length=2 + 3 * MAX_FILTERS)] = None

    @model_validator(mode="before")
    @classmethod
    def _resolve_relative_dates(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return dates.resolve_request_dates(data, dt.datetime.now(dt.UTC))

    @model_validator(mode="after")
    def _columns_are_declared(self) -> TrainRequest:
        names = set(self.data.features.names)
        missing = [c for c in self.train.classifier_features if c not in names]
        if missing:
            raise ValueError(
                f"train.classifier_features {_some(missing)} are not in data.features.names; "
                "add them there so they are read"
            )
        if self.train.label not in names:
            raise ValueError(
                f"train.label {self.train.label!r} is not in data.features.names; add it there"
            )
        if self.train.label in self.train.classifier_features:
            raise ValueError(
                f"train.label {self.train.label!r} is also a classifier feature: the model "
                "would see its own answer"
            )
        return self

    @model_validator(mode="after")
    def _fleet_children_fit(self) -> TrainRequest:
        """A fleet's children are this request plus the tenant and segment columns among the
        features, and one filter on the segment: they must fit the same caps."""
        if self.tenants is None:
            return self
        names = self.data.features.names
        added = {c for c in (self.tenants.column, self.tenants.segment_column)
                 if c is not None and c not in names}
        if len(names) + len(added) > MAX_COLUMNS:
            raise ValueError(
                f"data.features.names holds {len(names):,} columns and a fleet's models also "
                f"read {sorted(added)}; together at most {MAX_COLUMNS:,} are allowed")
        if self.tenants.segment_column is not None and len(self.filters) >= MAX_FILTERS:
            raise ValueError(
                f"a fleet with a segment_column may hold at most {MAX_FILTERS - 1} filters "
                "(each segment's model adds one on its segment)")
        return self

    def columns(self) -> list[str]:
        """Every column the job reads: declared features plus the date columns it splits on."""
        cols = list(self.data.features.names)
        extra = [self.data.date_column]
        if self.holdout_sampling.date_range_sampling is not None:
            extra.append(self.holdout_sampling.date_range_sampling.date_column)
        if self.tenants is not None:
            extra += [self.tenants.column, self.tenants.segment_column]
        for c in extra:
            if c is not None and c not in cols:
                cols.append(c)
        return cols

    def canonical_json(self) -> str:
        return canonical_json(self.model_dump(mode="json"))

    def request_hash(self) -> str:
        """sha256 of the canonical JSON form: equal requests hash equal, whatever the key order."""
        return request_hash(self.model_dump(mode="json"))


def canonical_json(dumped: dict[str, Any]) -> str:
    """A request's JSON form (``model_dump(mode="json")``) with sorted keys, no spaces."""
    return json.dumps(dumped, sort_keys=True, separators=(",", ":"))


def request_hash(dumped: dict[str, Any]) -> str:
    """sha256 of a request's canonical JSON form."""
    return "sha256:" + hashlib.sha256(canonical_json(dumped).encode()).hexdigest()


def _some(values: list[str], shown: int = 10) -> str:
    """Up to ``shown`` of ``values`` for a message, and how many more there are."""
    more = f" and {len(values) - shown:,} more" if len(values) > shown else ""
    return "[" + ", ".join(limits.shown(v) for v in values[:shown]) + "]" + more


def _as_datetime(value: dt.datetime) -> dt.datetime:
    """Naive UTC, to order an aware and a naive datetime (a naive one means UTC, as in the scan)."""
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value

"""What a job ends with: a :class:`JobResult`, a :class:`FleetPlan`, or an :class:`ExceptionInfo`.

These records cross the worker -> executor -> dispatcher boundary and are stored as JSON in the
job store, so each has ``to_json`` and ``from_json``; ``from_json`` reads rows written before a
field existed. Every ``exception_info`` is built by :func:`failure`, whether the worker caught an
exception or the platform ended the job (a lost worker, a timeout, a cancelled pack), and its
:class:`FailureKind` says which of those it was without parsing the message.
"""

from __future__ import annotations

import dataclasses
import enum
import traceback as tb
from collections.abc import Mapping
from typing import Any, Literal

# The metric a tenant's model must beat its fallback on, per task, and whether higher is better.
# Both sides need it: the worker scores fallbacks per tenant on it, the server compares on it.
GRADUATION_METRIC: dict[str, tuple[str, bool]] = {
    "binary": ("roc_auc", True),
    "multiclass": ("accuracy", True),
    "regression": ("rmse", False),
}


class FailureKind(enum.StrEnum):
    """Why a job failed, as a machine-readable word (``exception_info.kind``)."""

    request_error = "request_error"  # the stored request does not parse
    data_error = "data_error"  # a problem in the data: missing column, empty holdout, ...
    workflow_error = "workflow_error"  # the workflow could not be found, or its code raised
    worker_crashed = "worker_crashed"  # the worker process died (signal, exit)
    out_of_memory = "out_of_memory"
    worker_lost = "worker_lost"  # its server or node went away while it ran
    timeout = "timeout"
    cancelled = "cancelled"
    not_started = "not_started"  # packed behind a job whose worker died; never ran
    pack_stopped = "pack_stopped"  # stopped with its pack when a pack-mate was cancelled
    fleet_failed = "fleet_failed"  # every model of the fleet failed
    executor_error = "executor_error"  # the executor could not start the worker
    protocol_error = "protocol_error"  # the worker sent something that is not an event


# ``exception_info.type`` of platform failures: the names clients have matched on since 0.1.
_TYPE_OF_KIND: dict[FailureKind, str] = {
    FailureKind.worker_crashed: "WorkerCrashed",
    FailureKind.out_of_memory: "OutOfMemory",
    FailureKind.worker_lost: "WorkerLost",
    FailureKind.timeout: "JobTimeout",
    FailureKind.cancelled: "JobCancelled",
    FailureKind.not_started: "NotStarted",
    FailureKind.pack_stopped: "PackStopped",
    FailureKind.fleet_failed: "FleetFailed",
    FailureKind.executor_error: "ExecutorError",
    FailureKind.protocol_error: "WorkerProtocolError",
    FailureKind.request_error: "RequestError",
    FailureKind.data_error: "DataError",
    FailureKind.workflow_error: "WorkflowError",
}


@dataclasses.dataclass(frozen=True)
class ExceptionInfo:
    """A failed job's plain, picklable error record (``exception_info`` in the API)."""

    kind: FailureKind
    type: str  # the exception's class name, or the platform failure's name (WorkerLost, ...)
    message: str
    step: str | None = None
    traceback: str | None = None
    exitcode: int | None = None

    @property
    def reason(self) -> str:
        """One line for the job's transition: ``Type in step S: message``."""
        where = f" in step {self.step}" if self.step else ""
        return f"{self.type}{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kind": self.kind.value}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ExceptionInfo:
        kind = str(obj.get("kind"))
        return cls(
            kind=FailureKind(kind) if kind in FailureKind.__members__ else _kind_of_type(
                str(obj.get("type") or "")),
            type=str(obj.get("type") or "Error"),
            message=str(obj.get("message") or ""),
            step=obj.get("step"),
            traceback=obj.get("traceback"),
            exitcode=obj.get("exitcode"),
        )


def _kind_of_type(name: str) -> FailureKind:
    for kind, type_name in _TYPE_OF_KIND.items():
        if type_name == name:
            return kind
    return FailureKind.workflow_error


def failure(kind: FailureKind | None = None, message: str | None = None, *,
            exc: BaseException | None = None, step: str | None = None,
            exitcode: int | None = None) -> ExceptionInfo:
    """The one way to build an ``exception_info``.

    Either from an exception the worker caught (``exc``; its kind follows its class: a
    ``DataError`` is ``data_error``, a ``RequestError`` ``request_error``, anything else the
    workflow's), or for a failure of the platform (``kind`` and ``message``).
    """
    if exc is None:
        if kind is None or message is None:
            raise TypeError("failure() needs either exc, or kind and message")
        return ExceptionInfo(kind, _TYPE_OF_KIND[kind], message, step=step, exitcode=exitcode)
    cls = type(exc)
    plain = cls.__module__ in ("builtins", "__main__") or cls.__module__.startswith("modelyard.")
    name = cls.__name__ if plain else f"{cls.__module__}.{cls.__qualname__}"
    return ExceptionInfo(
        kind=kind or _kind_of_exception(exc),
        type=name,
        message=message or str(exc) or cls.__name__,
        step=step,
        traceback="".join(tb.format_exception(exc)),
        exitcode=exitcode,
    )


def _kind_of_exception(exc: BaseException) -> FailureKind:
    # By name along the MRO: the protocol imports nothing of the rest of Modelyard.
    names = {c.__name__ for c in type(exc).__mro__}
    if "RequestError" in names:
        return FailureKind.request_error
    if "DataError" in names:
        return FailureKind.data_error
    if isinstance(exc, MemoryError):
        return FailureKind.out_of_memory
    return FailureKind.workflow_error


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """What serving needs to know of a trained model, and how much each feature matters to it;
    stored beside it as ``model.json`` and in its registry version."""

    model_id: str
    workflow: str
    workflow_class: str
    features: list[str]
    label: str
    task: str
    format: str = "pickle"
    # Features that had missing values (null or NaN) in the training or holdout rows; serving
    # accepts null only in these. None: trained before this was recorded.
    missing_values: list[str] | None = None
    # Global importance per feature (summing to 1, or all 0), measured at evaluation for the
    # version's reference profile (modelyard.monitoring.importance), and how: "model" (the
    # estimator's own) or "permutation". None: trained before they were kept with the version.
    importance: dict[str, float] | None = None
    importance_method: str | None = None


@dataclasses.dataclass(frozen=True)
class JobResult:
    """A trained model's job result: where its artefacts are and how it scored."""

    model_id: str
    # Metric name -> value (floats, None when undefined, plus ``task``, ``holdout_rows`` and
    # ``notes``): the open set the API returns as it is.
    metrics: dict[str, Any]
    evaluation_holdout_data_path: str
    evaluation_holdout_label_path: str
    metrics_path: str
    provenance_path: str
    row_counts: dict[str, int]
    workflow_class: str
    data_digest: str
    model: ModelMeta
    request_hash: str
    git_commit: str | None = None
    # A fleet's global or segment model: its graduation metric on each tenant's holdout rows.
    by_tenant: dict[str, float | None] | None = None
    # What promotion rules decide on, measured on the holdout (runtime.champion.Evidence):
    # rows, positives, latency per row, and production's metrics on the same rows.
    evidence: dict[str, Any] | None = None
    # The reference profile monitoring compares traffic with (modelyard.monitoring.profile).
    profile_path: str | None = None
    kind: Literal["model"] = "model"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> JobResult:
        values = _known_fields(cls, obj)
        model = values.get("model")
        if isinstance(model, Mapping):
            values["model"] = ModelMeta(**_known_fields(ModelMeta, model))
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class TenantPlan:
    """One tenant of a fleet plan: its rows, and whether it gets a model of its own."""

    tenant: str
    rows: int
    train_rows: int
    holdout_rows: int
    qualifies: bool
    reason: str
    segment: str | None = None
    path: str | None = None  # its partition, when it qualifies


@dataclasses.dataclass(frozen=True)
class FleetPlan:
    """A fleet's plan job's result: the tenants found in one scan, and their partitions."""

    root: str
    column: str
    segment_column: str | None
    global_model: bool
    segments: list[str]
    tenants: list[TenantPlan]
    row_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    kind: Literal["fleet_plan"] = "fleet_plan"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FleetPlan:
        return cls(
            root=obj["root"], column=obj["column"], segment_column=obj.get("segment_column"),
            global_model=bool(obj.get("global_model", True)),
            segments=list(obj.get("segments") or []),
            tenants=[TenantPlan(**_known_fields(TenantPlan, t))
                     for t in obj.get("tenants") or []],
            row_counts=dict(obj.get("row_counts") or {}),
        )


@dataclasses.dataclass(frozen=True)
class FleetRole:
    """A fleet child's place in its fleet (``WorkerSpec.fleet``)."""

    level: Literal["global", "segment", "tenant"]
    tenant: str
    # Global and segment models score their holdout per tenant on this column.
    tenant_column: str | None = None
    segment: str | None = None
    requeued_from: str | None = None  # a tenant queued again after its pack's worker died

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FleetRole:
        return cls(**_known_fields(cls, obj))


def _known_fields(cls: type[Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without the keys ``cls`` has no field for (written by a newer version)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in obj.items() if k in names}

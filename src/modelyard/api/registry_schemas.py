"""Request and response models of the registry routes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.params import TenantValue
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.registry.tables import PolicyRow, StageEventRow, VersionRow
from modelyard.request.limits import MAX_TEXT_CHARS


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


_WHO = "; ignored when the server has tokens: the token's name is recorded"


class StageChange(_In):
    stage: Stage
    actor: str | None = Field(None, min_length=1,
                              description="who moves it, for the audit trail" + _WHO)
    reason: str = Field("", max_length=MAX_TEXT_CHARS)
    tenant: TenantValue = GLOBAL_TENANT


class Approval(_In):
    user: str | None = Field(None, min_length=1, description="the approver's name" + _WHO)
    comment: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    tenant: TenantValue = GLOBAL_TENANT


class Rollback(_In):
    actor: str | None = Field(None, min_length=1, description="who rolls back" + _WHO)
    reason: str = Field("", max_length=MAX_TEXT_CHARS)
    tenant: TenantValue = GLOBAL_TENANT


class PolicyIn(_In):
    auto_promote: bool = False
    metric: str = Field("roc_auc", min_length=1, max_length=64)
    min_improvement: float = Field(0.0, allow_inf_nan=False)
    higher_is_better: bool = True
    require_same_holdout: bool = True
    four_eyes: bool = Field(True, description="an approver may not approve a version trained by "
                                              "a job they submitted (false: allowed, audited)")
    min_holdout_rows: int = Field(0, ge=0, le=2**31 - 1, description=(
        "guard rail: promotion needs at least this many holdout rows (0: off)"))
    min_holdout_positives: int = Field(0, ge=0, le=2**31 - 1, description=(
        "guard rail: a binary model's holdout needs at least this many positives (0: off)"))
    max_score_psi: float | None = Field(None, ge=0, allow_inf_nan=False, description=(
        "guard rail: the most the candidate's scores may shift (PSI) from production's on the "
        "same holdout rows (null: off)"))
    max_latency_ms_per_row: float | None = Field(None, gt=0, allow_inf_nan=False, description=(
        "guard rail: the slowest predict allowed, in ms per row on the holdout (null: off)"))
    fleet_promotion: Literal["auto", "shadow"] = Field("auto", description=(
        "what a fleet does with the models that pass its rules: auto (production) or shadow "
        "(waiting for an approval)"))
    actor: str | None = Field(None, min_length=1, description="who sets it" + _WHO)


class Policy(BaseModel):
    model_name: str
    auto_promote: bool
    metric: str
    min_improvement: float
    higher_is_better: bool
    require_same_holdout: bool
    four_eyes: bool
    min_holdout_rows: int
    min_holdout_positives: int
    max_score_psi: float | None
    max_latency_ms_per_row: float | None
    fleet_promotion: str
    updated_by: str
    updated_at: dt.datetime


class Version(BaseModel):
    model_name: str
    tenant: str
    version: int
    stage: Stage
    model_id: str
    job_id: str | None
    metrics: dict[str, Any]
    model: dict[str, Any]
    holdout: dict[str, Any]
    provenance_path: str | None
    evidence: dict[str, Any] | None = Field(None, description=(
        "what promotion rules decide on: holdout_rows, holdout_positives, latency_ms_per_row, "
        "and champion: the production version of the time scored on the same holdout rows "
        "(its metrics and the score PSI), or champion_error"))
    importance: dict[str, float] | None = Field(None, description=(
        "global importance per feature, summing to 1, measured when it trained (also "
        "model.importance); null: trained before importances were kept with versions"))
    importance_method: str | None = Field(None, description=(
        "model (the estimator's own importances or split gains) or permutation"))
    created_at: dt.datetime
    updated_at: dt.datetime


class VersionList(BaseModel):
    versions: list[Version]


class StageEvent(BaseModel):
    model_name: str
    tenant: str
    version: int
    from_stage: Stage | None
    to_stage: Stage
    actor: str
    reason: str
    at: dt.datetime


class EventList(BaseModel):
    events: list[StageEvent]


class ModelSummary(BaseModel):
    model_name: str
    versions: int
    tenants: int
    shadows: int
    production: dict[str, int]
    latest_at: dt.datetime


class ModelList(BaseModel):
    models: list[ModelSummary]


def version_of(row: VersionRow) -> Version:
    return Version(
        model_name=row.model_name, tenant=row.tenant, version=row.version, stage=Stage(row.stage),
        model_id=row.model_id, job_id=row.job_id, metrics=row.metrics, model=row.model_meta,
        holdout=row.holdout, provenance_path=row.provenance_path, evidence=row.evidence,
        importance=row.model_meta.get("importance"),
        importance_method=row.model_meta.get("importance_method"), created_at=row.created_at,
        updated_at=row.updated_at,
    )


def event_of(row: StageEventRow) -> StageEvent:
    return StageEvent(
        model_name=row.model_name, tenant=row.tenant, version=row.version,
        from_stage=Stage(row.from_stage) if row.from_stage else None,
        to_stage=Stage(row.to_stage), actor=row.actor, reason=row.reason, at=row.at,
    )


def policy_of(row: PolicyRow) -> Policy:
    return Policy(
        model_name=row.model_name, auto_promote=row.auto_promote, metric=row.metric,
        min_improvement=row.min_improvement, higher_is_better=row.higher_is_better,
        require_same_holdout=row.require_same_holdout, four_eyes=row.four_eyes,
        min_holdout_rows=row.min_holdout_rows, min_holdout_positives=row.min_holdout_positives,
        max_score_psi=row.max_score_psi, max_latency_ms_per_row=row.max_latency_ms_per_row,
        fleet_promotion=row.fleet_promotion, updated_by=row.updated_by,
        updated_at=row.updated_at,
    )

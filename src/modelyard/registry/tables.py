"""Registry rows: model versions, their stage history, approvals and per-model policies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.sql.base import Base, UTCDateTime


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        Index("ux_model_versions_number", "model_name", "tenant", "version", unique=True),
        # The "one production version per (model, tenant)" invariant, enforced by the database.
        Index(
            "ux_model_versions_production", "model_name", "tenant", unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16), index=True)
    model_id: Mapped[str] = mapped_column(String(80), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    holdout: Mapped[dict[str, Any]] = mapped_column(JSON)
    provenance_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What promotion rules decide on (runtime.champion.Evidence): holdout rows and positives,
    # latency per row, production's metrics on the same rows. None: registered before it existed.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class StageEventRow(Base):
    __tablename__ = "model_stage_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    tenant: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    from_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ApprovalRow(Base):
    __tablename__ = "model_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    approver: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PolicyRow(Base):
    __tablename__ = "model_policies"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    auto_promote: Mapped[bool] = mapped_column(Boolean, default=False)
    metric: Mapped[str] = mapped_column(String(64), default="roc_auc")
    min_improvement: Mapped[float] = mapped_column(Float, default=0.0)
    higher_is_better: Mapped[bool] = mapped_column(Boolean, default=True)
    require_same_holdout: Mapped[bool] = mapped_column(Boolean, default=True)
    # An approver may not approve a version trained by a job they submitted, unless this is off.
    four_eyes: Mapped[bool] = mapped_column(Boolean, default=True)
    # Guard rails on any promotion (None or 0: off); see registry.policy.guard_rails.
    min_holdout_rows: Mapped[int] = mapped_column(Integer, default=0)
    min_holdout_positives: Mapped[int] = mapped_column(Integer, default=0)
    max_score_psi: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_latency_ms_per_row: Mapped[float | None] = mapped_column(Float, nullable=True)
    # What a fleet does with the models that pass its rules: "auto" puts them in production,
    # "shadow" puts them in shadow to wait for an approval.
    fleet_promotion: Mapped[str] = mapped_column(String(16), default="auto")
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class FleetTenantRow(Base):
    """Which level serves a tenant of a fleet (tenant, segment or global) and why."""

    __tablename__ = "fleet_tenants"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200), primary_key=True)
    segment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    level: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


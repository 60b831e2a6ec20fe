"""Experiment rows: the experiments, each serving process's per-arm counts, which arm served
each request, and the outcomes that came back (SQLAlchemy 2 ORM)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.sql.base import Base, UTCDateTime

RUNNING = "running"
_RUNNING = text("state = 'running'")


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        # One running experiment per (model, tenant), enforced by the database, so two servers
        # starting one at the same time cannot both succeed.
        Index("ux_experiments_running", "model_name", "tenant", unique=True,
              sqlite_where=_RUNNING, postgresql_where=_RUNNING),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    tenant: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # ExperimentSpec as JSON
    salt: Mapped[str] = mapped_column(String(32))
    # Each arm's share now, in the spec's arm order: what serving splits traffic by.
    weights: Mapped[list[float]] = mapped_column(JSON)
    stage: Mapped[int] = mapped_column(Integer, default=0)  # a rollout's ramp stage
    stage_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    stage_start_requests: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_outcomes: Mapped[int] = mapped_column(Integer, default=0)
    unknown_outcomes: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it ended
    winner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Once its assignments and outcomes are pruned (retention), the scorecard it ended with.
    final_card: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pruned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ArmStatsRow(Base):
    """One serving process's counts of one arm since it started; each process overwrites its
    own row, so the counts of several servers add up without a lost update."""

    __tablename__ = "experiment_arm_stats"

    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    arm: Mapped[str] = mapped_column(String(200), primary_key=True)
    server: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[list[int]] = mapped_column(JSON)  # counts per LATENCY_BUCKETS_MS bucket
    scores: Mapped[list[int]] = mapped_column(JSON)  # counts per SCORE_BINS bin
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AssignmentRow(Base):
    """Which arm served a request (and for which unit), what outcomes are matched against."""

    __tablename__ = "experiment_assignments"
    __table_args__ = (Index("ix_experiment_assignments_unit", "experiment_id", "unit"),)

    request_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    arm: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str | None] = mapped_column(String(200), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class OutcomeRow(Base):
    __tablename__ = "experiment_outcomes"
    __table_args__ = (Index("ux_experiment_outcomes_key", "experiment_id", "key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    # The request id, or "unit:<unit>@<time>": a second outcome with the same key is a
    # duplicate, counted and not stored.
    key: Mapped[str] = mapped_column(String(300))
    arm: Mapped[str] = mapped_column(String(200))
    reward: Mapped[float] = mapped_column(Float)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

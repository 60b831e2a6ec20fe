"""Table rows of pipelines: their specs, their runs, and each run's steps (SQLAlchemy 2 ORM)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.pipelines.spec import PipelineSpec
from modelyard.sql.base import Base, UTCDateTime

ACTIVE_RUN_STATES = ("queued", "running")
_ACTIVE = text("state IN ('queued', 'running')")


class PipelineRow(Base):
    __tablename__ = "pipelines"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    model_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The spec as JSON (PipelineSpec.model_dump(mode="json", by_alias=True)); each run keeps
    # its own copy, so replacing a pipeline never changes a run under way.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    @property
    def parsed_spec(self) -> PipelineSpec:
        """The spec as a model: its steps, its ``model`` and its ``triggers``."""
        return PipelineSpec.model_validate(self.spec)


class PipelineRunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        # One queued or running run per (pipeline, tenant), enforced by the database, so two
        # servers or threads starting one at the same time cannot both succeed.
        Index("ux_pipeline_runs_active", "pipeline_name", "tenant", unique=True,
              sqlite_where=_ACTIVE, postgresql_where=_ACTIVE),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline_name: Mapped[str] = mapped_column(String(200), index=True)
    # '' for a run of every tenant: NULLs never collide in a unique index.
    tenant: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    rerun_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PipelineRunStepRow(Base):
    __tablename__ = "pipeline_run_steps"
    __table_args__ = (Index("ux_pipeline_run_steps_name", "run_id", "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
                                        index=True)
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    # The run whose outputs this step reused (a cache hit, or upstream of a rerun's --from).
    reused_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Rerun --from: this step runs again even if its cache key matches an earlier run's.
    no_cache: Mapped[bool] = mapped_column(Boolean, default=False)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

"""Table rows of the job store (SQLAlchemy 2 ORM). Request/response models live in the API layer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.sql.base import Base, UTCDateTime


class JobRow(Base):
    __tablename__ = "jobs"
    # A page of the jobs list (top-level jobs, or one fleet's children, newest first) reads its
    # rows in index order. With parent_id's index alone, SQLite matches every top-level job
    # and sorts them all, large JSON columns included, to keep fifty. Filtered by state, the
    # planner (without statistics) prefers state's index to the first, and sorts again.
    __table_args__ = (Index("ix_jobs_parent_created", "parent_id", "created_at"),
                      Index("ix_jobs_state_parent_created", "state", "parent_id", "created_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_hash: Mapped[str] = mapped_column(String(80))
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    owner: Mapped[str] = mapped_column(String(200), index=True, default="")
    project: Mapped[str] = mapped_column(String(200), index=True, default="")
    trainer: Mapped[str] = mapped_column(String(200), default="")
    workflow_name: Mapped[str] = mapped_column(String(300))
    compute_resource: Mapped[str] = mapped_column(String(16))
    executor: Mapped[str] = mapped_column(String(32))
    timeout_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    current_step: Mapped[str | None] = mapped_column(String(64), nullable=True)
    server_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    worker_host: Mapped[str | None] = mapped_column(String(300), nullable=True)
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(80), nullable=True, index=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    exception_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Fleets: kind is "train", "fleet" (a parent), or "tenant" / "segment" / "global" (children).
    kind: Mapped[str] = mapped_column(String(16), default="train")
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    tenant: Mapped[str | None] = mapped_column(String(200), nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fleet: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The token identity that submitted it (a fleet's children: the fleet's); None without tokens.
    submitted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # A replay: the job whose request it runs again (jobs.replay); its model is not registered.
    replay_of: Mapped[str | None] = mapped_column(String(32), nullable=True)


class TransitionRow(Base):
    __tablename__ = "job_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")


class StepRow(Base):
    __tablename__ = "job_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ServerRow(Base):
    """A ``modelyard server`` on the job store, and its lease (:mod:`modelyard.jobs.servers`)."""

    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(300), primary_key=True)  # host/pid/nonce
    host: Mapped[str] = mapped_column(String(300))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The live server that failed its running jobs once its lease ran out; set once.
    taken_over_by: Mapped[str | None] = mapped_column(String(300), nullable=True)
    taken_over_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

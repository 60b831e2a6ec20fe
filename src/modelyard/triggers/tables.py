"""The scheduler's memory: one row per (pipeline, trigger, tenant), in the database, so a
restart neither loses a due run nor starts one twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.sql.base import Base, UTCDateTime


class TriggerStateRow(Base):
    __tablename__ = "trigger_states"

    pipeline: Mapped[str] = mapped_column(String(200), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(64), primary_key=True)
    # "" for a trigger that watches the whole model; a tenant for a per_tenant one.
    tenant: Mapped[str] = mapped_column(String(200), primary_key=True)
    # A schedule's next due time; it moves only in the transaction that starts the run.
    next_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_fired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    fired: Mapped[int] = mapped_column(Integer, default=0)
    # The last check's figures (what a person reads to know why it did or did not fire), and
    # why the last firing started no run (debounced, a run already active), if it did not.
    last_check: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_skip: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

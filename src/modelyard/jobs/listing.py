"""Listing jobs: the filters ``GET /jobs`` and the jobs page share, a page of rows and the
number matching, and each row's main metric.

A page is one query and the total one more, whatever the number of jobs: ordered by the
indexed ``created_at`` (newest first, the id breaking ties so pages never overlap), with
``LIMIT``/``OFFSET``. The rows' ``request`` and ``fleet`` columns (the largest) are not loaded:
a listing shows neither.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, defer

from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import GRADUATION_METRIC


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Which jobs to list; None matches any. ``search`` matches the start of a job's id, or
    any part of its model's or project's name (case-insensitive). A fleet's children are
    listed only when ``parent_id`` asks for them."""

    state: JobState | None = None
    owner: str | None = None
    project: str | None = None
    model_name: str | None = None
    parent_id: str | None = None
    search: str | None = None


@dataclasses.dataclass(frozen=True)
class MainMetric:
    """A job's headline number: its task's metric (the one fleets graduate on)."""

    name: str
    value: float
    higher_is_better: bool


def list_jobs(session: Session, where: JobFilter, *, limit: int = 50, offset: int = 0
              ) -> tuple[list[JobRow], int]:
    """Jobs newest first, filtered by ``where``; also the total number matching (for paging)."""
    query = _filtered(where)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(defer(JobRow.request), defer(JobRow.fleet))
        .order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def _filtered(where: JobFilter) -> Select[JobRow]:
    query = select(JobRow).where(JobRow.parent_id == where.parent_id if where.parent_id
                                 else JobRow.parent_id.is_(None))
    if where.state is not None:
        query = query.where(JobRow.state == where.state.value)
    if where.owner is not None:
        query = query.where(JobRow.owner == where.owner)
    if where.project is not None:
        query = query.where(JobRow.project == where.project)
    if where.model_name is not None:
        query = query.where(JobRow.model_name == where.model_name)
    if where.search:
        text = where.search.strip()
        query = query.where(or_(JobRow.id.startswith(text.lower(), autoescape=True),
                                JobRow.model_name.icontains(text, autoescape=True),
                                JobRow.project.icontains(text, autoescape=True)))
    return query


def main_metric(result: dict[str, Any] | None) -> MainMetric | None:
    """The job's main metric from its result (None before it succeeded, for a fleet's parent,
    or when the metric is undefined, a holdout of one class)."""
    metrics = (result or {}).get("metrics")
    if not isinstance(metrics, dict):
        return None
    name, higher = GRADUATION_METRIC.get(str(metrics.get("task")), ("roc_auc", True))
    value = metrics.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return MainMetric(name, float(value), higher)

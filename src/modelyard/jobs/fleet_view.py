"""A fleet's tenants one page at a time, filtered, with what a person checks on each: the level
that serves it, its metric against its fallback's and production's, and why it failed.

:func:`fleet_view` reads the parent, its children's states and the serving levels (a few columns
of every tenant, to filter and count), then the page's own: its children's fleet records and
errors, and its production versions. Five queries whatever the fleet's size, and only a page's
JSON parsed, so a fleet of thousands of tenants pages about as fast as a small one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from modelyard.errors import Conflict
from modelyard.jobs import store
from modelyard.jobs.fleet import fleet_counts
from modelyard.jobs.fleet_records import FleetChild, plan_of
from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import ExceptionInfo, TenantPlan
from modelyard.registry import store as registry
from modelyard.registry.tables import FleetTenantRow

PAGE_SIZE = 200


class Level(enum.StrEnum):
    """What answers a tenant: its own model, its segment's, the global one, or nothing."""

    tenant = "tenant"
    segment = "segment"
    global_ = "global"
    none = "none"


@dataclasses.dataclass(frozen=True)
class TenantLine:
    tenant: str
    segment: str | None
    rows: int
    job_id: str | None  # its newest attempt; None: skipped by the plan
    state: str  # the job's, or "skipped"
    level: str | None  # None: not decided yet (the fleet is still running)
    reason: str  # why that level serves it, or why the plan skipped it
    metric: str | None  # the metric it graduated on
    own: float | None  # its model's, on its holdout rows
    fallback: float | None  # its fallback's, on the same rows
    fallback_level: str | None
    judged_production: float | None  # production's, on the same rows, when it was judged
    production_version: int | None  # the (model, tenant)'s production version now
    failure: str | None  # a failed job's reason: "kind: Type in step S: message"


@dataclasses.dataclass(frozen=True)
class FleetView:
    parent_id: str
    model_name: str
    state: str
    counts: dict[str, int]  # children by state (newest attempts), skipped and total
    levels: dict[str, int]  # tenants by serving level, "pending" for those not decided
    matching: int  # tenants that pass the filters
    offset: int
    limit: int
    lines: list[TenantLine]  # the page


def fleet_view(session: Session, parent_id: str, *, offset: int = 0, limit: int = PAGE_SIZE,
               failed_only: bool = False, level: Level | None = None,
               search: str | None = None) -> FleetView:
    """One page of a fleet's tenants, in the plan's order (largest first), filtered by state,
    level and a substring of the tenant's name.

    Raises:
        NotFound: no such job.
        Conflict: the job is not a fleet.
    """
    parent = store.read_job(session, parent_id)
    if parent.kind != "fleet":
        raise Conflict(f"job {parent_id} is a {parent.kind} job, not a fleet; a fleet's page "
                       "is its parent job's (kind fleet)")
    plan = plan_of(parent)
    # The newest attempt per (kind, tenant): a retry replaces the attempts before it.
    latest = {(c.kind, c.tenant or ""): c for c in session.execute(
        select(JobRow.id, JobRow.kind, JobRow.tenant, JobRow.state)
        .where(JobRow.parent_id == parent_id).order_by(JobRow.created_at, JobRow.id))}
    levels = {r.tenant: r for r in session.execute(
        select(FleetTenantRow.tenant, FleetTenantRow.level, FleetTenantRow.reason)
        .where(FleetTenantRow.model_name == parent.model_name))}
    entries = plan.tenants if plan is not None else []

    def state(entry: TenantPlan) -> str:
        child = latest.get(("tenant", entry.tenant))
        return child.state if child is not None else "skipped"

    def level_of(entry: TenantPlan) -> str | None:
        known = levels.get(entry.tenant)
        return known.level if known is not None else None

    chosen = [e for e in entries if (not failed_only or state(e) == "failed")
              and (level is None or level_of(e) == level.value)
              and (not search or search.lower() in e.tenant.lower())]
    page = chosen[offset:offset + limit]
    ids = [c.id for e in page if (c := latest.get(("tenant", e.tenant))) is not None]
    details = {d.id: d for d in session.execute(
        select(JobRow.id, JobRow.fleet, JobRow.exception_info).where(JobRow.id.in_(ids)))
        } if ids else {}
    production = registry.production_versions(
        session, [(parent.model_name, e.tenant) for e in page])
    lines = []
    for e in page:
        child = latest.get(("tenant", e.tenant))
        version = production.get((parent.model_name, e.tenant))
        known = levels.get(e.tenant)
        lines.append(_line(e, state(e), details.get(child.id) if child is not None else None,
                           known.level if known is not None else None,
                           known.reason if known is not None else e.reason,
                           version.version if version is not None else None))
    return FleetView(
        parent_id=parent.id, model_name=parent.model_name, state=parent.state,
        counts={k: v for k, v in fleet_counts(plan, (c.state for c in latest.values())).items()
                if not isinstance(v, bool)},
        levels=dict(Counter(level_of(e) or "pending" for e in entries)), matching=len(chosen),
        offset=offset, limit=limit, lines=lines)


def _line(entry: TenantPlan, state: str, child: Row[Any] | None, level: str | None,
          reason: str, production_version: int | None) -> TenantLine:
    decided = (FleetChild.from_json(child.fleet).graduation
               if child is not None and child.fleet else None)
    failure = None
    if child is not None and child.exception_info:
        error = ExceptionInfo.from_json(child.exception_info)
        failure = f"{error.kind.value}: {error.reason}"
    return TenantLine(
        tenant=entry.tenant, segment=entry.segment, rows=entry.rows,
        job_id=child.id if child is not None else None, state=state, level=level,
        reason=reason, metric=decided.metric if decided else None,
        own=decided.own if decided else None, fallback=decided.fallback if decided else None,
        fallback_level=decided.fallback_level if decided else None,
        judged_production=decided.production if decided else None,
        production_version=production_version, failure=failure)

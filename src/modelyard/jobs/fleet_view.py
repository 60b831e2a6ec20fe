"""A fleet's tenants one page at a time, filtered, with what a person checks on each: the level
that serves it, its metric against its fallback's and production's, and why it failed.

:func:`fleet_view` reads the parent, its children (the columns a line needs, not their requests
or results), the serving levels and the page's production versions: four queries whatever the
fleet's size, so a fleet of thousands of tenants pages as fast as a small one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from modelyard.errors import Conflict
from modelyard.jobs import store
from modelyard.jobs.fleet import fleet_counts
from modelyard.jobs.fleet_records import FleetChild, latest_by_key, plan_of
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
    latest = latest_by_key(_children(session, parent_id))
    levels = {r.tenant: r for r in session.scalars(
        select(FleetTenantRow).where(FleetTenantRow.model_name == parent.model_name))}
    lines = [_line(entry, latest.get(("tenant", entry.tenant)), levels.get(entry.tenant))
             for entry in (plan.tenants if plan is not None else [])]
    chosen = [x for x in lines if (not failed_only or x.state == "failed")
              and (level is None or x.level == level.value)
              and (not search or search.lower() in x.tenant.lower())]
    page = chosen[offset:offset + limit]
    production = registry.production_versions(
        session, [(parent.model_name, x.tenant) for x in page])
    page = [dataclasses.replace(x, production_version=v.version)
            if (v := production.get((parent.model_name, x.tenant))) else x for x in page]
    counts = {k: v for k, v in fleet_counts(plan, latest).items() if not isinstance(v, bool)}
    return FleetView(
        parent_id=parent.id, model_name=parent.model_name, state=parent.state, counts=counts,
        levels=dict(Counter(x.level or "pending" for x in lines)), matching=len(chosen),
        offset=offset, limit=limit, lines=page)


def _children(session: Session, parent_id: str) -> list[JobRow]:
    """A fleet's children with the columns a line needs (a child's request and result are
    the bulk of its row)."""
    return list(session.scalars(
        select(JobRow).where(JobRow.parent_id == parent_id)
        .options(load_only(JobRow.id, JobRow.kind, JobRow.tenant, JobRow.state, JobRow.fleet,
                           JobRow.exception_info, JobRow.created_at))
        .order_by(JobRow.created_at, JobRow.id)
        .execution_options(populate_existing=True)).all())


def _line(entry: TenantPlan, child: JobRow | None, level: FleetTenantRow | None) -> TenantLine:
    decided = (FleetChild.from_json(child.fleet).graduation
               if child is not None and child.fleet else None)
    failure = None
    if child is not None and child.exception_info:
        error = ExceptionInfo.from_json(child.exception_info)
        failure = f"{error.kind.value}: {error.reason}"
    return TenantLine(
        tenant=entry.tenant, segment=entry.segment, rows=entry.rows,
        job_id=child.id if child is not None else None,
        state=child.state if child is not None else "skipped",
        level=level.level if level is not None else None,
        reason=level.reason if level is not None else entry.reason,
        metric=decided.metric if decided else None, own=decided.own if decided else None,
        fallback=decided.fallback if decided else None,
        fallback_level=decided.fallback_level if decided else None,
        judged_production=decided.production if decided else None,
        production_version=None, failure=failure)

"""The end of a fleet: each tenant's model against its fallback, and who serves each tenant.

A tenant's own model *graduates* when it beats its fallback (its segment's model, else the
global one) on the tenant's own holdout rows, on the task's metric (``GRADUATION_METRIC``); the
fallbacks scored every tenant's holdout as they trained (``JobResult.by_tenant``). Graduates go
to production together, through the registry's promotion. Then every tenant of the plan gets its
serving level (``tenant``, ``segment``, ``global``, or ``none``) with the reason, in one table
the serving layer routes by.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from modelyard.jobs import store
from modelyard.jobs.fleet_records import (
    Graduation,
    graduation_of,
    latest_by_key,
    role_of,
    segment_tenant,
    set_graduation,
)
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import GRADUATION_METRIC, FleetPlan
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.registry.tables import FleetTenantRow, VersionRow
from modelyard.sql.base import table_of


def compare(own_metrics: dict[str, Any], metric: str, fallback_value: float | None,
            fallback_level: str) -> Graduation:
    """Does a tenant's own model beat its fallback on the tenant's holdout?"""
    higher = next((h for m, h in GRADUATION_METRIC.values() if m == metric), True)
    own = own_metrics.get(metric)
    if own is None:
        graduated, reason = False, f"its own {metric} is undefined on its holdout"
    elif fallback_value is None:
        graduated = True
        reason = f"the {fallback_level} model's {metric} is undefined on its holdout"
    else:
        better = own > fallback_value if higher else own < fallback_value
        word = "beats" if better else "does not beat"
        graduated = bool(better)
        reason = (f"own {metric} {own:.4f} {word} {fallback_level}'s {fallback_value:.4f} on "
                  "its holdout")
    return Graduation(metric=metric, own=own, fallback=fallback_value,
                      fallback_level=fallback_level, graduated=graduated, reason=reason)


def fallbacks(children: list[JobRow]) -> dict[str, JobRow]:
    """The succeeded global and segment children, by registry tenant."""
    return {child.tenant or "": child for child in latest_by_key(children).values()
            if child.kind in ("global", "segment") and child.state == JobState.succeeded.value}


def graduate(session: Session, children: list[JobRow]) -> None:
    """Compare each tenant's model with its fallback on its own holdout; promote the winners.
    Tenants decided when they ran are left as they are (a retry keeps others' decisions)."""
    from modelyard.registry import store as registry

    found = fallbacks(children)
    undecided = [c for c in latest_by_key(children).values()
                 if c.kind == "tenant" and c.state == JobState.succeeded.value
                 and graduation_of(c) is None]
    versions = {v.job_id: v for v in session.scalars(select(VersionRow).where(
        VersionRow.job_id.in_([c.id for c in undecided])))} if undecided else {}
    winners: list[tuple[VersionRow, str]] = []
    for child in undecided:
        graduation = _judge(child, found)
        set_graduation(child, graduation)
        version = versions.get(child.id)
        if graduation.graduated and version is not None and (
                version.stage != Stage.production.value):
            winners.append((version, f"graduated: {graduation.reason}"))
    registry.promote(session, [v for v, _ in winners], actor="fleet",
                     reasons=[reason for _, reason in winners])


def _judge(child: JobRow, found: dict[str, JobRow]) -> Graduation:
    """A succeeded tenant's graduation against the fallback that serves it otherwise."""
    metrics = (child.result or {}).get("metrics") or {}
    metric = GRADUATION_METRIC.get(str(metrics.get("task")), ("roc_auc", True))[0]
    role = role_of(child)
    segment = role.segment if role is not None else None
    fallback = (found.get(segment_tenant(segment)) if segment else None) or found.get(
        GLOBAL_TENANT)
    if fallback is None:
        return Graduation(metric=metric, own=metrics.get(metric), fallback=None,
                          fallback_level=None, graduated=True,
                          reason="no fallback model succeeded to beat")
    by_tenant = (fallback.result or {}).get("by_tenant") or {}
    graduation = compare(metrics, metric, by_tenant.get(child.tenant or ""), fallback.kind)
    return dataclasses.replace(graduation, fallback_job_id=fallback.id)


def record_serving_levels(session: Session, parent: JobRow, plan: FleetPlan,
                          children: list[JobRow]) -> None:
    """Write, per tenant, which level serves it (own model, segment, global) and why."""
    latest = latest_by_key(children)
    found = fallbacks(children)
    at = store.now()
    model_name = parent.model_name
    rows = {r.tenant: r for r in session.scalars(  # one query, not one per tenant
        select(FleetTenantRow).where(FleetTenantRow.model_name == model_name)).all()}
    new: list[dict[str, Any]] = []
    for entry in plan.tenants:
        child = latest.get(("tenant", entry.tenant))
        level, reason = _level(child, entry.reason)
        if level is None:
            level, reason = _fallback_level(entry.segment, found, reason)
        values = {"segment": entry.segment, "level": level, "reason": reason,
                  "job_id": child.id if child else None, "updated_at": at}
        row = rows.get(entry.tenant)
        if row is None:
            new.append({"model_name": model_name, "tenant": entry.tenant, **values})
        else:
            for key, value in values.items():
                setattr(row, key, value)
    if new:  # one INSERT: a fleet adds its tenants by the thousand
        session.execute(insert(table_of(FleetTenantRow)), new)


def _level(child: JobRow | None, plan_reason: str) -> tuple[str | None, str]:
    """``("tenant", why)`` when a tenant's own model serves it, else ``(None, why not)``."""
    if child is None:
        return None, plan_reason
    if child.state != JobState.succeeded.value:
        info = child.exception_info or {}
        return None, f"its own model {child.state}: {info.get('message', '')}"[:500]
    graduation = graduation_of(child)
    if graduation is None:
        return "tenant", "no fallback model to beat"
    return ("tenant" if graduation.graduated else None), graduation.reason


def _fallback_level(segment: str | None, found: dict[str, JobRow],
                    reason: str) -> tuple[str, str]:
    """The level serving a tenant without a model of its own: its segment's, else global."""
    if segment is not None and segment_tenant(segment) in found:
        return "segment", f"{reason}; served by segment {segment}"
    if GLOBAL_TENANT in found:
        return "global", f"{reason}; served by the global model"
    return "none", f"{reason}; no fallback model succeeded"

"""Fleets in the job store: a parent job, its children, and how the fleet advances.

1. At submission the parent and the global model are queued together: the parent runs a
   *plan* (runtime.fleet.plan: one scan, one Arrow IPC file per tenant) while the global model
   trains on the source data.
2. When the plan is done: one child per segment and one per qualifying tenant. The global and
   segment children also score their holdout per tenant.
3. When every child has ended, each tenant's model graduates if it beats its fallback on its
   own holdout (then it goes to production), each tenant's serving level (its own model, its
   segment's, or the global one) is recorded with the reason, and the parent succeeds.

One tenant's failure never fails the others; :func:`retry_children` reruns a subset.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from modelyard.errors import Conflict
from modelyard.jobs import store
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import GRADUATION_METRIC, FailureKind, FleetPlan, failure
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.registry.tables import FleetTenantRow, VersionRow
from modelyard.request.loading import parse_request
from modelyard.sql.base import table_of

CHILD_KINDS = ("global", "segment", "tenant")


def segment_tenant(segment: str) -> str:
    """The registry tenant name of a segment's model."""
    return f"segment:{segment}"


def children_of(session: Session, parent_id: str) -> list[JobRow]:
    return list(session.scalars(
        select(JobRow).where(JobRow.parent_id == parent_id).order_by(JobRow.created_at,
                                                                       JobRow.id)).all())


def latest_by_key(children: list[JobRow]) -> dict[tuple[str, str], JobRow]:
    """The newest child per (kind, tenant): retries replace earlier attempts."""
    out: dict[tuple[str, str], JobRow] = {}
    for child in children:
        out[(child.kind, child.tenant or "")] = child
    return out


def _child_request(parent: JobRow, path: str | None,
                   extra_filters: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The parent's request for one child: no tenants block, the tenant (and segment) column
    among the features, and either the tenant's partition (``path``, no filters: the plan
    applied them) or the parent's data with its filters plus ``extra_filters``."""
    request = copy.deepcopy(parent.request)
    tenants = request.pop("tenants", None) or {}
    names = request["data"]["features"]["names"]
    for column in (tenants.get("column"), tenants.get("segment_column")):
        if column and column not in names:
            names.append(column)  # fallbacks score per tenant (and segment)
    if path is not None:
        request["data"]["features"]["path"] = path
        request["filters"] = []
    else:
        request["filters"] = [*request.get("filters", []), *(extra_filters or [])]
    return request


def _queue_children(session: Session, parent: JobRow, kind: str,
                    children: list[tuple[str, str | None, int | None, dict[str, Any]]],
                    extra_filters: list[dict[str, Any]] | None = None) -> list[str]:
    """Queue children of one kind: ``(tenant, partition path, rows, fleet details)`` each.

    The child request is validated once; children differ only in their data path, which the
    plan wrote. Does not commit; returns the new job ids.
    """
    if not children:
        return []
    template = parse_request(_child_request(parent, children[0][1], extra_filters))
    dumped = template.model_dump(mode="json")
    features = dumped["data"]["features"]
    jobs = []
    for tenant, path, rows, details in children:
        request = dumped if path is None else {
            **dumped, "data": {**dumped["data"], "features": {**features, "path": path}}}
        jobs.append(store.NewJob(request, kind, parent.id, tenant, rows,
                                 {"level": kind, "tenant": tenant, **details}))
    return store.insert_jobs(session, template, jobs, executor=parent.executor,
                             logs_dir=Path(parent.log_file or ".").parent)


def queue_global(session: Session, parent: JobRow) -> str | None:
    """At submission: queue the fleet's global model beside its plan (does not commit).

    The global model reads the source data with the fleet's filters, as a plain job would, so
    it needs nothing from the plan and trains while the plan partitions: the longest fit of
    the fleet starts at once instead of after the scan.
    """
    spec = (parent.request or {}).get("tenants") or {}
    if not spec.get("global_model", True):
        return None
    (job_id,) = _queue_children(session, parent, "global", [
        (GLOBAL_TENANT, None, None, {"tenant_column": spec["column"]})])
    return job_id


def start_fleet(session: Session, parent: JobRow, fleet_plan: FleetPlan) -> int:
    """The plan is done: store it and queue the segments' and tenants' models (does not commit).
    Returns how many were queued.

    Segment models read the source data with the fleet's filters and their segment's; tenant
    models read their own partition.
    """
    plan = fleet_plan.to_json()
    parent.fleet = plan
    column = plan["column"]
    created = 0
    for segment in plan["segments"]:
        created += len(_queue_children(
            session, parent, "segment",
            [(segment_tenant(segment), None, None, {"segment": segment, "tenant_column": column})],
            extra_filters=[{"feature_name": plan["segment_column"], "predicate": "Equals",
                            "feature_value": {"string_val": segment}}]))
    created += len(_tenant_children(session, parent, plan))
    store.transition_fields(session, parent.id, current_step="children")
    return created


def _fallbacks(children: list[JobRow]) -> dict[str, JobRow]:
    """The succeeded global and segment children, by registry tenant."""
    return {child.tenant or "": child for child in latest_by_key(children).values()
            if child.kind in ("global", "segment") and child.state == JobState.succeeded.value}


def requeue_not_started(session: Session, job: JobRow) -> str | None:
    """A packed tenant whose worker died before reaching it: queue a new attempt, once (its
    own failure is not the cause, so it should not stay failed). Returns the new job id."""
    if job.kind != "tenant" or not job.parent_id or (job.fleet or {}).get("requeued_from"):
        return None
    parent = store.read_job(session, job.parent_id)
    if not parent.fleet or parent.state != JobState.running.value:
        return None
    created = _tenant_children(session, parent, parent.fleet, only={job.tenant or ""},
                               details={"requeued_from": job.id})
    return created[0][0] if created else None


def _tenant_children(session: Session, parent: JobRow, plan: dict[str, Any],
                     only: set[str] | None = None,
                     details: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Queue the qualifying tenants (or those in ``only``); returns ``(job id, tenant)``."""
    # Largest first: the long fits start early and small ones fill the gaps at the end.
    chosen = [(e["tenant"], e["path"], e["train_rows"] + e["holdout_rows"],
               {"segment": e.get("segment"), **(details or {})})
              for e in sorted(plan["tenants"], key=lambda t: -t["rows"])
              if e["qualifies"] and (only is None or e["tenant"] in only)]
    ids = _queue_children(session, parent, "tenant", chosen)
    return [(job_id, tenant) for job_id, (tenant, *_) in zip(ids, chosen, strict=True)]


def advance(session: Session, parent_id: str) -> bool:
    """Finish a fleet once every child has ended: graduate, route, count. Does not commit.

    Returns whether the fleet just finished.
    """
    if store.count_unfinished_children(session, parent_id):
        return False  # the common case, answered by one COUNT instead of loading every child
    parent = store.read_job(session, parent_id, fresh=True)
    if parent.kind != "fleet" or not parent.fleet:
        return False
    children = children_of(session, parent_id)
    _graduate(session, parent, children)
    _record_serving_levels(session, parent, children)
    if parent.state == JobState.running.value:
        # The counts alone: the children are in hand (the full summary would read them again).
        counts = fleet_counts(parent, latest_by_key(children))
        all_failed = counts["succeeded"] == 0 and counts["failed"] > 0
        reason = (f"fleet done: {counts['succeeded']} models, {counts['failed']} failed, "
                  f"{counts['skipped']} tenants served by a fallback")
        try:
            store.transition(session, parent_id,
                             JobState.failed if all_failed else JobState.succeeded, reason,
                             result={**(parent.result or {}), "fleet": counts},
                             exception_info=failure(FailureKind.fleet_failed, reason)
                             if all_failed else None)
        except Conflict:
            pass
    return True


def _graduate(session: Session, parent: JobRow, children: list[JobRow]) -> None:
    """Compare each tenant's model with its fallback on its own holdout; promote the winners."""
    from modelyard.registry import store as registry

    fallbacks = _fallbacks(children)
    undecided = [c for c in latest_by_key(children).values()
                 if c.kind == "tenant" and c.state == JobState.succeeded.value
                 # decided when it ran (a retry keeps earlier decisions of others)
                 and (c.fleet or {}).get("graduation") is None]
    versions = {v.job_id: v for v in session.scalars(select(VersionRow).where(
        VersionRow.job_id.in_([c.id for c in undecided])))} if undecided else {}
    winners: list[tuple[VersionRow, str]] = []
    for child in undecided:
        metrics = (child.result or {}).get("metrics") or {}
        metric = GRADUATION_METRIC.get(str(metrics.get("task")), ("roc_auc", True))[0]
        segment = (child.fleet or {}).get("segment")
        fallback = fallbacks.get(segment_tenant(segment)) if segment else None
        fallback = fallback or fallbacks.get(GLOBAL_TENANT)
        if fallback is None:
            graduation: dict[str, Any] = {"metric": metric, "own": metrics.get(metric),
                                          "fallback": None, "fallback_level": None,
                                          "graduated": True,
                                          "reason": "no fallback model succeeded to beat"}
        else:
            by_tenant = (fallback.result or {}).get("by_tenant") or {}
            graduation = compare(metrics, metric, by_tenant.get(child.tenant or ""),
                                 fallback.kind)
            graduation["fallback_job_id"] = fallback.id
        child.fleet = {**(child.fleet or {}), "graduation": graduation}
        version = versions.get(child.id)
        if graduation["graduated"] and version is not None and (
                version.stage != Stage.production.value):
            winners.append((version, f"graduated: {graduation['reason']}"))
    registry.promote(session, [v for v, _ in winners], actor="fleet",
                     reasons=[reason for _, reason in winners])


def _record_serving_levels(session: Session, parent: JobRow, children: list[JobRow]) -> None:
    """Write, per tenant, which level serves it (own model, segment, global) and why."""
    plan = parent.fleet or {}
    latest = latest_by_key(children)
    fallbacks = _fallbacks(children)
    at = store.now()
    model_name = parent.model_name
    rows = {r.tenant: r for r in session.scalars(  # one query, not one per tenant
        select(FleetTenantRow).where(FleetTenantRow.model_name == model_name)).all()}
    new: list[dict[str, Any]] = []
    for entry in plan.get("tenants", []):
        tenant = entry["tenant"]
        segment = entry.get("segment")
        child = latest.get(("tenant", tenant))
        level, reason = None, entry["reason"]
        if child is not None:
            graduation = (child.fleet or {}).get("graduation")
            if child.state != JobState.succeeded.value:
                info = child.exception_info or {}
                reason = f"its own model {child.state}: {info.get('message', '')}"[:500]
            elif graduation is None or graduation.get("graduated"):
                level = "tenant"
                reason = graduation["reason"] if graduation else "no fallback model to beat"
            else:
                reason = graduation["reason"]
        if level is None:
            if segment is not None and segment_tenant(segment) in fallbacks:
                level, reason = "segment", f"{reason}; served by segment {segment}"
            elif GLOBAL_TENANT in fallbacks:
                level, reason = "global", f"{reason}; served by the global model"
            else:
                level, reason = "none", f"{reason}; no fallback model succeeded"
        values = {"segment": segment, "level": level, "reason": reason,
                  "job_id": child.id if child else None, "updated_at": at}
        row = rows.get(tenant)
        if row is None:
            new.append({"model_name": model_name, "tenant": tenant, **values})
        else:
            for key, value in values.items():
                setattr(row, key, value)
    if new:  # one INSERT: adding a thousand ORM objects one by one took a second
        session.execute(insert(table_of(FleetTenantRow)), new)


def fleet_summary(session: Session, parent: JobRow) -> dict[str, Any]:
    """Counts by state (plus skipped tenants) and one line per tenant with its metrics."""
    plan = parent.fleet or {}
    children = children_of(session, parent.id)
    latest = latest_by_key(children)
    levels = {r.tenant: r for r in session.scalars(
        select(FleetTenantRow).where(FleetTenantRow.model_name == parent.model_name)).all()}
    tenants = []
    for entry in plan.get("tenants", []):
        child = latest.get(("tenant", entry["tenant"]))
        level = levels.get(entry["tenant"])
        metrics = ((child.result or {}).get("metrics") or {}) if child else {}
        tenants.append({
            "tenant": entry["tenant"], "segment": entry.get("segment"),
            "rows": entry["rows"], "train_rows": entry["train_rows"],
            "job_id": child.id if child else None,
            "state": child.state if child else "skipped",
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
            "graduation": (child.fleet or {}).get("graduation") if child else None,
            "level": level.level if level else None,
            "reason": level.reason if level else entry["reason"],
        })
    fallbacks = [{"kind": c.kind, "tenant": c.tenant, "job_id": c.id, "state": c.state,
                  "metrics": {k: v for k, v in ((c.result or {}).get("metrics") or {}).items()
                              if isinstance(v, float)}}
                 for c in latest.values() if c.kind in ("global", "segment")]
    return {
        "parent_id": parent.id,
        "state": parent.state,
        "counts": fleet_counts(parent, latest),
        "fallbacks": fallbacks,
        "tenants": tenants,
    }


def fleet_counts(parent: JobRow, latest: dict[tuple[str, str], JobRow]) -> dict[str, Any]:
    """Children by state (the newest attempt of each) and the tenants skipped by the plan."""
    plan = parent.fleet or {}
    counts = Counter(c.state for c in latest.values())
    skipped = sum(1 for t in plan.get("tenants", []) if not t["qualifies"])
    return {
        "total": len(latest) + skipped,
        "queued": counts.get("queued", 0) + counts.get("created", 0),
        "running": counts.get("running", 0),
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "cancelled": counts.get("cancelled", 0),
        "skipped": skipped,
        "planned": bool(plan),
    }


def retry_children(session: Session, parent_id: str,
                   tenants: list[str] | None) -> list[tuple[str, str]]:
    """Run the given tenants again (default: every tenant whose latest attempt did not succeed).
    Returns ``(job id, tenant)`` of the new attempts."""
    parent = store.read_job(session, parent_id)
    if parent.kind != "fleet" or not parent.fleet:
        raise Conflict(f"job {parent_id} is not a fleet that has been planned")
    latest = latest_by_key(children_of(session, parent_id))
    if not all(JobState(c.state).terminal for c in latest.values()):
        raise Conflict(f"fleet {parent_id} is still running; retry once it has ended")
    if tenants is None:
        chosen = {t for (kind, t), c in latest.items()
                  if kind == "tenant" and c.state != JobState.succeeded.value}
    else:
        known = {t["tenant"] for t in parent.fleet["tenants"] if t["qualifies"]}
        unknown = sorted(set(tenants) - known)
        if unknown:
            raise Conflict(f"tenants {unknown} have no model in fleet {parent_id} (unknown or "
                           "skipped for too few rows)")
        chosen = set(tenants)
    if not chosen:
        raise Conflict(f"fleet {parent_id} has no failed tenants to retry")
    created = _tenant_children(session, parent, parent.fleet, only=chosen)
    session.commit()
    return created


def compare(own_metrics: dict[str, Any], metric: str, fallback_value: float | None,
            fallback_level: str) -> dict[str, Any]:
    """Does a tenant's own model beat its fallback on the tenant's holdout?"""
    higher = next((h for m, h in GRADUATION_METRIC.values() if m == metric), True)
    own = own_metrics.get(metric)
    out: dict[str, Any] = {"metric": metric, "own": own, "fallback": fallback_value,
                           "fallback_level": fallback_level}
    if own is None:
        out.update(graduated=False, reason=f"its own {metric} is undefined on its holdout")
    elif fallback_value is None:
        out.update(graduated=True,
                   reason=f"the {fallback_level} model's {metric} is undefined on its holdout")
    else:
        better = own > fallback_value if higher else own < fallback_value
        word = "beats" if better else "does not beat"
        out.update(graduated=bool(better),
                   reason=f"own {metric} {own:.4f} {word} {fallback_level}'s "
                          f"{fallback_value:.4f} on its holdout")
    return out

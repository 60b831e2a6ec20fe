"""Fleets in the job store: a parent job, its children, and how the fleet advances.

1. At submission the parent and the global model are queued together (:func:`queue_global`):
   the parent runs a *plan* (runtime.fleet.plan: one scan, one Arrow IPC file per tenant)
   while the global model trains on the source data.
2. As the plan writes the qualifying tenants' partitions, chunk by chunk, biggest first
   (:func:`on_tenants_ready`), and when the plan is done (:func:`on_plan_finished`): one child
   per segment and one per qualifying tenant, each queued once whichever of the two came first.
   The global and segment children also score their holdout per tenant.
3. When every child has ended (:func:`on_children_ended`; :func:`advance_parents` for fleets
   whose last children were cancelled), each tenant's model graduates if it beats its fallback
   on its own holdout (then it goes to production), each tenant's serving level (its own model,
   its segment's, or the global one) is recorded with the reason
   (:mod:`modelyard.jobs.graduation`), and the parent succeeds.

The dispatcher calls the ``on_*`` hooks and :func:`requeue_not_started` inside its own
transaction; none of them commits. One tenant's failure never fails the others: a tenant whose
packed worker died before reaching it is queued again, once, and :func:`retry_children` reruns
a subset. A failed plan cancels the children queued beside it (:func:`on_failed`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.errors import Conflict
from modelyard.jobs import graduation, store
from modelyard.jobs.fleet_records import (
    FleetChild,
    children_of,
    graduation_of,
    latest_by_key,
    plan_of,
    role_of,
    segment_tenant,
)
from modelyard.jobs.joblog import JobLog
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import FailureKind, FleetPlan, FleetRole, TenantPlan, failure
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.registry.tables import FleetTenantRow
from modelyard.request.loading import parse_request

# -- hooks the dispatcher calls --------------------------------------------------------------


def on_tenants_ready(session: Session, parent_id: str, tenants: Sequence[TenantPlan],
                     segments: Sequence[str]) -> int | None:
    """A fleet's plan, still running, wrote these tenants' partitions: queue their models, and
    the ``segments``' not queued yet, so free slots start them while it writes the rest.
    Returns how many were queued; None when the fleet stopped meanwhile."""
    parent = store.read_job(session, parent_id, fresh=True)
    if parent.kind != "fleet" or parent.state != JobState.running.value:
        return None
    created = _queue_new(session, parent, tenants, segments)
    if created:
        JobLog(parent.log_file).append(f"fleet: {created} models queued while the plan runs")
    return created


def on_plan_finished(session: Session, parent_id: str, plan: FleetPlan) -> int | None:
    """A fleet's plan job succeeded: store the plan, queue the children, and finish the fleet
    at once if nothing is left to train. Returns how many children were queued; None when
    the fleet stopped meanwhile (cancelled) and nothing was done."""
    parent = store.read_job(session, parent_id)
    if parent.state != JobState.running.value:
        return None
    parent.result = {"row_counts": plan.row_counts}
    created = start_fleet(session, parent, plan)
    JobLog(parent.log_file).append(f"fleet planned: {created} more models queued")
    advance(session, parent_id)
    return created


def on_children_ended(session: Session, job_ids: Iterable[str],
                      known: Mapping[str, str | None] | None = None
                      ) -> tuple[set[str], set[str]]:
    """Jobs ended: finish the fleets they belong to if nothing is left to run (``known``: the
    parents of some of them, by job id, in hand already; a job's parent never changes).
    Returns their parents, and those of them that finished."""
    ids, known = set(job_ids), known or {}
    parents = {p for p in [*(known[j] for j in ids & known.keys()),
                           *store.parents_of(session, sorted(ids - known.keys()))] if p}
    return parents, advance_parents(session, parents)


def advance_parents(session: Session, parents: Iterable[str]) -> set[str]:
    """Finish the fleets among ``parents`` whose children have all ended; returns those."""
    finished = set()
    for parent_id in parents:
        if advance(session, parent_id):
            finished.add(parent_id)
            JobLog(store.read_job(session, parent_id).log_file).append(
                "fleet: every child has ended")
    return finished


def planning(session: Session, parent_id: str) -> bool:
    """Whether the fleet runs and its plan has not ended: its tenants are still to come."""
    parent = store.read_job(session, parent_id)
    return parent.state == JobState.running.value and parent.fleet is None


def on_failed(session: Session, job_id: str, reason: str) -> list[str]:
    """A job failed: if it was a fleet's plan, cancel the children queued beside it (the
    global model has nothing to fall back for). Returns the children cancelled."""
    if store.read_job(session, job_id).kind != "fleet":
        return []
    return store.cancel_children(session, job_id, f"its fleet {job_id} failed: {reason}"[:500])


def requeue_not_started(session: Session, job_id: str) -> str | None:
    """A packed tenant whose worker died before reaching it: queue a new attempt, once (its
    own failure is not the cause, so it should not stay failed). Returns the new job id."""
    job = store.read_job(session, job_id)
    role = role_of(job)
    if job.kind != "tenant" or not job.parent_id or role is None or role.requeued_from:
        return None
    parent = store.read_job(session, job.parent_id)
    if parent.state != JobState.running.value:
        return None
    # Its own row says what it trains on: a tenant queued while the plan runs is in no plan yet.
    (created,) = _queue_children(session, parent, [
        (dataclasses.replace(role, requeued_from=job.id),
         (job.request or {})["data"]["features"]["path"], job.rows)])
    JobLog(job.log_file).append(f"queued again as job {created}")
    return created


# -- the fleet's steps -----------------------------------------------------------------------


def queue_global(session: Session, parent: JobRow) -> str | None:
    """At submission: queue the fleet's global model beside its plan (does not commit).

    The global model reads the source data with the fleet's filters, as a plain job would, so
    it needs nothing from the plan and trains while the plan partitions: the longest fit of
    the fleet starts at once rather than after the scan.
    """
    spec = (parent.request or {}).get("tenants") or {}
    if not spec.get("global_model", True):
        return None
    role = FleetRole(level="global", tenant=GLOBAL_TENANT, tenant_column=spec["column"])
    (job_id,) = _queue_children(session, parent, [(role, None, None)])
    return job_id


def start_fleet(session: Session, parent: JobRow, plan: FleetPlan) -> int:
    """The plan is done: store it and queue the segments' and tenants' models that were not
    queued while it ran (does not commit). Returns how many were queued."""
    parent.fleet = plan.to_json()
    created = _queue_new(session, parent, plan.tenants, plan.segments)
    store.transition_fields(session, parent.id, current_step="children")
    return created


def _queue_new(session: Session, parent: JobRow, tenants: Sequence[TenantPlan],
               segments: Sequence[str]) -> int:
    """Queue the models of ``segments`` and of the qualifying ``tenants`` that the fleet has no
    child for yet, segments first (does not commit). Returns how many were queued.

    Segment models read the source data with the fleet's filters and their segment's; tenant
    models read their own partition.
    """
    spec = (parent.request or {}).get("tenants") or {}
    queued = {(kind, tenant) for kind, tenant in session.execute(
        select(JobRow.kind, JobRow.tenant).where(JobRow.parent_id == parent.id))}
    created = 0
    for segment in segments:
        role = FleetRole(level="segment", tenant=segment_tenant(segment),
                         tenant_column=spec["column"], segment=segment)
        if ("segment", role.tenant) in queued:
            continue
        created += len(_queue_children(
            session, parent, [(role, None, None)],
            extra_filters=[{"feature_name": spec["segment_column"], "predicate": "Equals",
                            "feature_value": {"string_val": segment}}]))
    return created + len(_tenant_children(
        session, parent, [t for t in tenants if ("tenant", t.tenant) not in queued]))


def advance(session: Session, parent_id: str) -> bool:
    """Finish a fleet once every child has ended: graduate, route, count. Does not commit.

    Returns whether the fleet just finished.
    """
    if store.count_unfinished_children(session, parent_id):
        return False  # the common case: one COUNT answers it without loading every child
    # Locked: two servers that see the last children end at once finish the fleet in turn, and
    # the second finds every child judged and the parent ended.
    parent = store.read_job(session, parent_id, fresh=True, lock=True)
    plan = plan_of(parent)
    if plan is None:
        return False
    children = children_of(session, parent_id)
    graduation.graduate(session, parent.model_name, children)
    graduation.record_serving_levels(session, parent, plan, children)
    if parent.state == JobState.running.value:
        # The counts alone: the children are in hand (the full summary would read them again).
        counts = fleet_counts(plan, (c.state for c in latest_by_key(children).values()))
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


def retry_children(session: Session, parent_id: str,
                   tenants: list[str] | None) -> list[tuple[str, str]]:
    """Run the given tenants again (default: every tenant whose latest attempt did not succeed).
    Returns ``(job id, tenant)`` of the new attempts."""
    parent = store.read_job(session, parent_id)
    plan = plan_of(parent)
    if plan is None:
        raise Conflict(f"job {parent_id} is not a fleet that has been planned")
    latest = latest_by_key(children_of(session, parent_id))
    if not all(JobState(c.state).terminal for c in latest.values()):
        raise Conflict(f"fleet {parent_id} is still running; retry once it has ended")
    if tenants is None:
        chosen = {t for (kind, t), c in latest.items()
                  if kind == "tenant" and c.state != JobState.succeeded.value}
    else:
        known = {t.tenant for t in plan.tenants if t.qualifies}
        unknown = sorted(set(tenants) - known)
        if unknown:
            raise Conflict(f"tenants {unknown} have no model in fleet {parent_id} (unknown or "
                           "skipped for too few rows)")
        chosen = set(tenants)
    if not chosen:
        raise Conflict(f"fleet {parent_id} has no failed tenants to retry")
    created = _tenant_children(session, parent, plan.tenants, only=chosen)
    session.commit()
    return created


# -- reading a fleet -------------------------------------------------------------------------


def fleet_summary(session: Session, parent: JobRow) -> dict[str, Any]:
    """Counts by state (plus skipped tenants) and one line per tenant with its metrics."""
    plan = plan_of(parent)
    latest = latest_by_key(children_of(session, parent.id))
    levels = {r.tenant: r for r in session.scalars(
        select(FleetTenantRow).where(FleetTenantRow.model_name == parent.model_name)).all()}
    tenants = []
    for entry in plan.tenants if plan is not None else []:
        child = latest.get(("tenant", entry.tenant))
        level = levels.get(entry.tenant)
        decided = graduation_of(child) if child else None
        tenants.append({
            "tenant": entry.tenant, "segment": entry.segment,
            "rows": entry.rows, "train_rows": entry.train_rows,
            "job_id": child.id if child else None,
            "state": child.state if child else "skipped",
            "metrics": _float_metrics(child),
            "graduation": decided.to_json() if decided else None,
            "level": level.level if level else None,
            "reason": level.reason if level else entry.reason,
        })
    fallbacks = []
    for c in latest.values():
        if c.kind in ("global", "segment"):
            decided = graduation_of(c)
            fallbacks.append({"kind": c.kind, "tenant": c.tenant, "job_id": c.id,
                              "state": c.state, "metrics": _float_metrics(c),
                              "graduation": decided.to_json() if decided else None})
    not_served = [{"tenant": t["tenant"], "reason": t["reason"]} for t in tenants
                  if t["level"] == "none"]
    return {
        "parent_id": parent.id,
        "state": parent.state,
        "counts": {**fleet_counts(plan, (c.state for c in latest.values())),
                   "not_served": len(not_served)},
        # Tenants no production model answers for, with what would fix it.
        "not_served": not_served[:_NOT_SERVED_SHOWN],
        "fallbacks": fallbacks,
        "tenants": tenants,
    }


_NOT_SERVED_SHOWN = 100


def fleet_counts(plan: FleetPlan | None, states: Iterable[str]) -> dict[str, Any]:
    """Children by state (``states``: the newest attempt's of each) and the tenants skipped by
    the plan."""
    counts = Counter(states)
    skipped = sum(1 for t in plan.tenants if not t.qualifies) if plan is not None else 0
    return {
        "total": sum(counts.values()) + skipped,
        "queued": counts.get("queued", 0) + counts.get("created", 0),
        "running": counts.get("running", 0),
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "cancelled": counts.get("cancelled", 0),
        "skipped": skipped,
        "planned": plan is not None,
    }


def _float_metrics(child: JobRow | None) -> dict[str, float]:
    metrics = ((child.result or {}).get("metrics") or {}) if child else {}
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


# -- queueing children -----------------------------------------------------------------------


def _tenant_children(session: Session, parent: JobRow, tenants: Sequence[TenantPlan],
                     only: set[str] | None = None) -> list[tuple[str, str]]:
    """Queue the qualifying ``tenants`` (or those in ``only``); returns ``(job id, tenant)``."""
    # Largest first: the long fits start early and small ones fill the gaps at the end.
    chosen = [t for t in sorted(tenants, key=lambda t: -t.rows)
              if t.qualifies and (only is None or t.tenant in only)]
    ids = _queue_children(session, parent, [
        (FleetRole(level="tenant", tenant=t.tenant, segment=t.segment), t.path,
         t.train_rows + t.holdout_rows)
        for t in chosen])
    return [(job_id, t.tenant) for job_id, t in zip(ids, chosen, strict=True)]


def _queue_children(session: Session, parent: JobRow,
                    children: list[tuple[FleetRole, str | None, int | None]],
                    extra_filters: list[dict[str, Any]] | None = None) -> list[str]:
    """Queue children of one level: ``(role, partition path, rows)`` each.

    The child request is validated once; children differ only in their data path, which the
    plan wrote. Does not commit; returns the new job ids.
    """
    if not children:
        return []
    template = parse_request(_child_request(parent, children[0][1], extra_filters))
    dumped = template.model_dump(mode="json")
    features = dumped["data"]["features"]
    jobs = []
    for role, path, rows in children:
        request = dumped if path is None else {
            **dumped, "data": {**dumped["data"], "features": {**features, "path": path}}}
        jobs.append(store.NewJob(request, role.level, parent.id, role.tenant, rows,
                                 FleetChild(role).to_json()))
    return store.insert_jobs(session, template, jobs, executor=parent.executor,
                             logs_dir=Path(parent.log_file or ".").parent,
                             submitted_by=parent.submitted_by)


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

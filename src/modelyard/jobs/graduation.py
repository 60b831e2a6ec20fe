"""The end of a fleet: each model against what it would replace, and who serves each tenant.

A fleet's models go to production only through its model's policy (the same one a person's
promotion passes):

- a tenant's own model *graduates* when it beats its fallback (its segment's model, else the
  global one) on the tenant's own holdout rows, and the tenant's current production version on
  those same rows (scored by the worker: ``JobResult.evidence``), each by the policy's margin,
  on the task's metric (``GRADUATION_METRIC``), and passes the policy's guard rails;
- a global or segment model graduates when it beats its own production version the same way
  (or there is none), and passes the guard rails.

What graduates then follows the policy's ``fleet_promotion``: ``auto`` puts it in production
(through the registry's promotion, with the numbers as the reason), ``shadow`` puts it in shadow
to wait for a person's approval. What does not graduate stays a candidate, and its audit event
says why. Then every tenant of the plan gets the level that serves it now (its own production
version, its segment's, the global one, or ``none`` with what would fix it), in one table the
serving layer routes by.
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
from modelyard.registry import store as registry
from modelyard.registry.policy import beats, guard_rails, production_on_same_rows
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.registry.tables import FleetTenantRow, PolicyRow, VersionRow
from modelyard.sql.base import table_of


@dataclasses.dataclass(frozen=True)
class Rules:
    """What a fleet's models are judged by: the task's metric, and the model's policy."""

    metric: str
    higher_is_better: bool
    policy: PolicyRow

    @classmethod
    def of(cls, task: str, policy: PolicyRow) -> Rules:
        metric, higher = GRADUATION_METRIC.get(task, ("roc_auc", True))
        return cls(metric, higher, policy)

    def beats(self, own: float, other: float, other_name: str) -> tuple[bool, str]:
        ok, verdict = beats(own, other, self.metric, self.higher_is_better,
                            self.policy.min_improvement)
        return ok, f"against {other_name}: {verdict}"


def fallbacks(children: list[JobRow]) -> dict[str, JobRow]:
    """The succeeded global and segment children, by registry tenant."""
    return {child.tenant or "": child for child in latest_by_key(children).values()
            if child.kind in ("global", "segment") and child.state == JobState.succeeded.value}


def graduate(session: Session, model_name: str, children: list[JobRow]) -> None:
    """Judge each succeeded child not judged yet (a retry keeps others' decisions), fallbacks
    first; graduates go to production or shadow as the policy says, the others stay candidates
    with the reason audited."""
    found = fallbacks(children)
    undecided = sorted((c for c in latest_by_key(children).values()
                        if c.state == JobState.succeeded.value and graduation_of(c) is None),
                       key=lambda c: c.kind == "tenant")
    if not undecided:
        return
    versions = {v.job_id: v for v in session.scalars(select(VersionRow).where(
        VersionRow.job_id.in_([c.id for c in undecided])))}
    production = registry.production_versions(
        session, [(v.model_name, v.tenant) for v in versions.values()])
    policy = registry.read_policy(session, model_name)
    winners: list[tuple[VersionRow, str]] = []
    kept: list[registry.StageMove] = []
    for child in undecided:
        version = versions.get(child.id)
        current = production.get((version.model_name, version.tenant)) if version else None
        graduation = _judge(child, found, version, current, policy)
        set_graduation(child, graduation)
        if version is None or version.stage != Stage.candidate.value:
            continue
        if graduation.graduated:
            winners.append((version, f"graduated: {graduation.reason}"))
        else:
            kept.append((version, Stage.candidate, Stage.candidate, "fleet",
                         f"not promoted: {graduation.reason}"))
    registry.record_events(session, kept)
    if policy.fleet_promotion == "shadow":
        for version, reason in winners:
            registry.move(session, version, Stage.shadow, "fleet",
                          f"{reason}; waiting for an approval (policy fleet_promotion: shadow)")
    else:
        registry.promote(session, [v for v, _ in winners], actor="fleet",
                         reasons=[reason for _, reason in winners])


def _judge(child: JobRow, found: dict[str, JobRow], version: VersionRow | None,
           current: VersionRow | None, policy: PolicyRow) -> Graduation:
    """A succeeded child's graduation against what it would replace."""
    metrics = (child.result or {}).get("metrics") or {}
    rules = Rules.of(str(metrics.get("task")), policy)
    own = metrics.get(rules.metric)
    base = Graduation(metric=rules.metric, own=own, fallback=None, fallback_level=None,
                      graduated=False, reason="")
    reasons: list[str] = []
    if child.kind == "tenant":
        base, failed = _against_fallback(child, found, rules, base, reasons)
        if failed:
            return base
    replaced = (current if current is not None and version is not None
                and current.id != version.id else None)
    theirs: float | None = None
    basis: str | None = None
    if replaced is not None and version is not None:
        theirs, basis = production_on_same_rows(version, replaced, rules.metric,
                                                policy.require_same_holdout)
        base = dataclasses.replace(base, production=theirs, production_version=replaced.version)
    compared = base.fallback_level is not None or current is not None
    if own is None and compared:  # something to beat, and nothing to beat it with
        return dataclasses.replace(base, reason=f"its own {rules.metric} is undefined on its "
                                                "holdout")
    if own is None:
        reasons.append(f"its own {rules.metric} is undefined on its holdout")
    if replaced is not None:
        if theirs is None:
            return dataclasses.replace(base, reason=f"{'; '.join(reasons)}; production "
                                       f"version {replaced.version}: {basis}".lstrip("; "))
        ok, verdict = rules.beats(float(own or 0.0), float(theirs),
                                  f"production version {replaced.version} {basis}")
        reasons.append(verdict)
        if not ok:
            return dataclasses.replace(base, reason="; ".join(reasons))
    elif current is None:
        reasons.append("no production version to beat")
    broken = guard_rails(version, current, policy) if version is not None else None
    if broken is not None:
        reasons.append(f"refused by the guard rails: {broken}")
        return dataclasses.replace(base, reason="; ".join(reasons))
    return dataclasses.replace(base, graduated=True, reason="; ".join(reasons))


def _against_fallback(child: JobRow, found: dict[str, JobRow], rules: Rules, base: Graduation,
                      reasons: list[str]) -> tuple[Graduation, bool]:
    """A tenant's own model against its fallback on its holdout: the graduation so far, and
    whether it already failed."""
    role = role_of(child)
    segment = role.segment if role is not None else None
    fallback = (found.get(segment_tenant(segment)) if segment else None) or found.get(
        GLOBAL_TENANT)
    if fallback is None:
        reasons.append("no fallback model succeeded to beat")
        return base, False
    value = ((fallback.result or {}).get("by_tenant") or {}).get(child.tenant or "")
    base = dataclasses.replace(base, fallback=value, fallback_level=fallback.kind,
                               fallback_job_id=fallback.id)
    if base.own is None:
        return dataclasses.replace(base, reason=f"its own {rules.metric} is undefined on its "
                                                "holdout"), True
    if value is None:
        reasons.append(f"the {fallback.kind} model's {rules.metric} is undefined on its holdout")
        return base, False
    ok, verdict = rules.beats(float(base.own or 0.0), float(value), f"the {fallback.kind} model")
    reasons.append(verdict)
    return (base if ok else dataclasses.replace(base, reason="; ".join(reasons))), not ok


def record_serving_levels(session: Session, parent: JobRow, plan: FleetPlan,
                          children: list[JobRow]) -> None:
    """Write, per tenant, which level serves it now (its own production version, its
    segment's, the global one, or none) and why; for ``none``, what would fix it."""
    latest = latest_by_key(children)
    model_name = parent.model_name
    session.flush()  # this fleet's promotions, if any, are what the registry reads now
    levels = ([GLOBAL_TENANT] + [segment_tenant(s) for s in plan.segments]
              + [e.tenant for e in plan.tenants])
    production = registry.production_versions(session, [(model_name, t) for t in levels])
    waiting = _waiting_fallbacks(session, children)
    at = store.now()
    rows = {r.tenant: r for r in session.scalars(  # one query, not one per tenant
        select(FleetTenantRow).where(FleetTenantRow.model_name == model_name)).all()}
    new: list[dict[str, Any]] = []
    for entry in plan.tenants:
        child = latest.get(("tenant", entry.tenant))
        level, reason = _serving_level(model_name, entry.tenant, entry.segment, child,
                                       entry.reason, production, waiting)
        values = {"segment": entry.segment, "level": level, "reason": reason[:2000],
                  "job_id": child.id if child else None, "updated_at": at}
        row = rows.get(entry.tenant)
        if row is None:
            new.append({"model_name": model_name, "tenant": entry.tenant, **values})
        else:
            for key, value in values.items():
                setattr(row, key, value)
    if new:  # one INSERT: a fleet adds its tenants by the thousand
        session.execute(insert(table_of(FleetTenantRow)), new)


def _serving_level(model_name: str, tenant: str, segment: str | None, child: JobRow | None,
                   plan_reason: str, production: dict[tuple[str, str], VersionRow],
                   waiting: dict[str, VersionRow]) -> tuple[str, str]:
    """``(level, reason)`` of one tenant, from what is in production now."""
    own = production.get((model_name, tenant))
    why = _own_model(child, plan_reason)
    if own is not None:
        if child is not None and own.job_id == child.id:
            return "tenant", why
        return "tenant", f"its production version {own.version} serves it; {why}"
    chain = [f"tenant {tenant!r}"]
    if segment is not None:
        found = production.get((model_name, segment_tenant(segment)))
        if found is not None:
            return "segment", f"{why}; served by segment {segment} (version {found.version})"
        chain.append(f"segment {segment!r}")
    found = production.get((model_name, GLOBAL_TENANT))
    if found is not None:
        return "global", f"{why}; served by the global model (version {found.version})"
    chain.append("the global model")
    fixes = [f"approve version {v.version} of {_level_name(t)} (POST /models/{model_name}/"
             f"versions/{v.version}/approve with tenant {t!r})"
             for t, v in waiting.items() if t in (GLOBAL_TENANT, segment_tenant(segment or ""))]
    if child is not None and child.state == JobState.succeeded.value:
        fixes.append(f"approve its own model (job {child.id})")
    fix = " or ".join(fixes) or "train a global model for the fleet (tenants.global_model)"
    return "none", (f"{why}; not served: no production version for {', '.join(chain)}; "
                    f"to serve it, {fix}")


def _own_model(child: JobRow | None, plan_reason: str) -> str:
    """Why the tenant's own model from this fleet serves it, or not."""
    if child is None:
        return plan_reason
    if child.state != JobState.succeeded.value:
        info = child.exception_info or {}
        return f"its own model {child.state}: {info.get('message', '')}"[:500]
    graduation = graduation_of(child)
    if graduation is None:
        return "its own model was not judged"
    if graduation.graduated:
        return f"its own model graduated: {graduation.reason}"
    return f"its own model did not graduate: {graduation.reason}"


def _waiting_fallbacks(session: Session, children: list[JobRow]) -> dict[str, VersionRow]:
    """The fleet's global and segment versions not in production, by registry tenant."""
    ids = [c.id for c in fallbacks(children).values()]
    if not ids:
        return {}
    return {v.tenant: v for v in session.scalars(select(VersionRow).where(
        VersionRow.job_id.in_(ids), VersionRow.stage != Stage.production.value))}


def _level_name(tenant: str) -> str:
    return "the global model" if tenant == GLOBAL_TENANT else f"segment {tenant[8:]!r}"

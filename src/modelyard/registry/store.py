"""Registry store functions: register, read, list, move stages, approve, roll back, compare.

Every stage change goes through :func:`_move`, which checks the stage table, archives the version
a new production one replaces (one production per model and tenant, also enforced by a unique
index), and writes an audit event with who, when and why. Nothing here commits except the
top-level verbs that are whole actions on their own (``approve_version``, ``set_stage``,
``rollback``, ``set_policy``); ``register_version`` joins its caller's transaction, so a job
becomes ``succeeded`` and its version appears together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.errors import Conflict, NotFound
from modelyard.registry import policy as gate
from modelyard.registry.stages import ALLOWED, GLOBAL_TENANT, SERVED_STAGES, Stage
from modelyard.registry.tables import (
    ApprovalRow,
    FleetTenantRow,
    PolicyRow,
    StageEventRow,
    VersionRow,
)
from modelyard.sql.base import table_of

SYSTEM_ACTOR = "modelyard"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def register_version(
    session: Session,
    *,
    model_name: str,
    tenant: str = GLOBAL_TENANT,
    model_id: str,
    job_id: str | None,
    metrics: dict[str, Any],
    model_meta: dict[str, Any],
    holdout: dict[str, Any],
    provenance_path: str | None = None,
) -> VersionRow:
    """Add the next version of (model, tenant) as a candidate; auto-promote it if policy says so.

    Joins the caller's transaction (does not commit).
    """
    number = (
        session.scalar(
            select(func.max(VersionRow.version)).where(
                VersionRow.model_name == model_name, VersionRow.tenant == tenant
            )
        )
        or 0
    ) + 1
    at = now()
    row = VersionRow(
        model_name=model_name, tenant=tenant, version=number, stage=Stage.candidate.value,
        model_id=model_id, job_id=job_id, metrics=metrics, model_meta=model_meta,
        holdout=holdout, provenance_path=provenance_path, created_at=at, updated_at=at,
    )
    session.add(row)
    session.flush()
    _event(session, row, None, Stage.candidate, SYSTEM_ACTOR, _registered_reason(job_id))
    policy = read_policy(session, model_name)
    if policy.auto_promote:
        current = production_version(session, model_name, tenant)
        decision = gate.decide(row, current, policy, approvals=[])
        if decision.allowed:
            _move(session, row, Stage.production, "policy", decision.reason)
        else:
            _event(session, row, Stage.candidate, Stage.candidate, "policy",
                   f"not promoted: {decision.reason}")
    return row


def _registered_reason(job_id: str | None) -> str:
    return f"trained by job {job_id}" if job_id else "registered"


class Registered(NamedTuple):
    """A version :func:`register_versions` added."""

    model_name: str
    tenant: str
    version: int
    stage: str


def register_versions(session: Session, items: Sequence[dict[str, Any]]) -> list[Registered]:
    """:func:`register_version` for many (a batch of a fleet's tenants), in a few statements:
    the next numbers in one query, the versions and their audit events in one INSERT each.

    Models whose policy auto-promotes go one by one through :func:`register_version` (the
    gate compares each with its production version). Joins the caller's transaction.
    Returns what was registered, in the order of ``items``.
    """
    out: list[Registered | None] = [None] * len(items)
    by_model: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_model.setdefault(item["model_name"], []).append(i)
    at = now()
    for model_name, indexes in by_model.items():
        if session.scalar(select(PolicyRow.auto_promote)
                          .where(PolicyRow.model_name == model_name)):
            for i in indexes:
                row = register_version(session, **items[i])
                out[i] = Registered(row.model_name, row.tenant, row.version, row.stage)
            continue
        tenants = sorted({items[i].get("tenant", GLOBAL_TENANT) for i in indexes})
        latest: dict[str, int] = {t: int(v or 0) for t, v in session.execute(
            select(VersionRow.tenant, func.max(VersionRow.version))
            .where(VersionRow.model_name == model_name, VersionRow.tenant.in_(tenants))
            .group_by(VersionRow.tenant)).tuples()}
        values = []
        for i in indexes:
            item = dict(items[i])
            tenant = item.setdefault("tenant", GLOBAL_TENANT)
            latest[tenant] = latest.get(tenant, 0) + 1
            values.append({**item, "version": latest[tenant], "stage": Stage.candidate.value,
                           "created_at": at, "updated_at": at})
        versions = table_of(VersionRow)
        ids = session.scalars(
            insert(versions).returning(versions.c.id, sort_by_parameter_order=True),
            values).all()
        session.execute(insert(table_of(StageEventRow)), [
            {"version_id": version_id, "model_name": model_name, "tenant": v["tenant"],
             "version": v["version"], "from_stage": None, "to_stage": Stage.candidate.value,
             "actor": SYSTEM_ACTOR, "at": at,
             "reason": _registered_reason(v.get("job_id"))}
            for version_id, v in zip(ids, values, strict=True)])
        for i, v in zip(indexes, values, strict=True):
            out[i] = Registered(model_name, v["tenant"], v["version"], v["stage"])
    return [r for r in out if r is not None]


def read_version(session: Session, model_name: str, version: int,
                 tenant: str = GLOBAL_TENANT) -> VersionRow:
    row = session.scalar(
        select(VersionRow).where(VersionRow.model_name == model_name,
                                 VersionRow.tenant == tenant, VersionRow.version == version)
    )
    if row is None:
        raise NotFound(
            f"model {model_name!r} has no version {version} for tenant {tenant!r}; "
            f"list them with GET /models/{model_name}/versions"
        )
    return row


def list_versions(session: Session, model_name: str, *, tenant: str | None = None,
                  stage: Stage | None = None) -> list[VersionRow]:
    query = select(VersionRow).where(VersionRow.model_name == model_name)
    if tenant is not None:
        query = query.where(VersionRow.tenant == tenant)
    if stage is not None:
        query = query.where(VersionRow.stage == stage.value)
    return list(session.scalars(query.order_by(VersionRow.tenant, VersionRow.version)).all())


def list_models(session: Session) -> list[dict[str, Any]]:
    """One entry per model name: its tenants, version counts and production versions."""
    rows = session.execute(
        select(VersionRow.model_name, VersionRow.tenant, VersionRow.version, VersionRow.stage,
               VersionRow.created_at).order_by(VersionRow.model_name, VersionRow.tenant)
    ).all()
    models: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = models.setdefault(r.model_name, {"model_name": r.model_name, "versions": 0,
                                             "tenants": 0, "production": {}, "shadows": 0,
                                             "latest_at": r.created_at})
        m["versions"] += 1
        m["latest_at"] = max(m["latest_at"], r.created_at)
        if r.stage == Stage.production.value:
            m["production"][r.tenant] = r.version
        if r.stage == Stage.shadow.value:
            m["shadows"] += 1
    for m in models.values():
        m["tenants"] = len({r.tenant for r in rows if r.model_name == m["model_name"]})
    return list(models.values())


def production_version(session: Session, model_name: str,
                       tenant: str = GLOBAL_TENANT) -> VersionRow | None:
    return production_versions(session, [(model_name, tenant)]).get((model_name, tenant))


def production_versions(session: Session, keys: Sequence[tuple[str, str]]
                        ) -> dict[tuple[str, str], VersionRow]:
    """The production version of each ``(model_name, tenant)`` that has one, in one query."""
    if not keys:
        return {}
    rows = session.scalars(select(VersionRow).where(
        VersionRow.model_name.in_({name for name, _ in keys}),
        VersionRow.tenant.in_({tenant for _, tenant in keys}),
        VersionRow.stage == Stage.production.value))
    wanted = set(keys)
    return {key: v for v in rows if (key := (v.model_name, v.tenant)) in wanted}


def set_stage(session: Session, model_name: str, version: int, to: Stage, *, actor: str,
              reason: str, tenant: str = GLOBAL_TENANT) -> VersionRow:
    """Move a version to ``to``; to production only through the approval gate.

    Raises:
        Conflict: the move is not allowed, or the gate refuses (the message says why).
    """
    row = read_version(session, model_name, version, tenant)
    if to is Stage.production:
        decision = gate.decide(row, production_version(session, model_name, tenant),
                               read_policy(session, model_name), approvals_of(session, row.id))
        if not decision.allowed:
            raise Conflict(f"version {version} of {model_name!r} cannot go to production: "
                           f"{decision.reason}")
        reason = f"{reason} ({decision.reason})" if reason else decision.reason
    _move(session, row, to, actor, reason)
    session.commit()
    return row


def approve_version(session: Session, model_name: str, version: int, *, approver: str,
                    comment: str, tenant: str = GLOBAL_TENANT) -> VersionRow:
    """Record a named approval and promote the version to production."""
    if not approver.strip():
        raise Conflict("an approval needs the approver's name")
    row = read_version(session, model_name, version, tenant)
    if row.stage == Stage.production.value:
        raise Conflict(f"version {version} of {model_name!r} is already in production")
    if Stage.production not in ALLOWED[Stage(row.stage)]:
        raise Conflict(f"version {version} of {model_name!r} is {row.stage}; it cannot be "
                       "promoted")
    session.add(ApprovalRow(version_id=row.id, approver=approver, comment=comment, at=now()))
    session.flush()
    _move(session, row, Stage.production, approver, f"approved: {comment}" if comment
          else "approved")
    session.commit()
    return row


def rollback(session: Session, model_name: str, *, actor: str, reason: str,
             tenant: str = GLOBAL_TENANT) -> VersionRow:
    """Put the previous production version back in production (archiving the current one).

    Raises:
        Conflict: there is no earlier production version to return to.
    """
    current = production_version(session, model_name, tenant)
    events = session.scalars(
        select(StageEventRow).where(
            StageEventRow.model_name == model_name, StageEventRow.tenant == tenant,
            StageEventRow.to_stage == Stage.production.value,
        ).order_by(StageEventRow.id.desc())
    ).all()
    previous = next((e for e in events if current is None or e.version_id != current.id), None)
    if previous is None:
        raise Conflict(f"model {model_name!r} (tenant {tenant!r}) has no earlier production "
                       "version to roll back to")
    target = session.get(VersionRow, previous.version_id)
    if target is None:  # the foreign key makes this impossible; keep the message if it happens
        raise NotFound(f"version row {previous.version_id} is missing")
    _move(session, target, Stage.production, actor,
          f"rollback: {reason}" if reason else "rollback")
    session.commit()
    return target


def promote(session: Session, rows: Sequence[VersionRow], *, actor: str,
            reasons: Sequence[str]) -> None:
    """Put versions in production for a rule that has already decided (fleet graduation), at
    most one per model and tenant, each replacing (archiving) its tenant's production version.

    In a few statements whatever their number: a fleet graduates its tenants by the hundred,
    and one look-up and flush per version cost ~0.4 ms each at the end of every fleet. Joins
    the caller's transaction.
    """
    _to_production(session, list(zip(rows, reasons, strict=True)), actor)


def approvals_of(session: Session, version_id: int) -> list[ApprovalRow]:
    return list(session.scalars(
        select(ApprovalRow).where(ApprovalRow.version_id == version_id).order_by(ApprovalRow.id)
    ).all())


def events_of(session: Session, model_name: str, tenant: str | None = None,
              limit: int = 200) -> list[StageEventRow]:
    query = select(StageEventRow).where(StageEventRow.model_name == model_name)
    if tenant is not None:
        query = query.where(StageEventRow.tenant == tenant)
    return list(session.scalars(query.order_by(StageEventRow.id.desc()).limit(limit)).all())


def compare_versions(session: Session, model_name: str, a: int, b: int,
                     tenant: str = GLOBAL_TENANT) -> dict[str, Any]:
    """Two versions' metrics side by side, with ``b - a`` for every number both have."""
    va, vb = read_version(session, model_name, a, tenant), read_version(session, model_name, b,
                                                                        tenant)
    names = [k for k in va.metrics if k in vb.metrics] + [
        k for k in vb.metrics if k not in va.metrics]
    rows = []
    for name in names:
        x, y = va.metrics.get(name), vb.metrics.get(name)
        numeric = isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(
            x, bool)
        rows.append({"metric": name, "a": x, "b": y,
                     "delta": (y - x) if numeric and x is not None and y is not None else None})
    return {
        "model_name": model_name, "tenant": tenant,
        "a": {"version": a, "stage": va.stage, "model_id": va.model_id, "job_id": va.job_id},
        "b": {"version": b, "stage": vb.stage, "model_id": vb.model_id, "job_id": vb.job_id},
        "same_holdout": va.holdout == vb.holdout,
        "metrics": [r for r in rows if r["metric"] != "notes"],
    }


def read_policy(session: Session, model_name: str) -> PolicyRow:
    row = session.get(PolicyRow, model_name)
    if row is None:
        return PolicyRow(model_name=model_name, auto_promote=False, metric="roc_auc",
                         min_improvement=0.0, higher_is_better=True, require_same_holdout=True,
                         updated_by="", updated_at=now())
    return row


def set_policy(session: Session, model_name: str, *, auto_promote: bool, metric: str,
               min_improvement: float, higher_is_better: bool, require_same_holdout: bool,
               actor: str) -> PolicyRow:
    row = session.get(PolicyRow, model_name)
    if row is None:
        row = PolicyRow(model_name=model_name)
        session.add(row)
    row.auto_promote = auto_promote
    row.metric = metric
    row.min_improvement = min_improvement
    row.higher_is_better = higher_is_better
    row.require_same_holdout = require_same_holdout
    row.updated_by = actor
    row.updated_at = now()
    session.commit()
    return row


def _move(session: Session, row: VersionRow, to: Stage, actor: str, reason: str) -> None:
    if to is Stage.production:
        _to_production(session, [(row, reason)], actor)
        return
    _check_move(row, to)
    _set_stage(session, row, to, actor, reason)
    session.flush()


def _to_production(session: Session, moves: list[tuple[VersionRow, str]], actor: str) -> None:
    """Each ``(version, reason)`` to production, its tenant's production version archived."""
    if not moves:
        return
    keys = [(row.model_name, row.tenant) for row, _ in moves]
    if len(set(keys)) < len(keys):
        raise ValueError("one version per model and tenant can go to production at a time")
    for row, _ in moves:
        _check_move(row, Stage.production)
    current = production_versions(session, keys)
    replaced = False
    for row, _ in moves:
        old = current.get((row.model_name, row.tenant))
        if old is not None and old.id != row.id:
            _set_stage(session, old, Stage.archived, actor, f"replaced by version {row.version}")
            replaced = True
    if replaced:
        session.flush()  # free the unique production slots before taking them
    for row, reason in moves:
        _set_stage(session, row, Stage.production, actor, reason)
    try:
        session.flush()
    except IntegrityError:  # the unique production index: someone else promoted meanwhile
        session.rollback()
        first = moves[0][0]
        what = (f"another version of {first.model_name!r} (tenant {first.tenant!r})"
                if len(moves) == 1 else "another version of one of these tenants")
        raise Conflict(f"{what} became production at the same time; read the versions again "
                       "and retry") from None


def _check_move(row: VersionRow, to: Stage) -> None:
    current = Stage(row.stage)
    if to not in ALLOWED[current]:
        raise Conflict(f"version {row.version} of {row.model_name!r} is {current.value}; it "
                       f"cannot become {to.value} (allowed: "
                       f"{', '.join(sorted(s.value for s in ALLOWED[current])) or 'none'})")


def _set_stage(session: Session, row: VersionRow, to: Stage, actor: str, reason: str) -> None:
    """Set the stage and stamp it, with its audit event (flushed by the caller)."""
    current = Stage(row.stage)
    row.stage = to.value
    row.updated_at = now()
    _event(session, row, current, to, actor, reason)


def _event(session: Session, row: VersionRow, from_stage: Stage | None, to: Stage, actor: str,
           reason: str) -> None:
    session.add(StageEventRow(
        version_id=row.id, model_name=row.model_name, tenant=row.tenant, version=row.version,
        from_stage=from_stage.value if from_stage else None, to_stage=to.value, actor=actor,
        reason=reason, at=now(),
    ))


def generation(session: Session) -> tuple[Any, ...]:
    """Changes whenever a version enters or leaves production or shadow, or a fleet re-routes
    a tenant (serving polls it to swap its routing table).

    Only the versions serving reads count: a fleet registers candidates by the hundred, and
    each used to make the next poll reload the whole table for nothing. A version entering the
    set carries the newest ``updated_at``; one leaving lowers the count.
    """
    versions = session.execute(
        select(func.max(VersionRow.updated_at), func.count(VersionRow.id))
        .where(VersionRow.stage.in_(SERVED_STAGES))).one()
    fleets = session.execute(
        select(func.max(FleetTenantRow.updated_at), func.count())).one()
    return (versions[0], int(versions[1]), fleets[0], int(fleets[1]))

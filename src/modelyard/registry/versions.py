"""Reading the registry's versions: one, a model's, every model's, the production ones, two side
by side, and the generation serving polls to notice changes.

Nothing here writes. Versions are added by :mod:`~modelyard.registry.registration` and move
between stages through :mod:`~modelyard.registry.promotion`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.errors import NotFound
from modelyard.registry.policy import scored_production
from modelyard.registry.stages import GLOBAL_TENANT, SERVED_STAGES, Stage
from modelyard.registry.tables import FleetTenantRow, VersionRow


def read_version(session: Session, model_name: str, version: int,
                 tenant: str = GLOBAL_TENANT) -> VersionRow:
    """One version of (model, tenant).

    Raises:
        NotFound: the model has no such version for the tenant.
    """
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
    """A model's versions by tenant and number, optionally of one tenant or stage."""
    query = select(VersionRow).where(VersionRow.model_name == model_name)
    if tenant is not None:
        query = query.where(VersionRow.tenant == tenant)
    if stage is not None:
        query = query.where(VersionRow.stage == stage.value)
    return list(session.scalars(query.order_by(VersionRow.tenant, VersionRow.version)).all())


def latest_version(session: Session, model_name: str, *, tenant: str | None = None
                   ) -> VersionRow | None:
    """The newest version of a model (of one tenant, or of any), whatever its stage."""
    query = select(VersionRow).where(VersionRow.model_name == model_name)
    if tenant is not None:
        query = query.where(VersionRow.tenant == tenant)
    return session.scalars(query.order_by(VersionRow.created_at.desc(),
                                          VersionRow.id.desc()).limit(1)).first()


def versions_of_jobs(session: Session, job_ids: Sequence[str]) -> list[VersionRow]:
    """The versions that the jobs ``job_ids`` trained (a fleet: its children's ids too)."""
    if not job_ids:
        return []
    return list(session.scalars(select(VersionRow).where(VersionRow.job_id.in_(job_ids))
                                .order_by(VersionRow.tenant, VersionRow.version)).all())


@dataclasses.dataclass
class ModelOverview:
    """One model across its tenants: how many versions and tenants, the production version of
    each tenant that has one, how many shadows, and when its newest version was trained."""

    model_name: str
    versions: int
    tenants: int
    shadows: int
    production: dict[str, int]
    latest_at: dt.datetime


def list_models(session: Session) -> list[ModelOverview]:
    """One entry per model name, by name: its tenants, version counts and production versions."""
    rows = session.execute(
        select(VersionRow.model_name, VersionRow.tenant, VersionRow.version, VersionRow.stage,
               VersionRow.created_at).order_by(VersionRow.model_name, VersionRow.tenant)
    ).all()
    models: dict[str, ModelOverview] = {}
    tenants: dict[str, set[str]] = {}
    for r in rows:
        m = models.setdefault(r.model_name, ModelOverview(
            model_name=r.model_name, versions=0, tenants=0, shadows=0, production={},
            latest_at=r.created_at))
        m.versions += 1
        m.latest_at = max(m.latest_at, r.created_at)
        tenants.setdefault(r.model_name, set()).add(r.tenant)
        if r.stage == Stage.production.value:
            m.production[r.tenant] = r.version
        if r.stage == Stage.shadow.value:
            m.shadows += 1
    for name, m in models.items():
        m.tenants = len(tenants[name])
    return list(models.values())


def production_version(session: Session, model_name: str,
                       tenant: str = GLOBAL_TENANT) -> VersionRow | None:
    """The production version of (model, tenant), if it has one."""
    return production_versions(session, [(model_name, tenant)]).get((model_name, tenant))


def serving_version(session: Session, model_name: str, tenant: str | None
                    ) -> tuple[VersionRow, str]:
    """The production version that answers ``tenant`` as serving routes it: the tenant's own,
    else its fleet segment's, else the global one; and the registry tenant it belongs to.

    Raises:
        NotFound: none of them has a production version.
    """
    keys = [(model_name, GLOBAL_TENANT)]
    segment = None
    if tenant is not None and tenant != GLOBAL_TENANT:
        segment = session.scalar(select(FleetTenantRow.segment).where(
            FleetTenantRow.model_name == model_name, FleetTenantRow.tenant == tenant))
        keys[:0] = [(model_name, tenant)] + (
            [(model_name, f"segment:{segment}")] if segment is not None else [])
    found = production_versions(session, keys)
    for key in keys:
        if key in found:
            return found[key], key[1]
    asked = "" if tenant is None else f" for tenant {tenant!r} nor its fallbacks"
    raise NotFound(f"model {model_name!r} has no production version{asked}; train one and "
                   f"approve it (POST /models/{model_name}/versions/N/approve) before it can be "
                   "monitored")


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


def compare_versions(session: Session, model_name: str, a: int, b: int,
                     tenant: str = GLOBAL_TENANT) -> dict[str, Any]:
    """Two versions' metrics side by side, with ``b - a`` for every number both have, and
    their feature importances."""
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
        "same_rows": same_rows(va, vb) or same_rows(vb, va),
        "importance": compare_importance(va, vb),
    }


def compare_importance(va: VersionRow, vb: VersionRow) -> list[dict[str, Any]]:
    """The two versions' global feature importances (kept with each version when it trained),
    the most important (in either) first, with ``b - a`` where both have the feature."""
    a = va.model_meta.get("importance") or {}
    b = vb.model_meta.get("importance") or {}
    features = sorted(set(a) | set(b), key=lambda f: -max(a.get(f, 0.0), b.get(f, 0.0)))
    return [{"feature": f, "a": a.get(f), "b": b.get(f),
             "delta": b[f] - a[f] if f in a and f in b else None} for f in features]


def same_rows(champion: VersionRow, challenger: VersionRow) -> dict[str, Any] | None:
    """The two versions' metrics on the challenger's holdout rows, if the challenger's worker
    scored ``champion`` on them (it was production when the challenger was trained)."""
    scored = scored_production(challenger, champion)
    if scored is None:
        return None
    evidence = challenger.evidence or {}
    theirs = scored.get("metrics") or {}
    rows = []
    for name, mine in challenger.metrics.items():
        other = theirs.get(name)
        if name == "holdout_rows" or isinstance(mine, bool) or not isinstance(
                mine, int | float) or not isinstance(other, int | float):
            continue
        rows.append({"metric": name, "champion": other, "challenger": mine,
                     "delta": mine - other})
    return {"champion": champion.version, "challenger": challenger.version,
            "rows": evidence.get("holdout_rows"), "score_psi": scored.get("score_psi"),
            "metrics": rows}


def generation(session: Session) -> tuple[Any, ...]:
    """Changes whenever a version enters or leaves production or shadow, or a fleet re-routes
    a tenant (serving polls it to swap its routing table).

    Only the versions serving reads count: a fleet registers candidates by the hundred, and
    none of them changes what serving answers with. A version entering the set carries the
    newest ``updated_at``; one leaving lowers the count.
    """
    versions = session.execute(
        select(func.max(VersionRow.updated_at), func.count(VersionRow.id))
        .where(VersionRow.stage.in_(SERVED_STAGES))).one()
    fleets = session.execute(
        select(func.max(FleetTenantRow.updated_at), func.count())).one()
    return (versions[0], int(versions[1]), fleets[0], int(fleets[1]))

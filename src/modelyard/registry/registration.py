"""Registering versions: a succeeded job's model becomes the next candidate of its (model name,
tenant).

One implementation for one version and for many (a pack's or a fleet's tenants end by the
dozen): the next numbers in one query, the versions and their audit events in one INSERT each.
Then each new version of a model whose policy auto-promotes passes the approval gate, in order,
against its tenant's production version at that moment. Registration joins the caller's
transaction (it does not commit), so a job becomes ``succeeded`` and its version appears
together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from modelyard.registry import policy as gate
from modelyard.registry.audit import SYSTEM_ACTOR, now, record_event
from modelyard.registry.promotion import move
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.registry.tables import PolicyRow, StageEventRow, VersionRow
from modelyard.registry.versions import production_version
from modelyard.sql.base import table_of

# What an item given to register_versions may hold (tenant, provenance_path, evidence and
# fleet_child optional). A fleet child is promoted (or not) by its fleet's end, never here.
FIELDS = frozenset({"model_name", "tenant", "model_id", "job_id", "metrics", "model_meta",
                    "holdout", "provenance_path", "evidence", "fleet_child"})


class Registered(NamedTuple):
    """A version :func:`register_versions` added, and the stage it ended in."""

    model_name: str
    tenant: str
    version: int
    stage: str


def register_version(session: Session, *, model_name: str, tenant: str = GLOBAL_TENANT,
                     model_id: str, job_id: str | None, metrics: dict[str, Any],
                     model_meta: dict[str, Any], holdout: dict[str, Any],
                     provenance_path: str | None = None) -> Registered:
    """Add the next version of (model, tenant): :func:`register_versions` of one."""
    (registered,) = register_versions(session, [{
        "model_name": model_name, "tenant": tenant, "model_id": model_id, "job_id": job_id,
        "metrics": metrics, "model_meta": model_meta, "holdout": holdout,
        "provenance_path": provenance_path}])
    return registered


def register_versions(session: Session, items: Sequence[Mapping[str, Any]]
                      ) -> list[Registered]:
    """Add each item as the next candidate version of its (model, tenant), in order, and
    auto-promote those whose model's policy says so. Joins the caller's transaction.

    Args:
        session: the caller's session (not committed here).
        items: the keys of :func:`register_version`'s arguments, one mapping per version.

    Returns:
        What was registered, in the order of ``items``.

    Raises:
        TypeError: an item has a key that is not a version field.
    """
    if not items:
        return []
    at = now()
    values = [_values(item, at) for item in items]
    latest = _latest_numbers(session, {(v["model_name"], v["tenant"]) for v in values})
    for v in values:
        key = (v["model_name"], v["tenant"])
        latest[key] = v["version"] = latest.get(key, 0) + 1
    versions = table_of(VersionRow)
    # Matched back by (model, tenant, version), unique in a batch: RETURNING in the parameters'
    # order would cost SQLite one INSERT per version.
    inserted = {(r.model_name, r.tenant, r.version): r.id for r in session.execute(
        insert(versions).returning(versions.c.id, versions.c.model_name, versions.c.tenant,
                                   versions.c.version), values)}
    ids = [inserted[(v["model_name"], v["tenant"], v["version"])] for v in values]
    session.execute(insert(table_of(StageEventRow)), [
        {"version_id": version_id, "model_name": v["model_name"], "tenant": v["tenant"],
         "version": v["version"], "from_stage": None, "to_stage": Stage.candidate.value,
         "actor": SYSTEM_ACTOR, "at": at,
         "reason": f"trained by job {v['job_id']}" if v["job_id"] else "registered"}
        for version_id, v in zip(ids, values, strict=True)])
    registered = [Registered(v["model_name"], v["tenant"], v["version"], v["stage"])
                  for v in values]
    # A fleet's child is judged by its fleet's end, never here: such a batch reads no policy.
    policies = _auto_promoting(session, {v["model_name"] for v, item in zip(values, items,
                                                                          strict=True)
                                         if not item.get("fleet_child")})
    if policies:
        auto = [(i, version_id) for i, (version_id, v) in enumerate(zip(ids, values, strict=True))
                if v["model_name"] in policies and not items[i].get("fleet_child")]
        rows = {row.id: row for row in session.scalars(
            select(VersionRow).where(VersionRow.id.in_([version_id for _, version_id in auto])))}
        for i, version_id in auto:
            row = rows[version_id]
            _auto_promote(session, row, policies[row.model_name])
            registered[i] = registered[i]._replace(stage=row.stage)
    return registered


def _values(item: Mapping[str, Any], at: dt.datetime) -> dict[str, Any]:
    """The row of one new candidate version (its number is set by the caller)."""
    unknown = sorted(item.keys() - FIELDS)
    if unknown:
        raise TypeError(f"a version to register has no field {unknown[0]!r} (fields: "
                        f"{', '.join(sorted(FIELDS))})")
    return {
        "model_name": item["model_name"], "tenant": item.get("tenant") or GLOBAL_TENANT,
        "model_id": item["model_id"], "job_id": item.get("job_id"),
        "metrics": item["metrics"], "model_meta": item["model_meta"],
        "holdout": item["holdout"], "provenance_path": item.get("provenance_path"),
        "evidence": item.get("evidence"),
        "stage": Stage.candidate.value, "created_at": at, "updated_at": at,
    }


def _latest_numbers(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The highest version number of each ``(model_name, tenant)`` that has versions."""
    rows = session.execute(
        select(VersionRow.model_name, VersionRow.tenant, func.max(VersionRow.version))
        .where(VersionRow.model_name.in_({name for name, _ in keys}),
               VersionRow.tenant.in_({tenant for _, tenant in keys}))
        .group_by(VersionRow.model_name, VersionRow.tenant))
    return {(name, tenant): int(number) for name, tenant, number in rows
            if (name, tenant) in keys}


def _auto_promoting(session: Session, model_names: set[str]) -> dict[str, PolicyRow]:
    """The policies, by model name, of those models that auto-promote."""
    if not model_names:
        return {}
    return {p.model_name: p for p in session.scalars(select(PolicyRow).where(
        PolicyRow.model_name.in_(model_names), PolicyRow.auto_promote.is_(True)))}


def _auto_promote(session: Session, row: VersionRow, policy: PolicyRow) -> None:
    """Promote a new candidate if its model's policy lets it beat production; else record why
    it stays a candidate."""
    current = production_version(session, row.model_name, row.tenant)
    decision = gate.decide(row, current, policy, approvals=[])
    broken = gate.guard_rails(row, current, policy) if decision.allowed else None
    if decision.allowed and broken is None:
        move(session, row, Stage.production, "policy", decision.reason)
    else:
        why = decision.reason if broken is None else f"refused by the guard rails: {broken}"
        record_event(session, row, Stage.candidate, Stage.candidate, "policy",
                     f"not promoted: {why}")

"""What the model page shows of the registry, typed: each tenant's versions with their main
metrics and approvals, and the audit log. Built from the registry's store functions (the ones
``GET /models/{name}/versions`` and ``/events`` call), three queries for any number of versions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from modelyard.registry import store
from modelyard.registry.stages import ALLOWED, GLOBAL_TENANT, Stage
from modelyard.registry.tables import ApprovalRow, StageEventRow, VersionRow

MAX_TENANTS_SHOWN = 50
EVENTS_SHOWN = 100

# The metrics a version's row shows, by task (the first is the one fleets graduate on).
MAIN_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
    "multiclass": ("accuracy", "f1_macro", "log_loss"),
}


@dataclasses.dataclass(frozen=True)
class Approval:
    approver: str
    comment: str
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class VersionLine:
    tenant: str
    version: int
    stage: str
    metrics: list[tuple[str, Any]]  # (name, value) of its task's main metrics
    created_at: dt.datetime
    job_id: str | None
    approvals: list[Approval]

    @property
    def promotable(self) -> bool:
        """Whether an approval may take it to production (the stage table allows it)."""
        return Stage.production in ALLOWED[Stage(self.stage)]

    @property
    def moves(self) -> list[str]:
        """The stages the stage table lets it move to."""
        return [s.value for s in Stage if s in ALLOWED[Stage(self.stage)]]


@dataclasses.dataclass(frozen=True)
class TenantVersions:
    tenant: str
    production: int | None  # its production version's number
    versions: list[VersionLine]  # newest first


@dataclasses.dataclass(frozen=True)
class RegistryView:
    model_name: str
    tenants: list[TenantVersions]  # the global model first, then by name
    hidden_tenants: int  # tenants left out past MAX_TENANTS_SHOWN (filter by tenant to see one)
    events: list[StageEventRow]  # newest first


def registry_view(session: Session, model_name: str, tenant: str | None) -> RegistryView:
    """The model's versions (of ``tenant``, or of every tenant) and its audit log."""
    rows = store.list_versions(session, model_name, tenant=tenant)
    by_tenant: dict[str, list[VersionRow]] = {}
    for row in rows:
        by_tenant.setdefault(row.tenant, []).append(row)
    names = sorted(by_tenant, key=lambda t: (t != GLOBAL_TENANT, t))
    shown = names[:MAX_TENANTS_SHOWN]
    approvals = store.approvals_by_version(
        session, [r.id for name in shown for r in by_tenant[name]])
    tenants = []
    for name in shown:
        lines = [_line(r, approvals.get(r.id, [])) for r in reversed(by_tenant[name])]
        production = next((x.version for x in lines if x.stage == Stage.production.value),
                          None)
        tenants.append(TenantVersions(tenant=name, production=production, versions=lines))
    return RegistryView(model_name=model_name, tenants=tenants,
                        hidden_tenants=len(names) - len(shown),
                        events=store.events_of(session, model_name, tenant, EVENTS_SHOWN))


def main_metrics(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The task's main metrics that ``metrics`` holds, in order."""
    names = MAIN_METRICS.get(str(metrics.get("task", "")), ())
    return [(n, metrics[n]) for n in names if n in metrics]


def _line(row: VersionRow, approvals: list[ApprovalRow]) -> VersionLine:
    return VersionLine(
        tenant=row.tenant, version=row.version, stage=row.stage,
        metrics=main_metrics(row.metrics), created_at=row.created_at, job_id=row.job_id,
        approvals=[Approval(a.approver, a.comment, a.at) for a in approvals])

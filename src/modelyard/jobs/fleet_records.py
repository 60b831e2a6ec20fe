"""What a fleet keeps on its job rows, typed, and how its children are read.

``JobRow.fleet`` holds JSON of one of two shapes, by the job's kind:

- a fleet's parent (kind ``fleet``), once planned: its :class:`~modelyard.protocol.FleetPlan`;
- a child (kind ``global``, ``segment`` or ``tenant``): its
  :class:`~modelyard.protocol.FleetRole`, plus, once a tenant's model was compared with its
  fallback, a ``graduation`` object (:class:`Graduation`).

Code reads them through :func:`plan_of` and :func:`child_of` and writes them through the
records' ``to_json``; the JSON keeps the shape rows were written with before these types, so
existing databases read as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import FleetPlan, FleetRole

CHILD_KINDS = ("global", "segment", "tenant")


@dataclasses.dataclass(frozen=True)
class Graduation:
    """Whether a fleet's model passed its rules (a tenant's: beat its fallback on the tenant's
    holdout; any: beat its production version on the same rows, and the guard rails), and why."""

    metric: str
    own: float | None
    fallback: float | None  # the fallback's metric on this tenant's holdout rows
    fallback_level: str | None  # "global" or "segment"; None when no fallback succeeded
    graduated: bool
    reason: str
    fallback_job_id: str | None = None
    # The (model, tenant)'s production version when it was judged, and its metric on the same
    # holdout rows (None: there was none, or it could not be compared).
    production_version: int | None = None
    production: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for optional in ("fallback_job_id", "production_version", "production"):
            if out[optional] is None:
                del out[optional]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Graduation:
        return cls(metric=str(obj.get("metric") or ""), own=obj.get("own"),
                   fallback=obj.get("fallback"), fallback_level=obj.get("fallback_level"),
                   graduated=bool(obj.get("graduated")), reason=str(obj.get("reason") or ""),
                   fallback_job_id=obj.get("fallback_job_id"),
                   production_version=obj.get("production_version"),
                   production=obj.get("production"))


@dataclasses.dataclass(frozen=True)
class FleetChild:
    """A child's ``JobRow.fleet``: its role in the fleet and, once decided, its graduation."""

    role: FleetRole
    graduation: Graduation | None = None

    def to_json(self) -> dict[str, Any]:
        out = self.role.to_json()
        if self.graduation is not None:
            out["graduation"] = self.graduation.to_json()
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FleetChild:
        graduation = obj.get("graduation")
        return cls(FleetRole.from_json(obj),
                   Graduation.from_json(graduation) if graduation is not None else None)


def plan_of(job: JobRow) -> FleetPlan | None:
    """A fleet parent's plan; None for any other job, or a fleet not yet planned."""
    if job.kind != "fleet" or not job.fleet:
        return None
    return FleetPlan.from_json(job.fleet)


def child_of(job: JobRow) -> FleetChild | None:
    """A fleet child's role and graduation; None for a job that is not a fleet's child."""
    if job.kind not in CHILD_KINDS or not job.fleet:
        return None
    return FleetChild.from_json(job.fleet)


def role_of(job: JobRow) -> FleetRole | None:
    """A fleet child's role (what its worker is told: ``WorkerSpec.fleet``)."""
    child = child_of(job)
    return child.role if child is not None else None


def graduation_of(job: JobRow) -> Graduation | None:
    """A tenant's graduation, once its model was compared with its fallback."""
    child = child_of(job)
    return child.graduation if child is not None else None


def set_graduation(job: JobRow, graduation: Graduation) -> None:
    """Record a child's graduation on its row (written when the session flushes)."""
    child = child_of(job)
    if child is None:
        raise ValueError(f"job {job.id} is a {job.kind} job, not a fleet's child; only a "
                         "fleet's children graduate")
    job.fleet = dataclasses.replace(child, graduation=graduation).to_json()


def segment_tenant(segment: str) -> str:
    """The registry tenant name of a segment's model."""
    return f"segment:{segment}"


def children_of(session: Session, parent_id: str) -> list[JobRow]:
    """Every child of a fleet, every attempt, oldest first, as stored now: rows this session
    loaded before a state change (store moves are plain UPDATEs) are refreshed."""
    return list(session.scalars(
        select(JobRow).where(JobRow.parent_id == parent_id)
        .order_by(JobRow.created_at, JobRow.id)
        .execution_options(populate_existing=True)).all())


def latest_by_key(children: list[JobRow]) -> dict[tuple[str, str], JobRow]:
    """The newest child per (kind, tenant): retries replace earlier attempts."""
    out: dict[tuple[str, str], JobRow] = {}
    for child in children:
        out[(child.kind, child.tenant or "")] = child
    return out

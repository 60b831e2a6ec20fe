"""The registry's audit trail: one event per stage change (who, when, why), approvals, and the
one event serving records when it cannot load a production version.

Events are written by :mod:`~modelyard.registry.registration` and
:mod:`~modelyard.registry.promotion` (every stage move) in the same transaction as the change
they record, so the history and the stages never disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from modelyard.registry.stages import Stage
from modelyard.registry.tables import ApprovalRow, StageEventRow, VersionRow
from modelyard.sql.base import table_of

# One version's move to record: (version, from stage (None: just registered), to stage, actor,
# reason).
StageMove = tuple[VersionRow, Stage | None, Stage, str, str]

SYSTEM_ACTOR = "modelyard"  # the actor of what no person asked for (registration)
DEGRADED = "serving degraded"  # how the reason of a version serving could not load begins


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record_event(session: Session, row: VersionRow, from_stage: Stage | None, to: Stage,
                 actor: str, reason: str) -> None:
    """Add the audit event of a version's move: :func:`record_events` of one."""
    record_events(session, [(row, from_stage, to, actor, reason)])


def record_events(session: Session,
                  events: Sequence[StageMove]) -> None:
    """Add the audit events of versions' moves, ``(version, from, to, actor, reason)`` each,
    in one INSERT whatever their number (a fleet judges its tenants by the hundred), in the
    caller's transaction."""
    if events:
        session.execute(insert(table_of(StageEventRow)), [
            {"version_id": row.id, "model_name": row.model_name, "tenant": row.tenant,
             "version": row.version, "from_stage": from_stage.value if from_stage else None,
             "to_stage": to.value, "actor": actor, "reason": reason, "at": now()}
            for row, from_stage, to, actor, reason in events])


def record_degraded(session: Session, row: VersionRow, reason: str) -> bool:
    """Record, once per version, that serving cannot load it and what answers instead (an event
    that leaves its stage as it is). Returns False if an earlier call (any server's) did."""
    recorded = session.scalar(select(StageEventRow.id).where(
        StageEventRow.version_id == row.id, StageEventRow.actor == SYSTEM_ACTOR,
        StageEventRow.reason.startswith(DEGRADED)).limit(1))
    if recorded is not None:
        return False
    stage = Stage(row.stage)
    record_event(session, row, stage, stage, SYSTEM_ACTOR, f"{DEGRADED}: {reason}")
    return True


def events_of(session: Session, model_name: str, tenant: str | None = None,
              limit: int = 200) -> list[StageEventRow]:
    """A model's stage events, newest first (one tenant's, or every tenant's)."""
    query = select(StageEventRow).where(StageEventRow.model_name == model_name)
    if tenant is not None:
        query = query.where(StageEventRow.tenant == tenant)
    return list(session.scalars(query.order_by(StageEventRow.id.desc()).limit(limit)).all())


def approvals_of(session: Session, version_id: int) -> list[ApprovalRow]:
    """A version's named approvals, oldest first."""
    return approvals_by_version(session, [version_id]).get(version_id, [])


def approvals_by_version(session: Session, version_ids: Sequence[int]
                         ) -> dict[int, list[ApprovalRow]]:
    """The named approvals of each version in ``version_ids`` that has any, oldest first, in
    one query."""
    out: dict[int, list[ApprovalRow]] = {}
    if not version_ids:
        return out
    for row in session.scalars(select(ApprovalRow).where(
            ApprovalRow.version_id.in_(set(version_ids))).order_by(ApprovalRow.id)):
        out.setdefault(row.version_id, []).append(row)
    return out

"""Stage moves: set a stage, approve, roll back, promote a batch that a rule has decided.

Every move goes through :func:`move`, which checks the stage table
(:data:`~modelyard.registry.stages.ALLOWED`), archives the version a new production one
replaces, and writes an audit event with who, when and why. A move to production asked for by
a person passes the approval gate (:func:`modelyard.registry.policy.decide`) first.

Concurrent moves cannot both win. Each stage change is a conditional
``UPDATE ... WHERE id = :id AND stage = :stage_read`` whose row count is checked: of two
transactions that read the same stage, the second one's UPDATE waits for the first to commit
(PostgreSQL re-reads the row, and its stage no longer matches) or for the database lock
(SQLite), changes nothing, and the move is refused with a
:class:`~modelyard.errors.Conflict`, its approval and audit event rolled back with it. Two
different versions racing for one production slot also meet the unique index on
(model, tenant) of production versions.

The verbs that are whole actions of their own (:func:`set_stage`, :func:`approve_version`,
:func:`rollback`) commit; :func:`promote` and :func:`move` join the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from modelyard.errors import Conflict, NotFound
from modelyard.registry import policy as gate
from modelyard.registry.audit import StageMove, approvals_of, now, record_event, record_events
from modelyard.registry.stages import ALLOWED, GLOBAL_TENANT, Stage
from modelyard.registry.tables import ApprovalRow, PolicyRow, StageEventRow, VersionRow
from modelyard.registry.versions import production_version, production_versions, read_version


def set_stage(session: Session, model_name: str, version: int, to: Stage, *, actor: str,
              reason: str, tenant: str = GLOBAL_TENANT) -> VersionRow:
    """Move a version to ``to``; to production only through the approval gate.

    Raises:
        Conflict: the move is not allowed, or the gate refuses (the message says why).
    """
    row = read_version(session, model_name, version, tenant)
    if to is Stage.production:
        production = production_version(session, model_name, tenant)
        policy = gate.read_policy(session, model_name)
        decision = gate.decide(row, production, policy, approvals_of(session, row.id))
        if not decision.allowed:
            raise Conflict(f"version {version} of {model_name!r} cannot go to production: "
                           f"{decision.reason}")
        check_guard_rails(session, row, production, policy, actor)
        reason = f"{reason} ({decision.reason})" if reason else decision.reason
    move(session, row, to, actor, reason)
    session.commit()
    return row


def approve_version(session: Session, model_name: str, version: int, *, approver: str,
                    comment: str, tenant: str = GLOBAL_TENANT, identified: bool = False,
                    submitted_by: str | None = None) -> VersionRow:
    """Record a named approval and promote the version to production.

    Args:
        identified: ``approver`` is a token's identity, so four eyes applies
            (:func:`~modelyard.registry.policy.four_eyes`); else it is a name the caller gave.
        submitted_by: who submitted the job that trained the version (None: not recorded).

    Raises:
        Conflict: no approver's name, or the version cannot be promoted from its stage.
        Forbidden: four eyes: ``approver`` submitted the job, and the policy does not waive it.
    """
    if not approver.strip():
        raise Conflict("an approval needs the approver's name")
    row = read_version(session, model_name, version, tenant)
    if row.stage == Stage.production.value:
        raise Conflict(f"version {version} of {model_name!r} is already in production")
    if Stage.production not in ALLOWED[Stage(row.stage)]:
        raise Conflict(f"version {version} of {model_name!r} is {row.stage}; it cannot be "
                       "promoted")
    policy = gate.read_policy(session, model_name)
    waiver = gate.four_eyes(row, policy, approver, submitted_by) if identified else ""
    check_guard_rails(session, row, production_version(session, model_name, tenant), policy,
                      approver)
    session.add(ApprovalRow(version_id=row.id, approver=approver, comment=comment, at=now()))
    session.flush()
    reason = f"approved: {comment}" if comment else "approved"
    move(session, row, Stage.production, approver, f"{reason} ({waiver})" if waiver else reason)
    session.commit()
    return row


def check_guard_rails(session: Session, row: VersionRow, production: VersionRow | None,
                      policy: PolicyRow, actor: str) -> None:
    """Refuse a promotion that breaks the policy's guard rails, and audit the refusal (the
    refusal's event is committed: it outlives the refused move).

    Raises:
        Conflict: a guard rail is broken; the message has the numbers.
    """
    broken = gate.guard_rails(row, production, policy)
    if broken is None:
        return
    stage = Stage(row.stage)
    record_event(session, row, stage, stage, actor,
                 f"promotion to production refused by the guard rails: {broken}")
    session.commit()
    raise Conflict(f"version {row.version} of {row.model_name!r} cannot go to production: the "
                   f"model's guard rails refuse it: {broken} (change them with PUT /models/"
                   f"{row.model_name}/policy if they are wrong)")


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
    move(session, target, Stage.production, actor,
         f"rollback: {reason}" if reason else "rollback")
    session.commit()
    return target


def promote(session: Session, rows: Sequence[VersionRow], *, actor: str,
            reasons: Sequence[str]) -> None:
    """Put versions in production for a rule that has already decided (fleet graduation), at
    most one per model and tenant, each replacing (archiving) its tenant's production version.

    In a few statements whatever their number: a fleet graduates its tenants by the hundred,
    at its end, on its critical path. Joins the caller's transaction.
    """
    _to_production(session, list(zip(rows, reasons, strict=True)), actor)


def move(session: Session, row: VersionRow, to: Stage, actor: str, reason: str) -> None:
    """Move one version (no gate: the caller decided), with its audit event; flushes.

    Raises:
        Conflict: the stage table does not allow the move, or another version of the same
            model and tenant became production at the same time.
    """
    if to is Stage.production:
        _to_production(session, [(row, reason)], actor)
        return
    _check_move(row, to)
    record_events(session, [_set_stage(session, row, to, actor, reason)])
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
    events = []
    try:
        # The replaced versions first, to free the unique production slots before taking them.
        for row, _ in moves:
            old = current.get((row.model_name, row.tenant))
            if old is not None and old.id != row.id:
                events.append(_set_stage(session, old, Stage.archived, actor,
                                         f"replaced by version {row.version}"))
        for row, reason in moves:
            events.append(_set_stage(session, row, Stage.production, actor, reason))
        record_events(session, events)
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


def _set_stage(session: Session, row: VersionRow, to: Stage, actor: str,
               reason: str) -> StageMove:
    """Set the stage and stamp it if it is still the one read; returns its audit event, for
    the caller to record with its others (:func:`~modelyard.registry.audit.record_events`).

    Raises:
        Conflict: a concurrent transaction changed the version's stage since it was read
            (the session is rolled back).
    """
    current = Stage(row.stage)
    at = now()
    changed = session.execute(
        update(VersionRow)
        .where(VersionRow.id == row.id, VersionRow.stage == current.value)
        .values(stage=to.value, updated_at=at)
        .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise Conflict(f"version {row.version} of {row.model_name!r} (tenant {row.tenant!r}) "
                       f"left {current.value} while it was being moved to {to.value}: another "
                       "change came first; read the version again and retry")
    # The row already holds these values: the ORM must not write them again.
    set_committed_value(row, "stage", to.value)
    set_committed_value(row, "updated_at", at)
    return row, current, to, actor, reason

"""Experiment store functions: create, read, list, what serving recorded, and every state move.

States::

    running -> halted      a rollout's guardrail broke: traffic back to control
            -> stopped     a person, or the stopping rule with no winner
            -> concluded   the stopping rule found a winner that waits for a person's ship
            -> shipped     the winner went through the registry's approval gate
    concluded, stopped -> shipped

Only ``running`` experiments split traffic. Each move is a conditional ``UPDATE ... WHERE
state = :read``, so a person's stop and the controller's verdict cannot both win, and a halt,
a stop or a ship writes an event in the registry's audit trail, with its reason, on the
version it concerns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.errors import Conflict, NotFound, RequestError
from modelyard.experiments.spec import ExperimentSpec
from modelyard.experiments.tables import (
    RUNNING,
    ArmStatsRow,
    AssignmentRow,
    ExperimentRow,
)
from modelyard.registry import store as registry
from modelyard.registry.stages import Stage
from modelyard.sql.base import table_of

ENDED = ("halted", "stopped", "concluded", "shipped")
ALLOWED: dict[str, frozenset[str]] = {
    RUNNING: frozenset(ENDED),
    "concluded": frozenset({"shipped", "stopped"}),
    "stopped": frozenset({"shipped"}),
    "halted": frozenset(),
    "shipped": frozenset(),
}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_experiment(session: Session, spec: ExperimentSpec, actor: str) -> ExperimentRow:
    """Store a running experiment; commits.

    Raises:
        RequestError: an arm's version is not registered for the model and tenant.
        Conflict: the model and tenant already have a running experiment.
    """
    for i, arm in enumerate(spec.arms):
        try:
            registry.read_version(session, spec.model_name, arm.version, spec.tenant)
        except NotFound:
            raise RequestError(
                f"arms[{i}].version: version {arm.version} of {spec.model_name!r} (tenant "
                f"{spec.tenant!r}) is not registered; list them with GET /models/"
                f"{spec.model_name}/versions") from None
    at = now()
    row = ExperimentRow(
        id=uuid.uuid4().hex, model_name=spec.model_name, tenant=spec.tenant, type=spec.type,
        state=RUNNING, spec=spec.model_dump(mode="json"), salt=secrets.token_hex(8),
        weights=spec.initial_weights(), stage=0, stage_started_at=at, stage_start_requests=0,
        duplicate_outcomes=0, unknown_outcomes=0, created_by=actor, created_at=at,
        updated_at=at)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        running = session.scalar(select(ExperimentRow.id).where(
            ExperimentRow.model_name == spec.model_name, ExperimentRow.tenant == spec.tenant,
            ExperimentRow.state == RUNNING))
        raise Conflict(f"model {spec.model_name!r} (tenant {spec.tenant!r}) already has a "
                       f"running experiment ({running}); stop it first with POST "
                       f"/experiments/{running}/stop") from None
    return row


def read_experiment(session: Session, experiment_id: str) -> ExperimentRow:
    row = session.get(ExperimentRow, experiment_id)
    if row is None:
        raise NotFound(f"no experiment {experiment_id!r}; list them with GET /experiments")
    return row


def list_experiments(session: Session, model_name: str | None = None,
                     state: str | None = None, limit: int = 100) -> list[ExperimentRow]:
    """Experiments, newest first."""
    query = select(ExperimentRow)
    if model_name is not None:
        query = query.where(ExperimentRow.model_name == model_name)
    if state is not None:
        query = query.where(ExperimentRow.state == state)
    return list(session.scalars(query.order_by(ExperimentRow.created_at.desc()).limit(limit)))


def parsed(row: ExperimentRow) -> ExperimentSpec:
    return ExperimentSpec.model_validate(row.spec)


def set_weights(session: Session, row: ExperimentRow, weights: Sequence[float], *,
                stage: int | None = None, stage_start_requests: int | None = None) -> bool:
    """The controller's new split (and a rollout's new stage) if the experiment still runs;
    commits. False if it ended meanwhile."""
    values: dict[str, object] = {"weights": list(weights), "updated_at": now()}
    if stage is not None:
        values.update(stage=stage, stage_started_at=now(),
                      stage_start_requests=stage_start_requests or 0)
    # A new stage moves from the one before it only, so two controllers advance it once.
    same_stage = [] if stage is None else [ExperimentRow.stage == stage - 1]
    changed = session.execute(update(ExperimentRow).where(
        ExperimentRow.id == row.id, ExperimentRow.state == RUNNING, *same_stage).values(**values)
        .execution_options(synchronize_session=False))
    session.commit()
    return bool(changed.rowcount)  # type: ignore[attr-defined]


def end_experiment(session: Session, row: ExperimentRow, to: str, *, actor: str, reason: str,
                   winner: str | None = None) -> ExperimentRow:
    """Move an experiment to ``to`` with its reason, audited on the version it concerns (the
    winner's, else the treatment's); commits.

    Raises:
        Conflict: the move is not allowed from its state, or another writer moved it first.
    """
    current = row.state
    if to not in ALLOWED.get(current, frozenset()):
        raise Conflict(f"experiment {row.id} is {current}; it cannot become {to} (allowed: "
                       f"{', '.join(sorted(ALLOWED.get(current, ()))) or 'none'})")
    spec = parsed(row)
    at = now()
    values: dict[str, object] = {"state": to, "reason": reason, "updated_at": at}
    if current == RUNNING:
        values["ended_at"] = at
    if winner is not None:
        values["winner"] = winner
    changed = session.execute(update(ExperimentRow).where(
        ExperimentRow.id == row.id, ExperimentRow.state == current).values(**values)
        .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise Conflict(f"experiment {row.id} left {current} while it was being moved to {to}:"
                       " another change came first; read it again")
    concerned = winner or (spec.treatments[0] if spec.treatments else spec.control_arm)
    version = next(a.version for a in spec.arms if a.name == concerned)
    version_row = registry.read_version(session, row.model_name, version, row.tenant)
    stage = Stage(version_row.stage)
    registry.record_event(session, version_row, stage, stage, actor,
                          f"experiment {row.id} {to}: {reason}")
    session.commit()
    session.refresh(row)
    return row


@dataclasses.dataclass(frozen=True)
class Assigned:
    """A request an experiment's arm served, as serving reports it."""

    request_id: str
    experiment_id: str
    arm: str
    unit: str | None
    at: dt.datetime


@dataclasses.dataclass
class ArmCounts:
    """One serving process's counts of one arm since it started."""

    experiment_id: str
    arm: str
    requests: int
    errors: int
    latency_ms: list[int]
    scores: list[int]


def record_served(session: Session, server: str, assigned: Sequence[Assigned],
                  counts: Sequence[ArmCounts]) -> None:
    """Write what one serving process served since its last call: the new assignments, and
    its counts per arm (its own rows, overwritten); commits. Experiments deleted meanwhile are
    skipped."""
    ids = {a.experiment_id for a in assigned} | {c.experiment_id for c in counts}
    known = set(session.scalars(select(ExperimentRow.id).where(ExperimentRow.id.in_(ids))))
    rows = [dataclasses.asdict(a) for a in assigned if a.experiment_id in known]
    if rows:
        session.execute(table_of(AssignmentRow).insert(), rows)
    mine = [c for c in counts if c.experiment_id in known]
    if mine:
        session.execute(delete(ArmStatsRow).where(
            ArmStatsRow.server == server, ArmStatsRow.experiment_id.in_(
                {c.experiment_id for c in mine})))
        at = now()
        session.execute(table_of(ArmStatsRow).insert(), [
            {**dataclasses.asdict(c), "server": server, "updated_at": at} for c in mine])
    session.commit()


def arm_stats(session: Session, experiment_id: str) -> list[ArmStatsRow]:
    return list(session.scalars(select(ArmStatsRow).where(
        ArmStatsRow.experiment_id == experiment_id)))


def assignments_count(session: Session, experiment_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(AssignmentRow).where(
        AssignmentRow.experiment_id == experiment_id)) or 0)


def served_times(session: Session, experiment_id: str, limit: int
                 ) -> list[tuple[dt.datetime, str]]:
    """The newest ``limit`` assignments' times and arms, oldest first: what the arms served
    over time."""
    rows = session.execute(select(AssignmentRow.at, AssignmentRow.arm).where(
        AssignmentRow.experiment_id == experiment_id).order_by(AssignmentRow.at.desc())
        .limit(limit)).all()
    return [(at, arm) for at, arm in reversed(rows)]

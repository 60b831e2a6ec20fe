"""Outcomes: rewards matched to the arm that served their request.

An outcome names its request (``request_id``, and a row, 0 by default) or, with the
experiment's id, its unit (the unit's latest assignment at or before the outcome's time). It
is stored once per key (the request and row, or the unit and time): a second one is a
duplicate, counted and not stored, whether it came again through ``POST /outcomes`` or as a
label through ``POST /labels``. One that arrives after its experiment ended, or later than the
experiment's ``outcome_window_s`` after its request, is stored as late and left out of every
figure. One whose request served no experiment is unknown (counted on the experiment when
the batch names it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.errors import RequestError
from modelyard.experiments.store import parsed, read_experiment
from modelyard.experiments.tables import AssignmentRow, ExperimentRow, OutcomeRow
from modelyard.sql.base import table_of

_CHUNK = 500  # keys per IN (...): well under every database's parameter limit


@dataclasses.dataclass(frozen=True)
class Outcome:
    reward: float
    at: dt.datetime
    request_id: str | None = None
    row: int = 0
    unit: str | None = None


@dataclasses.dataclass(frozen=True)
class OutcomesAdded:
    outcomes: int
    matched: int = 0
    late: int = 0
    duplicates: int = 0
    unknown: int = 0
    unknown_examples: list[str] = dataclasses.field(default_factory=list)


def add_outcomes(session: Session, outcomes: Sequence[Outcome],
                 experiment_id: str | None = None) -> OutcomesAdded:
    """Match, check and store a batch; commits. ``experiment_id`` is needed for outcomes by
    unit.

    Raises:
        NotFound: no such experiment.
        RequestError: an outcome by unit without ``experiment_id``, or a reward the
            experiment's reward kind does not allow (nothing stored).
    """
    try:
        return _add(session, outcomes, experiment_id)
    except IntegrityError:  # another batch stored one of these keys meanwhile: look again
        session.rollback()
        return _add(session, outcomes, experiment_id)


def _add(session: Session, outcomes: Sequence[Outcome], experiment_id: str | None
         ) -> OutcomesAdded:
    named = read_experiment(session, experiment_id) if experiment_id is not None else None
    found = _assignments(session, outcomes, named)
    experiments = {e.id: e for e in session.scalars(select(ExperimentRow).where(
        ExperimentRow.id.in_({a.experiment_id for a in found if a is not None})))}
    keyed: dict[tuple[str, str], dict[str, object]] = {}
    duplicates: dict[str, int] = {}
    late = 0
    unknown: list[str] = []
    for i, (outcome, assigned) in enumerate(zip(outcomes, found, strict=True)):
        if assigned is None:
            unknown.append(outcome.request_id or f"unit {outcome.unit}")
            continue
        experiment = experiments[assigned.experiment_id]
        _check_reward(experiment, outcome, i)
        key = (f"{outcome.request_id}/{outcome.row}" if outcome.request_id is not None
               else f"unit:{outcome.unit}@{outcome.at.isoformat()}")
        if (experiment.id, key) in keyed:
            duplicates[experiment.id] = duplicates.get(experiment.id, 0) + 1
            continue
        is_late = _late(experiment, assigned, outcome)
        late += is_late
        keyed[(experiment.id, key)] = {
            "experiment_id": experiment.id, "key": key, "arm": assigned.arm,
            "reward": outcome.reward, "late": is_late, "at": outcome.at}
    stored = _stored_keys(session, list(keyed))
    for experiment_id, _ in stored:
        duplicates[experiment_id] = duplicates.get(experiment_id, 0) + 1
    late -= sum(bool(keyed[k]["late"]) for k in stored)
    new = [v for k, v in keyed.items() if k not in stored]
    if new:
        session.execute(table_of(OutcomeRow).insert(), new)
    _count(session, duplicates, named.id if named is not None else None, len(unknown))
    session.commit()
    return OutcomesAdded(outcomes=len(outcomes), matched=len(new) - late, late=late,
                         duplicates=sum(duplicates.values()), unknown=len(unknown),
                         unknown_examples=unknown[:10])


def _assignments(session: Session, outcomes: Sequence[Outcome],
                 experiment: ExperimentRow | None) -> list[AssignmentRow | None]:
    ids = [o.request_id for o in outcomes if o.request_id is not None]
    by_request: dict[str, AssignmentRow] = {}
    for start in range(0, len(ids), _CHUNK):
        for a in session.scalars(select(AssignmentRow).where(
                AssignmentRow.request_id.in_(ids[start:start + _CHUNK]))):
            by_request[a.request_id] = a
    units = [o.unit for o in outcomes if o.request_id is None and o.unit is not None]
    by_unit: dict[str, list[AssignmentRow]] = {}
    if units and experiment is None:
        raise RequestError("experiment_id: outcomes by unit need the experiment's id (a unit "
                           "may be in several experiments); give experiment_id, or send the "
                           "request_id each prediction answered with")
    named = experiment.id if experiment is not None else ""
    for start in range(0, len(units), _CHUNK):
        for a in session.scalars(select(AssignmentRow).where(
                AssignmentRow.experiment_id == named,
                AssignmentRow.unit.in_(units[start:start + _CHUNK])
        ).order_by(AssignmentRow.at)):
            by_unit.setdefault(a.unit or "", []).append(a)
    out: list[AssignmentRow | None] = []
    for o in outcomes:
        if o.request_id is not None:
            out.append(by_request.get(o.request_id))
        else:
            seen = [a for a in by_unit.get(o.unit or "", []) if a.at <= o.at]
            out.append(seen[-1] if seen else None)
    return out


def _check_reward(experiment: ExperimentRow, outcome: Outcome, i: int) -> None:
    reward = parsed(experiment).reward
    if reward.kind == "binary" and outcome.reward not in (0.0, 1.0):
        raise RequestError(f"outcomes[{i}].reward: {outcome.reward:g} for experiment "
                           f"{experiment.id}, whose reward is binary: send 0 or 1")
    if reward.kind == "continuous" and not reward.lo <= outcome.reward <= reward.hi:
        raise RequestError(f"outcomes[{i}].reward: {outcome.reward:g} is outside experiment "
                           f"{experiment.id}'s reward bounds [{reward.lo:g}, {reward.hi:g}]")


def _late(experiment: ExperimentRow, assigned: AssignmentRow, outcome: Outcome) -> bool:
    if experiment.ended_at is not None and outcome.at > experiment.ended_at:
        return True
    window = dt.timedelta(seconds=float(experiment.spec.get("outcome_window_s", 7 * 86400)))
    return outcome.at - assigned.at > window


def _stored_keys(session: Session, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    stored: set[tuple[str, str]] = set()
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        for experiment_id in {e for e, _ in chunk}:
            stored |= {(experiment_id, k) for k in session.scalars(select(OutcomeRow.key).where(
                OutcomeRow.experiment_id == experiment_id,
                OutcomeRow.key.in_([k for e, k in chunk if e == experiment_id])))}
    return stored


def _count(session: Session, duplicates: dict[str, int], named: str | None,
           unknown: int) -> None:
    """Add the batch's duplicates to each experiment's count, and its unknown outcomes to the
    experiment the batch named (an unknown request id names no experiment)."""
    counts = {e: (d, 0) for e, d in duplicates.items()}
    if named is not None and unknown:
        counts[named] = (counts.get(named, (0, 0))[0], unknown)
    for experiment_id, (dups, unknowns) in counts.items():
        session.execute(update(ExperimentRow).where(ExperimentRow.id == experiment_id).values(
            duplicate_outcomes=ExperimentRow.duplicate_outcomes + dups,
            unknown_outcomes=ExperimentRow.unknown_outcomes + unknowns))

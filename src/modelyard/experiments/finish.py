"""Reading an experiment's scorecard, and ending it: stop, or ship the winner through the
registry's approval gate.

Shipping by a person is their approval (``registry.approve_version``: four eyes and the
guard rails apply). The controller ships only under a model policy with ``auto_promote``, by
the same approval in its own name; without that policy a person still decides production.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.errors import Conflict
from modelyard.experiments import scorecard as cards
from modelyard.experiments.store import ENDED, arm_stats, end_experiment, now, parsed
from modelyard.experiments.tables import ExperimentRow, OutcomeRow
from modelyard.registry import store as registry
from modelyard.registry.audit import SYSTEM_ACTOR
from modelyard.registry.stages import Stage


def scorecard_of(session: Session, row: ExperimentRow) -> cards.Scorecard:
    """The experiment's scorecard now (a pruned one's: the card it ended with)."""
    if row.final_card is not None:
        return cards.from_json(row.final_card)
    rewards: dict[str, list[float]] = {}
    for arm, reward in session.execute(select(OutcomeRow.arm, OutcomeRow.reward).where(
            OutcomeRow.experiment_id == row.id, OutcomeRow.late.is_(False))):
        rewards.setdefault(arm, []).append(reward)
    late = session.scalar(select(func.count()).select_from(OutcomeRow).where(
        OutcomeRow.experiment_id == row.id, OutcomeRow.late.is_(True))) or 0
    at = row.ended_at or now()
    return cards.build(row, parsed(row), arm_stats(session, row.id), rewards, int(late), at)


def stop_experiment(session: Session, row: ExperimentRow, *, actor: str, reason: str
                    ) -> ExperimentRow:
    """Stop a running or concluded experiment: all traffic back to production."""
    return end_experiment(session, row, "stopped", actor=actor, reason=reason or "stopped")


def ship_experiment(session: Session, row: ExperimentRow, *, actor: str, arm: str | None,
                    comment: str, identified: bool = False,
                    submitted_by: str | None = None) -> ExperimentRow:
    """A person ships ``arm`` (default: the scorecard's recommended one): their approval puts
    its version in production through the gate, and the experiment ends shipped.

    Raises:
        Conflict: no arm named or recommended, the arm is the control, or the gate refuses.
    """
    if row.state in ENDED and row.state not in ("concluded", "stopped"):
        raise Conflict(f"experiment {row.id} is {row.state}; only a running, concluded or "
                       "stopped one can ship")
    spec = parsed(row)
    card = scorecard_of(session, row)
    winner = arm or card.recommendation.arm
    if winner is None or card.recommendation.action == "stop" and arm is None:
        raise Conflict(f"experiment {row.id} recommends no arm to ship "
                       f"({card.recommendation.action}: {card.recommendation.reason}); name "
                       "the arm to ship with \"arm\"")
    versions = {a.name: a.version for a in spec.arms}
    if winner not in versions:
        raise Conflict(f"arm: {winner!r} is not an arm of experiment {row.id} (arms: "
                       f"{', '.join(versions)})")
    version = registry.read_version(session, row.model_name, versions[winner], row.tenant)
    if version.stage == Stage.production.value:
        raise Conflict(f"arm {winner!r} (version {version.version}) is already production; "
                       f"stop the experiment instead (POST /experiments/{row.id}/stop)")
    why = comment or card.recommendation.reason
    registry.approve_version(session, row.model_name, version.version, approver=actor,
                             comment=f"experiment {row.id}: {why}", tenant=row.tenant,
                             identified=identified, submitted_by=submitted_by)
    try:
        return end_experiment(session, row, "shipped", actor=actor, reason=why, winner=winner)
    except Conflict:  # the controller concluded or stopped it meanwhile: both may ship
        session.refresh(row)
        return end_experiment(session, row, "shipped", actor=actor, reason=why, winner=winner)


def auto_ship(session: Session, row: ExperimentRow, winner: str, reason: str) -> ExperimentRow:
    """The controller's ship. Under a policy with ``auto_promote`` the controller approves
    the winner as a person's ship does (``registry.approve_version``, the guard rails and the
    audit the same, the approver ``modelyard``): the experiment's live result is the evidence,
    so the offline metric's margin is not asked again. Without that policy, or when the guard
    rails refuse, the experiment ends concluded, waiting for a person's ship."""
    spec = parsed(row)
    version = next(a.version for a in spec.arms if a.name == winner)
    policy = registry.read_policy(session, row.model_name)
    if not policy.auto_promote:
        return end_experiment(session, row, "concluded", actor=SYSTEM_ACTOR, winner=winner,
                              reason=f"{reason}; the model's policy needs a person to ship it:"
                              f" POST /experiments/{row.id}/ship")
    try:
        registry.approve_version(session, row.model_name, version, approver=SYSTEM_ACTOR,
                                 comment=f"experiment {row.id}: {reason} (policy auto_promote)",
                                 tenant=row.tenant)
    except Conflict as refused:
        session.rollback()
        return end_experiment(session, row, "concluded", actor=SYSTEM_ACTOR, winner=winner,
                              reason=f"{reason}; the approval gate refused it ({refused}): a "
                              f"person may ship it with POST /experiments/{row.id}/ship")
    return end_experiment(session, row, "shipped", actor=SYSTEM_ACTOR, reason=reason,
                          winner=winner)

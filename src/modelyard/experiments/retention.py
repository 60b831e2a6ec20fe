"""Retention: a finished experiment's assignments and outcomes are kept for
``--experiment-retention-days`` after it ended, then pruned by the controller.

The experiment itself stays, with the scorecard it ended with (``final_card``) and when it was
pruned (``pruned_at``): its figures still show, but outcomes of its requests arrive as unknown.
Serving's per-arm counts are small and stay. Each experiment is pruned in its own
transaction, conditional on not being pruned yet, so two controllers on one database do it
once.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from modelyard.experiments import finish
from modelyard.experiments.scorecard import to_json
from modelyard.experiments.store import ENDED, now
from modelyard.experiments.tables import AssignmentRow, ExperimentRow, OutcomeRow

log = logging.getLogger("modelyard.experiments")
BATCH = 100  # experiments pruned per call; the next tick takes the rest


def prune_finished(session: Session, keep: dt.timedelta) -> list[str]:
    """Prune the assignments and outcomes of experiments that ended more than ``keep`` ago;
    commits; the ids pruned."""
    cutoff = now() - keep
    due = list(session.scalars(select(ExperimentRow).where(
        ExperimentRow.state.in_(ENDED), ExperimentRow.ended_at < cutoff,
        ExperimentRow.pruned_at.is_(None)).limit(BATCH)))
    pruned = []
    for row in due:
        card = to_json(finish.scorecard_of(session, row))
        claimed = session.execute(update(ExperimentRow).where(
            ExperimentRow.id == row.id, ExperimentRow.pruned_at.is_(None)).values(
            final_card=card, pruned_at=now()).execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]  # another server pruned it
            session.rollback()
            continue
        session.execute(delete(OutcomeRow).where(OutcomeRow.experiment_id == row.id))
        session.execute(delete(AssignmentRow).where(AssignmentRow.experiment_id == row.id))
        session.commit()
        pruned.append(row.id)
        log.info("experiment %s: assignments and outcomes pruned (ended %s)", row.id,
                 row.ended_at)
    return pruned

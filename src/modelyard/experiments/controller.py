"""The experiment controller: a loop in the server, beside the scheduler, that moves running
experiments along every ``--experiment-interval`` seconds.

For each running experiment it reads the scorecard and:

- a bandit gets new weights: each arm's probability to be best (Thompson sampling's
  allocation), with ``min_share`` kept for every arm;
- a rollout whose guardrail broke is halted (all traffic back to control, audited with the
  figures); one whose stage has held its time and traffic moves to the next stage;
- a verdict of the stopping rule ends it: ``ship`` goes through the approval gate
  (:func:`~modelyard.experiments.finish.auto_ship`), ``stop`` stops it, with the reason.

Then it prunes the assignments and outcomes of experiments that ended longer ago than the
retention (:mod:`~modelyard.experiments.retention`).

Serving never waits for it: it reads the weights the controller wrote with its own refresh.
Every write is conditional on the experiment still running, so two controllers (two servers
on one PostgreSQL) cannot both end one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import Conflict
from modelyard.experiments import finish, retention
from modelyard.experiments.scorecard import Scorecard, stage_held
from modelyard.experiments.store import end_experiment, list_experiments, now, parsed, set_weights
from modelyard.experiments.tables import RUNNING, ExperimentRow
from modelyard.registry.audit import SYSTEM_ACTOR
from modelyard.ticker import Ticker

log = logging.getLogger("modelyard.experiments")


class Controller:
    def __init__(self, sessions: sessionmaker[Session], interval_s: float,
                 on_change: Callable[[], None] | None = None,
                 retention_days: float = 90.0) -> None:
        self.sessions = sessions
        self.interval_s = interval_s
        self.retention = dt.timedelta(days=retention_days)
        self.on_change = on_change  # serving in this process splits by the change at once
        self._ticker = Ticker("modelyard-experiments", interval_s, self.tick, log,
                              "the experiment controller's tick failed")  # next tick looks again

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def tick(self) -> None:
        """Look at every running experiment once."""
        changed = False
        with self.sessions() as session:
            for row in list_experiments(session, state=RUNNING, limit=10_000):
                try:
                    changed |= advance(session, row)
                except Conflict as exc:  # a person or another server moved it first
                    session.rollback()
                    log.info("experiment %s: %s", row.id, exc)
            retention.prune_finished(session, self.retention)
        if changed and self.on_change is not None:
            self.on_change()


def advance(session: Session, row: ExperimentRow) -> bool:
    """One look at a running experiment: reweigh, advance, halt or end it; True if it
    changed."""
    card = finish.scorecard_of(session, row)
    verdict = card.recommendation
    spec = parsed(row)
    if spec.type == "rollout" and verdict.action == "stop":
        end_experiment(session, row, "halted", actor=SYSTEM_ACTOR,
                       reason=f"rolled back to {spec.control_arm}: {verdict.reason}")
        return True
    if verdict.action == "ship" and verdict.arm is not None:
        finish.auto_ship(session, row, verdict.arm, verdict.reason)
        return True
    if verdict.action == "stop":
        end_experiment(session, row, "stopped", actor=SYSTEM_ACTOR, reason=verdict.reason)
        return True
    if spec.type == "bandit":
        return set_weights(session, row, bandit_weights(card, spec.min_share))
    if spec.type == "rollout":
        return _next_stage(session, row, card)
    return False


def bandit_weights(card: Scorecard, min_share: float) -> list[float]:
    """Thompson sampling's allocation (each arm's probability to be best), with every arm
    kept at ``min_share`` or more."""
    best = [c.prob_best or 0.0 for c in card.arms]
    free = 1.0 - min_share * len(best)
    return [min_share + free * p for p in best]


def _next_stage(session: Session, row: ExperimentRow, card: Scorecard) -> bool:
    spec = parsed(row)
    ramp = spec.ramp_or_default
    treatment = next(c for c in card.arms if not c.control)
    if row.stage >= len(ramp) - 1 or not stage_held(row, spec, treatment.requests, now()):
        return False
    share = ramp[row.stage + 1]
    weights = [share if a.name == treatment.name else 1 - share for a in spec.arms]
    if set_weights(session, row, weights, stage=row.stage + 1,
                   stage_start_requests=treatment.requests):
        log.info("experiment %s: rollout stage %d, %.0f%% to %s", row.id, row.stage + 2,
                 share * 100, treatment.name)
        return True
    return False

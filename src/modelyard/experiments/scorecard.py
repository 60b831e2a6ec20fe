"""The scorecard: per arm traffic, outcomes, the primary metric with its interval, lift against
control, guardrails, and the recommendation (ship, stop, or keep running) with its reason.

An arm's interval comes from scipy: a Wilson interval for a rate
(``binomtest(...).proportion_ci``), a t interval for a mean, a Beta credible interval for a
bandit's arm (``beta.interval``). A treatment's lift, its interval and its p-value come from
the stopping rule's own sequential test (:mod:`~modelyard.experiments.sequential`), valid at
every look, so the interval shown excludes no lift exactly when the rule may decide.
Probability to be best is read from draws of the same Beta posteriors a bandit samples from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from modelyard.experiments import metrics, sequential
from modelyard.experiments.spec import ExperimentSpec, Reward, Stopping
from modelyard.experiments.tables import ArmStatsRow, ExperimentRow

LEVEL = 0.95
DRAWS = 20_000


@dataclasses.dataclass(frozen=True)
class ArmCard:
    name: str
    version: int
    control: bool
    weight: float  # its share of traffic now
    requests: int
    errors: int
    latency_p99_ms: float | None
    score_psi: float | None  # against control's scores
    outcomes: int
    mean: float | None
    interval: tuple[float, float] | None
    lift: float | None  # relative to control: mean / control's mean - 1
    lift_interval: tuple[float, float] | None
    p_value: float | None
    prob_best: float | None


@dataclasses.dataclass(frozen=True)
class Guardrail:
    name: str  # error_rate, latency_p99_ms, score_psi, min_traffic
    arm: str
    value: float | None
    bound: float
    status: str  # ok, broken, waiting (the arm has too little traffic to judge)


@dataclasses.dataclass(frozen=True)
class Recommendation:
    action: str  # ship, stop, keep_running
    reason: str
    arm: str | None = None  # what ship would promote


@dataclasses.dataclass(frozen=True)
class Scorecard:
    arms: list[ArmCard]
    guardrails: list[Guardrail]
    recommendation: Recommendation
    late_outcomes: int
    method: str  # what computed the intervals and decides, in words


def build(row: ExperimentRow, spec: ExperimentSpec, arm_rows: Sequence[ArmStatsRow],
          rewards: dict[str, list[float]], late: int, at: dt.datetime) -> Scorecard:
    """The scorecard from the summed serving counts and each arm's rewards (late ones out)."""
    served = _served(spec, arm_rows)
    control = spec.control_arm
    means = {a.name: _mean(rewards.get(a.name, [])) for a in spec.arms}
    best = prob_best(spec.reward, rewards, [a.name for a in spec.arms])
    cards = []
    for arm, weight in zip(spec.arms, row.weights, strict=True):
        requests, errors, latency, scores = served[arm.name]
        xs = rewards.get(arm.name, [])
        lift = (sequential.compare(sequential.Sample.of(xs), sequential.Sample.of(
            rewards.get(control, [])), spec.stopping.expected_lift, _alpha(spec))
            if arm.name != control else None)
        cards.append(ArmCard(
            name=arm.name, version=arm.version, control=arm.name == control, weight=weight,
            requests=requests, errors=errors, latency_p99_ms=metrics.p99_ms(latency),
            score_psi=(metrics.score_psi(served[control][3], scores)
                       if arm.name != control else None),
            outcomes=len(xs), mean=means[arm.name],
            interval=_interval(spec, xs), lift=lift.lift if lift else None,
            lift_interval=lift.lift_interval if lift else None,
            p_value=lift.p_value if lift else None,
            prob_best=best.get(arm.name)))
    guardrails = _guardrails(spec, cards)
    return Scorecard(cards, guardrails, recommend(row, spec, cards, guardrails, at), late,
                     method(spec))


def to_json(card: Scorecard) -> dict[str, Any]:
    """The card as JSON, as a pruned experiment keeps it (:func:`from_json` reads it back)."""
    return dataclasses.asdict(card)


def from_json(data: dict[str, Any]) -> Scorecard:
    def pair(x: Sequence[float] | None) -> tuple[float, float] | None:
        return None if x is None else (float(x[0]), float(x[1]))

    arms = [ArmCard(**{**a, "interval": pair(a["interval"]),
                       "lift_interval": pair(a["lift_interval"])}) for a in data["arms"]]
    return Scorecard(arms, [Guardrail(**g) for g in data["guardrails"]],
                     Recommendation(**data["recommendation"]), int(data["late_outcomes"]),
                     str(data["method"]))


def _alpha(spec: ExperimentSpec) -> float:
    return spec.stopping.alpha or 1 - LEVEL


def method(spec: ExperimentSpec) -> str:
    """The scorecard's methods in words: what its intervals are and what decides."""
    arm = ("95% Beta credible intervals" if spec.type == "bandit" else
           "95% Wilson intervals" if spec.reward.kind == "binary" else "95% t intervals")
    lift = (f"lift intervals and p-values from an always-valid sequential test (mSPRT, tuned "
            f"to a {spec.stopping.expected_lift:.0%} lift) at {1 - _alpha(spec):.0%}, valid at "
            "every look")
    decides = {"ab": "the sequential test decides" + (
                   f" once each arm has {spec.stopping.min_outcomes:,} outcomes"
                   if spec.stopping.alpha is not None else ": off (no alpha)"),
               "bandit": "the probability to be best decides",
               "rollout": "the ramp and the guardrails decide"}[spec.type]
    return f"arms: {arm}; {lift}; {decides}"


Served = tuple[int, int, list[int], list[int]]


def _served(spec: ExperimentSpec, arm_rows: Sequence[ArmStatsRow]) -> dict[str, Served]:
    out: dict[str, Served] = {a.name: (0, 0, [], []) for a in spec.arms}
    for r in arm_rows:
        if r.arm in out:
            requests, errors, latency, scores = out[r.arm]
            out[r.arm] = (requests + r.requests, errors + r.errors,
                          metrics.add(latency, r.latency_ms), metrics.add(scores, r.scores))
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def _beta(reward: Reward, xs: Sequence[float]) -> tuple[float, float]:
    """The Beta posterior (uniform prior) of an arm's rewards scaled to [0, 1]: successes
    count fractionally for a bounded continuous reward."""
    scaled = (np.asarray(xs, dtype=float) - reward.lo) / (reward.hi - reward.lo)
    s = float(scaled.sum())
    return 1.0 + s, 1.0 + len(xs) - s


def _interval(spec: ExperimentSpec, xs: Sequence[float]) -> tuple[float, float] | None:
    n = len(xs)
    if n == 0:
        return None
    if spec.type == "bandit":
        a, b = _beta(spec.reward, xs)
        lo, hi = stats.beta.interval(LEVEL, a, b)
        scale = spec.reward.hi - spec.reward.lo
        return (float(spec.reward.lo + lo * scale), float(spec.reward.lo + hi * scale))
    if spec.reward.kind == "binary":
        ci = stats.binomtest(int(sum(xs)), n).proportion_ci(LEVEL, method="wilson")
        return (float(ci.low), float(ci.high))
    if n < 2:
        return None
    sem = float(stats.sem(xs))
    if sem == 0:
        return (float(xs[0]), float(xs[0]))
    lo, hi = stats.t.interval(LEVEL, n - 1, loc=float(np.mean(xs)), scale=sem)
    return (float(lo), float(hi))


def prob_best(reward: Reward, rewards: dict[str, list[float]], arms: Sequence[str],
              seed: int = 0) -> dict[str, float]:
    """Each arm's probability to have the highest mean under its Beta posterior."""
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.beta(*_beta(reward, rewards.get(a, [])), size=DRAWS) for a in arms])
    wins = np.bincount(draws.argmax(axis=0), minlength=len(arms)) / DRAWS
    return {a: float(w) for a, w in zip(arms, wins, strict=True)}


def _guardrails(spec: ExperimentSpec, cards: Sequence[ArmCard]) -> list[Guardrail]:
    g = spec.guardrails
    out = []
    for card in cards:
        if card.control:
            continue
        judged = card.requests >= g.min_traffic
        out.append(Guardrail("min_traffic", card.name, card.requests, g.min_traffic,
                             "ok" if judged else "waiting"))
        checks: list[tuple[str, float | None, float | None]] = [
            ("error_rate", card.errors / card.requests if card.requests else None,
             g.max_error_rate),
            ("latency_p99_ms", card.latency_p99_ms, g.max_latency_p99_ms),
            ("score_psi", card.score_psi, g.max_score_psi)]
        for name, value, bound in checks:
            if bound is None:
                continue
            status = ("waiting" if not judged or value is None
                      else "broken" if value > bound else "ok")
            out.append(Guardrail(name, card.name, value, bound, status))
    return out


def recommend(row: ExperimentRow, spec: ExperimentSpec, cards: Sequence[ArmCard],
              guardrails: Sequence[Guardrail], at: dt.datetime) -> Recommendation:
    broken = [g for g in guardrails if g.status == "broken"]
    if broken:
        return Recommendation("stop", "guardrail broken: " + "; ".join(
            f"{g.arm} {g.name} {g.value:.4g} > {g.bound:g}" for g in broken if g.value is not None))
    verdict = (_rollout(row, spec, cards, at) if spec.type == "rollout"
               else _bandit(spec, cards) if spec.type == "bandit"
               else ab_verdict(spec.stopping, cards))
    if verdict is not None:
        return verdict
    outcomes = sum(c.outcomes for c in cards)
    stop = spec.stopping
    if stop.max_samples is not None and outcomes >= stop.max_samples:
        return Recommendation("stop", f"{outcomes:,} outcomes reached max_samples "
                              f"({stop.max_samples:,}) without a winner")
    age = (at - row.created_at).total_seconds()
    if stop.max_duration_s is not None and age >= stop.max_duration_s:
        return Recommendation("stop", f"ran {age:,.0f} s, past max_duration_s "
                              f"({stop.max_duration_s:g}) without a winner")
    return Recommendation("keep_running", f"{outcomes:,} outcomes so far ("
                          + ", ".join(f"{c.name}: {c.outcomes:,}" for c in cards)
                          + "); no verdict yet")


def _rollout(row: ExperimentRow, spec: ExperimentSpec, cards: Sequence[ArmCard],
             at: dt.datetime) -> Recommendation | None:
    ramp = spec.ramp_or_default
    treatment = next(c for c in cards if not c.control)
    if row.stage < len(ramp) - 1 or not stage_held(row, spec, treatment.requests, at):
        return Recommendation("keep_running", f"ramp stage {row.stage + 1} of {len(ramp)} "
                              f"({ramp[row.stage]:.0%} to {treatment.name}); guardrails hold")
    return Recommendation("ship", f"the ramp reached {ramp[-1]:.0%} with the guardrails "
                          "holding", treatment.name)


def stage_held(row: ExperimentRow, spec: ExperimentSpec, treatment_requests: int,
               at: dt.datetime) -> bool:
    """Whether a rollout's stage has had its minimum time and treatment traffic."""
    held = (at - row.stage_started_at).total_seconds() >= spec.stage_min_s
    return held and treatment_requests - row.stage_start_requests >= spec.stage_min_requests


def _bandit(spec: ExperimentSpec, cards: Sequence[ArmCard]) -> Recommendation | None:
    threshold = spec.stopping.prob_best
    if threshold is None or min(c.outcomes for c in cards) < spec.stopping.min_outcomes:
        return None
    best = max(cards, key=lambda c: c.prob_best or 0.0)
    if (best.prob_best or 0.0) < threshold:
        return None
    why = f"{best.name} is the best arm with probability {best.prob_best:.3f} >= {threshold:g}"
    return (Recommendation("stop", f"{why}: the control stays", best.name) if best.control
            else Recommendation("ship", why, best.name))


def ab_verdict(stopping: Stopping, cards: Sequence[ArmCard]) -> Recommendation | None:
    """The A/B stopping rule on the cards' always-valid p-values: ship the best treatment
    whose lift is significantly positive, stop when every treatment is significantly worse,
    else no verdict (None). Valid however often it is asked."""
    alpha = stopping.alpha
    if alpha is None or min(c.outcomes for c in cards) < stopping.min_outcomes:
        return None
    treatments = [c for c in cards if not c.control and c.lift is not None]
    winners = [c for c in treatments if c.p_value is not None and c.p_value < alpha
               and (c.lift or 0) > 0]
    if winners:
        best = max(winners, key=lambda c: c.lift or 0.0)
        return Recommendation("ship", f"{best.name}'s lift {best.lift:+.2%} is significant "
                              f"(sequential p = {best.p_value:.3g} < {alpha:g})", best.name)
    if treatments and all(c.p_value is not None and c.p_value < alpha and (c.lift or 0) < 0
                          for c in treatments):
        return Recommendation("stop", f"every treatment is significantly worse than control "
                              f"(sequential p < {alpha:g})")
    return None

"""Request and response models of the experiment and outcome routes."""

from __future__ import annotations

import dataclasses
import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelyard.experiments.scorecard import ArmCard, Guardrail, Recommendation, Scorecard
from modelyard.experiments.spec import ExperimentSpec
from modelyard.experiments.tables import ExperimentRow
from modelyard.request.limits import MAX_TEXT_CHARS

MAX_OUTCOMES = 10_000  # outcomes per POST /outcomes: send more in several requests


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


_WHO = "; ignored when the server has tokens: the token's name is recorded"


class Stop(_In):
    actor: str | None = Field(None, min_length=1, description="who stops it" + _WHO)
    reason: str = Field("", max_length=MAX_TEXT_CHARS)


class Ship(_In):
    user: str | None = Field(None, min_length=1, description="the approver's name" + _WHO)
    arm: str | None = Field(None, max_length=200, description="the arm to ship (default: the "
                            "scorecard's recommended one)")
    comment: str = Field("", max_length=MAX_TEXT_CHARS)


class OutcomeIn(_In):
    request_id: str | None = Field(None, min_length=1, max_length=32,
                                   description="the request id a prediction answered with")
    row: int = Field(0, ge=0, le=2**31 - 1)
    unit: str | None = Field(None, min_length=1, max_length=200,
                             description="or the unit (with experiment_id)")
    reward: float = Field(allow_inf_nan=False)
    time: dt.datetime | None = Field(None, description="when it happened (default: now)")

    @model_validator(mode="after")
    def _one_key(self) -> OutcomeIn:
        if (self.request_id is None) == (self.unit is None):
            raise ValueError("give either request_id or unit, not both")
        if self.time is not None and self.time.tzinfo is None:
            raise ValueError("time: give a timezone (e.g. 2026-01-02T03:04:05Z)")
        return self


class OutcomesIn(_In):
    experiment_id: str | None = Field(None, max_length=32, description="needed for outcomes "
                                      "by unit")
    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=MAX_OUTCOMES)


class OutcomesAnswer(BaseModel):
    outcomes: int = Field(description="outcomes in the batch")
    matched: int = Field(description="stored and counted for the arm that served them")
    late: int = Field(description="stored but not counted: after the experiment ended or "
                      "past its outcome window")
    duplicates: int = Field(description="already stored (or twice in the batch): not counted "
                            "again")
    unknown: int = Field(description="their request or unit was served by no experiment")
    unknown_examples: list[str]


class ArmOut(BaseModel):
    name: str
    version: int
    control: bool
    weight: float = Field(description="its share of traffic now")
    requests: int
    errors: int
    latency_p99_ms: float | None = Field(description="upper edge of the p99's bucket")
    score_psi: float | None = Field(description="its scores' PSI against control's")
    outcomes: int
    mean: float | None = Field(description="the primary metric: its mean reward")
    interval: tuple[float, float] | None = Field(
        description="95% interval of the mean: Wilson (binary), t (continuous), or the Beta "
        "posterior's credible interval (bandit)")
    lift: float | None = Field(description="mean / control's mean - 1")
    lift_interval: tuple[float, float] | None = Field(
        description="the lift's always-valid interval (the sequential test's confidence "
        "sequence at the stopping rule's alpha)")
    p_value: float | None = Field(description="the sequential test's always-valid p-value")
    prob_best: float | None = Field(description="probability to be the best arm (Beta "
                                    "posteriors)")


class GuardrailOut(BaseModel):
    name: str
    arm: str
    value: float | None
    bound: float
    status: str = Field(description="ok, broken, or waiting for min_traffic")


class RecommendationOut(BaseModel):
    action: str = Field(description="ship, stop or keep_running")
    reason: str
    arm: str | None


class Experiment(BaseModel):
    id: str
    model_name: str
    tenant: str
    type: str
    state: str = Field(description="running, halted, stopped, concluded or shipped")
    spec: ExperimentSpec
    weights: list[float]
    stage: int = Field(description="a rollout's ramp stage (0 first)")
    reason: str | None = Field(description="why it ended")
    winner: str | None
    created_by: str
    created_at: dt.datetime
    ended_at: dt.datetime | None
    pruned_at: dt.datetime | None = Field(
        default=None, description="when its assignments and outcomes were pruned (retention); "
        "its scorecard is the one it ended with")
    duplicate_outcomes: int
    unknown_outcomes: int
    late_outcomes: int | None = None
    method: str | None = Field(default=None, description="what computed the intervals and "
                               "what decides, in words")
    arms: list[ArmOut] | None = None
    guardrails: list[GuardrailOut] | None = None
    recommendation: RecommendationOut | None = None


class ExperimentList(BaseModel):
    experiments: list[Experiment]


def experiment_of(row: ExperimentRow, card: Scorecard | None = None) -> Experiment:
    out = Experiment(
        id=row.id, model_name=row.model_name, tenant=row.tenant, type=row.type,
        state=row.state, spec=ExperimentSpec.model_validate(row.spec), weights=row.weights,
        stage=row.stage, reason=row.reason, winner=row.winner, created_by=row.created_by,
        created_at=row.created_at, ended_at=row.ended_at, pruned_at=row.pruned_at,
        duplicate_outcomes=row.duplicate_outcomes, unknown_outcomes=row.unknown_outcomes)
    if card is not None:
        out.late_outcomes = card.late_outcomes
        out.method = card.method
        out.arms = [ArmOut.model_validate(_fields(a)) for a in card.arms]
        out.guardrails = [GuardrailOut.model_validate(_fields(g)) for g in card.guardrails]
        out.recommendation = RecommendationOut.model_validate(_fields(card.recommendation))
    return out


def _fields(x: ArmCard | Guardrail | Recommendation) -> dict[str, object]:
    return dataclasses.asdict(x)

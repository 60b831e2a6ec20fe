"""What an experiment is: its arms, its type (``ab``, ``rollout``, ``bandit``), its hypothesis,
metrics, guardrails and stopping rule (pydantic, no I/O).

A definition that cannot work is refused here, field by field, so ``POST /experiments``
answers 422 naming the field: weights that do not match the arms, a ramp that does not rise to
1, a bandit whose minimum shares add up to more than all the traffic.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from modelyard.request.limits import validate_name

ExperimentType = Literal["ab", "rollout", "bandit"]
ArmName = Annotated[str, AfterValidator(lambda v: validate_name("arm name", v))]


class Arm(BaseModel):
    """One arm: a name and the registered version of (model, tenant) it serves."""

    model_config = ConfigDict(extra="forbid")
    name: ArmName
    version: int = Field(ge=1, le=2**31 - 1)


class Reward(BaseModel):
    """The primary metric's outcomes: 0/1, or a number bounded in ``[lo, hi]``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["binary", "continuous"] = "binary"
    lo: float = Field(0.0, allow_inf_nan=False)
    hi: float = Field(1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> Reward:
        if self.hi <= self.lo:
            raise ValueError(f"reward.hi ({self.hi:g}) must be above reward.lo ({self.lo:g})")
        return self


class Guardrails(BaseModel):
    """Bounds a treatment arm must hold once it has ``min_traffic`` requests (None: off)."""

    model_config = ConfigDict(extra="forbid")
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_latency_p99_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    max_score_psi: float | None = Field(None, gt=0, allow_inf_nan=False)
    min_traffic: int = Field(100, ge=1, le=2**31 - 1,
                             description="requests an arm needs before it is judged")


class Stopping(BaseModel):
    """When the experiment ends: a limit reached, or a verdict strong enough."""

    model_config = ConfigDict(extra="forbid")
    max_duration_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    max_samples: int | None = Field(None, ge=1, le=2**62)
    prob_best: float | None = Field(None, gt=0.5, lt=1,
                                    description="bandit: ship the arm this likely the best")
    alpha: float | None = Field(0.05, gt=0, lt=0.5,
                                description="ab: ship (or stop) when the sequential test's "
                                "always-valid p-value is below it")
    expected_lift: float = Field(0.1, gt=0, le=100, allow_inf_nan=False,
                                 description="ab: the relative lift the sequential test finds "
                                 "soonest (larger ones sooner, smaller ones later)")
    min_outcomes: int = Field(100, ge=1, le=2**31 - 1,
                              description="outcomes per arm before any verdict")


class ExperimentSpec(BaseModel):
    """``POST /experiments``'s body."""

    model_config = ConfigDict(extra="forbid")
    model_name: Annotated[str, AfterValidator(lambda v: validate_name("model name", v))]
    tenant: Annotated[str, AfterValidator(lambda v: validate_name("tenant name", v))] = Field(
        "*", description="the registry tenant whose requests it splits; '*' for the requests "
        "the global model answers")
    type: ExperimentType
    arms: list[Arm] = Field(min_length=2, max_length=10)
    control: str | None = Field(None, description="the control arm's name (default: the "
                                "first arm)")
    weights: list[float] | None = Field(None, description="ab: each arm's share of traffic")
    ramp: list[float] | None = Field(None, description="rollout: the treatment's share at "
                                     "each stage, rising to 1")
    stage_min_s: float = Field(60.0, ge=0, allow_inf_nan=False,
                               description="rollout: the least time a stage is held")
    stage_min_requests: int = Field(100, ge=0, le=2**31 - 1,
                                    description="rollout: the least treatment requests per stage")
    min_share: float = Field(0.05, ge=0, le=0.5,
                             description="bandit: each arm's minimum share of traffic")
    unit_column: str | None = Field(None, max_length=200, description="a row column whose "
                                    "value is the unit when a request names none")
    hypothesis: str = Field("", max_length=2000)
    primary_metric: str = Field("reward", max_length=200)
    secondary_metrics: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=20)
    reward: Reward = Field(default_factory=lambda: Reward.model_validate({}))
    guardrails: Guardrails = Field(default_factory=lambda: Guardrails.model_validate({}))
    stopping: Stopping = Field(default_factory=lambda: Stopping.model_validate({}))
    outcome_window_s: float = Field(7 * 86400.0, gt=0, allow_inf_nan=False,
                                    description="outcomes later than this after their "
                                    "request are counted late, not used")

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [a.name for a in self.arms]
        if len(set(names)) < len(names):
            raise ValueError(f"arms: names must differ, got {names}")
        versions = [a.version for a in self.arms]
        if len(set(versions)) < len(versions):
            raise ValueError(f"arms: each arm serves another version, got versions {versions}")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control: {self.control!r} is not an arm (arms: {names})")
        self._check_type()
        return self

    def _check_type(self) -> None:
        n = len(self.arms)
        if self.type == "ab":
            if self.weights is not None and (len(self.weights) != n or min(self.weights) < 0
                                             or sum(self.weights) <= 0):
                raise ValueError(f"weights: one non-negative weight per arm ({n}), not all "
                                 f"zero, got {self.weights}")
        elif self.weights is not None:
            raise ValueError(f"weights: only an ab experiment has fixed weights, not a "
                             f"{self.type}")
        if self.type == "rollout":
            if n != 2:
                raise ValueError(f"arms: a rollout has two arms (control and treatment), got {n}")
            ramp = self.ramp or [0.01, 0.05, 0.25, 1.0]
            if any(not 0 < r <= 1 for r in ramp) or ramp != sorted(set(ramp)) or ramp[-1] != 1:
                raise ValueError(f"ramp: rising shares in (0, 1] that end at 1, got {ramp}")
        elif self.ramp is not None:
            raise ValueError(f"ramp: only a rollout has a ramp, not a {self.type}")
        if self.type == "bandit" and self.min_share * n > 1:
            raise ValueError(f"min_share: {self.min_share:g} for each of {n} arms is more than "
                             "all the traffic; lower it")

    @property
    def control_arm(self) -> str:
        return self.control or self.arms[0].name

    @property
    def treatments(self) -> list[str]:
        return [a.name for a in self.arms if a.name != self.control_arm]

    def initial_weights(self) -> list[float]:
        """Each arm's share when the experiment starts."""
        n = len(self.arms)
        if self.type == "ab":
            raw = self.weights or [1.0] * n
            return [w / sum(raw) for w in raw]
        if self.type == "rollout":
            first = (self.ramp or [0.01])[0]
            return [1 - first if a.name == self.control_arm else first for a in self.arms]
        return [1.0 / n] * n

    @property
    def ramp_or_default(self) -> list[float]:
        return self.ramp or [0.01, 0.05, 0.25, 1.0]

"""The A/B stopping rule: a mixture sequential probability ratio test (mSPRT), valid however
often the controller looks at the outcomes.

A fixed-horizon test (Fisher's, Welch's t) read at every controller round finds a "significant"
lift between identical arms far more often than its alpha says. The mSPRT does not: for the
difference of the arms' means ``d`` with variance ``V`` (the normal approximation, each arm's
sample variance over its count) and a normal mixture ``N(0, tau^2)`` over the true difference,
the likelihood ratio against "no difference" is::

    L = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

Under no difference ``L`` is a martingale with mean 1, so by Ville's inequality it ever reaches
``1 / alpha`` with probability at most ``alpha``, whenever and however often it is read. The
always-valid p-value is ``min(1, 1 / L)``; the confidence sequence is the set of differences
``theta`` whose own ratio (``d - theta`` in place of ``d``) stays under ``1 / alpha``. See
Johari, Koomen, Pekelis and Walsh, "Always Valid Inference: Continuous Monitoring of A/B
Tests", Operations Research 70(3), 2022 (the method of Optimizely's Stats Engine). scipy and
statsmodels have no sequential test, so the closed form is here; tests/experiments checks it
against scipy's numerical integration of the mixture and against simulated A/A experiments.

``tau`` is ``expected_lift`` times the control's mean: the test is quickest for lifts of about
that size, and finds larger ones sooner and smaller ones later.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Sample:
    """An arm's outcomes as the test reads them: count, mean and sample variance."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, xs: Sequence[float]) -> Sample:
        a = np.asarray(xs, dtype=float)
        return cls(len(a), float(a.mean()) if len(a) else 0.0,
                   float(a.var(ddof=1)) if len(a) > 1 else 0.0)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A treatment against control: the relative lift, its always-valid interval, and the
    always-valid p-value (None where the outcomes cannot say: too few, or no spread)."""

    lift: float
    lift_interval: tuple[float, float] | None
    p_value: float | None


def likelihood_ratio(d: float, v: float, tau2: float) -> float:
    """The mixture likelihood ratio of a difference ``d`` with variance ``v`` against 0."""
    return math.sqrt(v / (v + tau2)) * math.exp(min(tau2 * d * d / (2 * v * (v + tau2)), 700.0))


def half_width(v: float, tau2: float, alpha: float) -> float:
    """Half the width of the confidence sequence: where the ratio reaches ``1 / alpha``."""
    return math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))


def compare(treatment: Sample, control: Sample, expected_lift: float, alpha: float
            ) -> Comparison | None:
    """The treatment's lift over control, with the mSPRT's interval and p-value; None
    without outcomes in either arm or with a control mean of 0 (no relative lift)."""
    if treatment.n == 0 or control.n == 0 or control.mean == 0:
        return None
    lift = treatment.mean / control.mean - 1
    if treatment.n < 2 or control.n < 2:
        return Comparison(lift, None, None)
    v = treatment.var / treatment.n + control.var / control.n
    if v == 0:  # both arms constant: no spread to test against
        return Comparison(lift, None, None)
    d = treatment.mean - control.mean
    tau2 = (expected_lift * control.mean) ** 2
    p = min(1.0, 1.0 / likelihood_ratio(d, v, tau2))
    h = half_width(v, tau2, alpha)
    low, high = sorted(((d - h) / control.mean, (d + h) / control.mean))
    return Comparison(lift, (low, high), p)

"""The A/B stopping rule's sequential test (pure functions, seeded): its closed form against
scipy's numerical integration of the mixture, and the controller's decision, asked at every
step of simulated experiments, against its alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from modelyard.experiments.scorecard import ArmCard, ab_verdict
from modelyard.experiments.sequential import Sample, compare, half_width, likelihood_ratio
from modelyard.experiments.spec import Stopping

ALPHA, EXPECTED_LIFT, RATE = 0.05, 0.1, 0.3
STOPPING = Stopping(alpha=ALPHA, expected_lift=EXPECTED_LIFT, min_outcomes=100)
LOOKS = range(100, 4001, 100)  # outcomes per arm at each look


def _mixture(d: float, v: float, tau2: float) -> float:
    """The likelihood ratio integrated over the N(0, tau2) mixture by quadrature."""
    def integrand(theta: float) -> float:
        return float(stats.norm.pdf(d, theta, math.sqrt(v)) / stats.norm.pdf(d, 0, math.sqrt(v))
                     * stats.norm.pdf(theta, 0, math.sqrt(tau2)))
    sd = math.sqrt(tau2)
    return float(integrate.quad(integrand, -12 * sd, 12 * sd, points=[0.0, d])[0])


@pytest.mark.parametrize(("d", "v", "tau2"), [(0.0, 1e-3, 1e-3), (0.02, 2e-4, 9e-4),
                                              (-0.05, 4e-4, 1e-4), (0.3, 7e-3, 6e-3)])
def test_the_closed_form_matches_the_integrated_mixture(d: float, v: float, tau2: float
                                                        ) -> None:
    assert likelihood_ratio(d, v, tau2) == pytest.approx(_mixture(d, v, tau2), rel=1e-6)
    # The confidence sequence's edges are where the ratio of the difference reaches 1/alpha.
    h = half_width(v, tau2, ALPHA)
    assert _mixture(h, v, tau2) == pytest.approx(1 / ALPHA, rel=1e-6)


def _card(name: str, n: int, k: int, control: Sample | None) -> ArmCard:
    sample = Sample(n, k / n, k * (n - k) / (n * (n - 1)))
    test = compare(sample, control, EXPECTED_LIFT, ALPHA) if control is not None else None
    return ArmCard(name=name, version=1, control=control is None, weight=0.5, requests=n,
                   errors=0, latency_p99_ms=None, score_psi=None, outcomes=n,
                   mean=sample.mean, interval=None, lift=test.lift if test else None,
                   lift_interval=test.lift_interval if test else None,
                   p_value=test.p_value if test else None, prob_best=None)


def _peeking(rates: tuple[float, float], runs: int, seed: int) -> tuple[float, float]:
    """Simulated experiments asked at every look: the share that ended with any verdict
    under the rule, and under a fixed-horizon z-test read at the same looks."""
    rng = np.random.default_rng(seed)
    decided = naive = 0
    for _ in range(runs):
        outcomes = rng.random((2, LOOKS[-1])) < np.asarray(rates)[:, None]
        sums = outcomes.cumsum(axis=1)
        rule = fixed = False
        for n in LOOKS:
            k_c, k_t = int(sums[0, n - 1]), int(sums[1, n - 1])
            control = _card("control", n, k_c, None)
            treatment = _card("new", n, k_t, Sample(n, control.mean or 0.0,
                                                    k_c * (n - k_c) / (n * (n - 1))))
            rule = rule or ab_verdict(STOPPING, [control, treatment]) is not None
            if rule and fixed:
                break
            p = (k_t + k_c) / (2 * n)
            z = (k_t - k_c) / n / math.sqrt(2 * p * (1 - p) / n)
            fixed = fixed or math.erfc(abs(z) / math.sqrt(2)) < ALPHA  # two-sided p
        decided += rule
        naive += fixed
    return decided / runs, naive / runs


def test_peeking_at_every_look_keeps_false_verdicts_under_alpha() -> None:
    decided, naive = _peeking((RATE, RATE), runs=400, seed=17)
    # Ville's inequality bounds the rule's rate by alpha over all 40 looks (3 standard errors
    # of 400 runs above it would be a failure); the fixed-horizon test read as often is not.
    assert decided <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / 400)
    assert naive > 2 * ALPHA


def test_a_real_lift_is_found() -> None:
    found, _ = _peeking((RATE, RATE * 1.2), runs=60, seed=3)
    assert found > 0.9

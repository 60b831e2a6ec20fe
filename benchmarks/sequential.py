"""The A/B stopping rule's price and guarantee, simulated on the controller's own decision
function (no server): how many outcomes a 10% lift on a 30% rate takes to ship when the rule is
read after every round of outcomes, against the fixed-horizon sample size a single classic test
needs for 80% power; and how often A/A experiments (no lift) end with a verdict.

Run::

    python benchmarks/sequential.py             # 300 runs each
    python benchmarks/sequential.py --runs 50   # a smoke check

A benchmark reports; it does not assert.
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
from scipy import stats

from modelyard.experiments.scorecard import ArmCard, ab_verdict
from modelyard.experiments.sequential import Sample, compare
from modelyard.experiments.spec import Stopping

RATE, LIFT, ALPHA = 0.30, 0.10, 0.05


def card(name: str, n: int, k: int, control: Sample | None, stopping: Stopping) -> ArmCard:
    sample = Sample(n, k / n, k * (n - k) / (n * (n - 1)))
    test = (compare(sample, control, stopping.expected_lift, ALPHA)
            if control is not None else None)
    return ArmCard(name=name, version=1, control=control is None, weight=0.5, requests=n,
                   errors=0, latency_p99_ms=None, score_psi=None, outcomes=n,
                   mean=sample.mean, interval=None, lift=test.lift if test else None,
                   lift_interval=test.lift_interval if test else None,
                   p_value=test.p_value if test else None, prob_best=None)


def run(rates: tuple[float, float], look: int, cap: int, stopping: Stopping,
        rng: np.random.Generator) -> int | None:
    """Outcomes (both arms) when the rule first decides, reading it every ``look`` per arm;
    None if it never does within ``cap`` per arm."""
    sums = (rng.random((2, cap)) < np.asarray(rates)[:, None]).cumsum(axis=1)
    for n in range(look, cap + 1, look):
        k_c, k_t = int(sums[0, n - 1]), int(sums[1, n - 1])
        control = card("control", n, k_c, None, stopping)
        treatment = card("new", n, k_t, Sample(n, k_c / n, k_c * (n - k_c) / (n * (n - 1))),
                         stopping)
        if ab_verdict(stopping, [control, treatment]) is not None:
            return 2 * n
    return None


def fixed_horizon(p1: float, p2: float, power: float = 0.8) -> int:
    """Outcomes (both arms) a two-sided two-proportion z-test read once needs."""
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(power)
    return 2 * math.ceil(z * z * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--look", type=int, default=100, help="outcomes per arm between looks")
    parser.add_argument("--cap", type=int, default=40_000, help="outcomes per arm at most")
    args = parser.parse_args()
    rng = np.random.default_rng(17)
    print(f"fixed horizon, one look, 80% power: {fixed_horizon(RATE, RATE * (1 + LIFT)):,} "
          "outcomes")
    for expected in (0.05, 0.1, 0.2):
        stopping = Stopping(alpha=ALPHA, expected_lift=expected, min_outcomes=100)
        found = [run((RATE, RATE * (1 + LIFT)), args.look, args.cap, stopping, rng)
                 for _ in range(args.runs)]
        hits = sorted(n for n in found if n is not None)
        null = [run((RATE, RATE), args.look, 4_000, stopping, rng) for _ in range(args.runs)]
        print(f"sequential, expected_lift {expected:g}: a {LIFT:.0%} lift on {RATE:.0%} found in "
              f"{len(hits) / args.runs:.0%} of {args.runs} runs within {2 * args.cap:,} outcomes;"
              f" median {statistics.median(hits):,.0f}, 80th percentile "
              f"{hits[int(0.8 * (len(hits) - 1))]:,} outcomes; A/A runs with a verdict within "
              f"8,000 outcomes (looked at every {2 * args.look}): "
              f"{sum(n is not None for n in null) / args.runs:.1%}")


if __name__ == "__main__":
    main()

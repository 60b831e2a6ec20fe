"""What serving counts per arm and what the guardrails read from it: fixed latency buckets and
score bins, so counts from several servers and intervals add up bin by bin.

No I/O and nothing of the server: serving bins each request with these, the controller and
the scorecard read the sums.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from modelyard.monitoring.stats import psi

# Upper edges in milliseconds; the last bucket holds everything slower.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000,
    5000, 10000)
# Scores in [0, 1] (a class probability) in equal bins; a score outside goes to the end bins.
SCORE_BINS = 20


def latency_bucket(ms: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS_MS, ms)


def score_bins(scores: Sequence[float]) -> list[int]:
    """The scores' counts per bin (:data:`SCORE_BINS` equal bins over [0, 1])."""
    if not scores:
        return [0] * SCORE_BINS
    idx = np.clip((np.asarray(scores, dtype=float) * SCORE_BINS).astype(int), 0, SCORE_BINS - 1)
    counts: list[int] = np.bincount(idx, minlength=SCORE_BINS).tolist()
    return counts


def p99_ms(buckets: Sequence[int]) -> float | None:
    """The 99th percentile latency's bucket edge (an upper bound); None with no requests."""
    total = sum(buckets)
    if total == 0:
        return None
    need = 0.99 * total
    seen = 0
    for i, count in enumerate(buckets):
        seen += count
        if seen >= need:
            return LATENCY_BUCKETS_MS[i] if i < len(LATENCY_BUCKETS_MS) else float("inf")
    return float("inf")


def score_psi(control: Sequence[int], treatment: Sequence[int]) -> float | None:
    """PSI of the treatment's score distribution against the control's (None without scores)."""
    c, t = sum(control), sum(treatment)
    if c == 0 or t == 0:
        return None
    return psi(np.asarray(control) / c, np.asarray(treatment) / t)


def add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    if not a:
        return list(b)
    return [x + y for x, y in zip(a, b, strict=True)]

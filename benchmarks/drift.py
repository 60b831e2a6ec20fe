"""Drift against a stored profile: PSI and KS for 1,000,000 rows x 50 features, beside a plain
pandas/scipy implementation that reads the training data (and Evidently, when installed).

* Modelyard: read the version's ``profile.json`` and compute every feature's PSI (decile bins)
  and KS (against the profile's quantile grid) with :func:`modelyard.monitoring.service.
  feature_drift`, the code the monitoring route runs.
* Baseline: read the training data (parquet), compute each feature's decile edges with
  ``np.quantile``, PSI from ``np.histogram`` on both, and ``scipy.stats.ks_2samp``: what a
  monitoring job without stored profiles does.
* Evidently's data drift preset on the same frames, when ``evidently`` is installed.

Each is timed (best of ``--repeat`` runs), and its peak memory is how far the process's resident
memory rose in a separate run, the current traffic already in memory for both.

    python benchmarks/drift.py                        # 1,000,000 rows x 50 features
    python benchmarks/drift.py --rows 200000 --features 20

Target (the issue): <= 1 s, and well under the baseline's memory. A benchmark reports; it does not
assert.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from modelyard.monitoring.profile import Profile, build_profile
from modelyard.monitoring.service import feature_drift
from modelyard.monitoring.stats import psi


def make_frames(rows: int, reference_rows: int, features: int, seed: int = 0
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and current traffic: each feature its own distribution, a third drifted."""
    rng = np.random.default_rng(seed)
    names = [f"f{i:02d}" for i in range(features)]
    scales = rng.uniform(0.5, 5.0, size=features)
    shifts = np.where(np.arange(features) % 3 == 0, rng.uniform(0.1, 1.0, size=features), 0.0)
    train = pd.DataFrame(rng.standard_normal((reference_rows, features)) * scales, columns=names)
    current = pd.DataFrame(rng.standard_normal((rows, features)) * scales + shifts * scales,
                           columns=names)
    return train, current


def ours(profile_path: Path, current: pd.DataFrame) -> dict[str, tuple[float, float | None]]:
    profile = Profile.from_json(json.loads(profile_path.read_text()))
    return {f.name: (f.psi, f.ks_statistic) for f in feature_drift(profile, current)}


def baseline(train_path: Path, current: pd.DataFrame) -> dict[str, tuple[float, float | None]]:
    train = pd.read_parquet(train_path)
    out: dict[str, tuple[float, float | None]] = {}
    for name in current.columns:
        ref = train[name].dropna().to_numpy()
        cur = current[name].dropna().to_numpy()
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
        edges[0], edges[-1] = -np.inf, np.inf
        expected = np.histogram(ref, edges)[0] / len(ref)
        actual = np.histogram(cur, edges)[0] / len(cur)
        out[name] = (psi(expected, actual), float(sps.ks_2samp(ref, cur).statistic))
    return out


def evidently(train_path: Path, current: pd.DataFrame) -> Any:
    from evidently.metric_preset import DataDriftPreset  # type: ignore[import-not-found]
    from evidently.report import Report  # type: ignore[import-not-found]

    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=pd.read_parquet(train_path), current_data=current)
    return report.as_dict()


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def peak_bytes(run: Callable[[], Any]) -> int:
    """How far the process's resident memory rose above where it started while ``run`` ran
    (sampled every millisecond: Arrow's allocations are not Python's, so tracemalloc misses
    them)."""
    page = os.sysconf("SC_PAGE_SIZE")

    def resident() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    gc.collect()
    start, peak, done = resident(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], resident()) - start


def exec_with_honest_memory() -> None:
    """Run again with allocators that give freed memory back at once (large blocks mapped on
    their own, Arrow on malloc), so a rise of resident memory is what a step held."""
    wanted = {"MALLOC_MMAP_THRESHOLD_": "131072", "ARROW_DEFAULT_MEMORY_POOL": "system"}
    if any(os.environ.get(k) != v for k, v in wanted.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})


def main() -> None:
    exec_with_honest_memory()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="current traffic rows")
    parser.add_argument("--reference-rows", type=int, default=1_000_000, help="training rows")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best counts)")
    args = parser.parse_args()

    train, current = make_frames(args.rows, args.reference_rows, args.features)
    with tempfile.TemporaryDirectory() as tmp:
        train_path, profile_path = Path(tmp) / "train.parquet", Path(tmp) / "profile.json"
        train.to_parquet(train_path)
        started = time.perf_counter()
        profile = build_profile(train, list(train.columns), np.zeros(1),
                                importance={c: 1.0 for c in train.columns},
                                importance_method="model")
        built_s = time.perf_counter() - started
        profile_path.write_text(json.dumps(profile.to_json()))
        del train
        print(f"{args.rows:,} current rows x {args.features} features; reference "
              f"{args.reference_rows:,} training rows ({os.cpu_count()} cores)")
        print(f"  profile: built in {built_s:.2f} s at training time, "
              f"{profile_path.stat().st_size / 1024:.0f} KiB of JSON")
        results = {}
        for name, run in (("modelyard (profile)", lambda: ours(profile_path, current)),
                          ("baseline (pandas/scipy on the training data)",
                           lambda: baseline(train_path, current))):
            seconds, figures = timed(run, args.repeat)
            results[name] = (seconds, peak_bytes(run), figures)
            print(f"  {name:48s} {seconds:7.3f} s   peak {results[name][1] / 2**20:8.1f} MiB")
        if importlib.util.find_spec("evidently") is None:
            print("  evidently: skipped (not installed; pip install evidently to compare)")
        else:
            seconds, _ = timed(lambda: evidently(train_path, current), 1)
            print(f"  {'evidently (DataDriftPreset)':48s} {seconds:7.3f} s")
    (ours_s, ours_b, ours_fig), (base_s, base_b, base_fig) = results.values()
    psi_gap = max(abs(ours_fig[n][0] - base_fig[n][0]) for n in ours_fig)
    ks_gap = max(abs((ours_fig[n][1] or 0.0) - (base_fig[n][1] or 0.0)) for n in ours_fig)
    print(f"ratio: modelyard / baseline time {ours_s / base_s:.3f} ({base_s / ours_s:.1f}x "
          f"faster), peak memory {ours_b / base_b:.3f}")
    print(f"agreement: largest PSI difference {psi_gap:.2e}, largest KS difference {ks_gap:.4f} "
          "(KS from the profile's grid is within 1/50 of the two-sample statistic)")
    print(f"target <= 1 s: {'PASS' if ours_s <= 1.0 else 'MISS'} ({ours_s:.3f} s); memory "
          f"well under the baseline's: {'PASS' if ours_b < 0.5 * base_b else 'MISS'}")


if __name__ == "__main__":
    main()

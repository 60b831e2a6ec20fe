"""A version's reference profile (``build_profile``), this build beside another, in alternating
rounds.

Every model a job trains gets a profile of its training rows: a fleet tenant's few thousand
rows and a global model's hundreds of thousands. Two frames of the synthetic payments, as the
worker converts them from Arrow: one tenant's training rows (the merchant nearest
``--tenant-rows``) and ``--rows`` rows of every merchant; the request's five features, its date
column, and holdout scores for a quarter as many rows.

Each build times ``build_profile`` in a process of its own, with its ``src`` first on the
path; the builds take turns (the order swapped each round), so both share the machine's load.
A round's figure is the median of ``--repeat`` calls; the report is each build's median over
rounds and their ratio.

    git archive REV src | tar -x -C /tmp/base
    python benchmarks/profile.py --base /tmp/base/src
    python benchmarks/profile.py --base /tmp/base/src --rows 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]


def frames(rows: int, tenant_rows: int) -> dict[str, Any]:
    """The tenant's and the global model's training frames, converted from Arrow."""
    import pyarrow.compute as pc

    from modelyard.synthetic import payments_table

    table = payments_table(rows, 1_000, seed=0)
    counts = pc.value_counts(table.column("merchant_id")).to_pylist()
    tenant = min(counts, key=lambda c: abs(c["counts"] - tenant_rows))["values"]
    small = table.filter(pc.equal(table.column("merchant_id"), tenant))
    return {"tenant": small.to_pandas(), "global": table.to_pandas()}


def child(rows: int, tenant_rows: int, repeat: int) -> None:
    """Time this build's ``build_profile`` on both frames; print {frame: [rows, seconds]}."""
    import numpy as np

    from modelyard.monitoring.profile import build_profile

    out = {}
    for name, frame in frames(rows, tenant_rows).items():
        scores = np.random.default_rng(0).random(len(frame) // 4)
        calls = repeat if len(frame) < 100_000 else max(3, repeat // 50)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            build_profile(frame, FEATURES, scores, importance=dict.fromkeys(FEATURES, 0.2),
                          importance_method="model", date_column="created_at")
            times.append(time.perf_counter() - started)
        out[name] = [len(frame), statistics.median(times)]
    print(json.dumps(out))


def run_build(src: str, args: argparse.Namespace) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, __file__, "--child", "--rows", str(args.rows), "--tenant-rows",
           str(args.tenant_rows), "--repeat", str(args.repeat)]
    answer = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, list[float]] = json.loads(answer.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="the other build's src folder")
    parser.add_argument("--this", default=str(Path(__file__).resolve().parents[1] / "src"),
                        help="this build's src folder (default: this checkout's)")
    parser.add_argument("--rows", type=int, default=750_000, help="the global model's rows")
    parser.add_argument("--tenant-rows", type=int, default=1_230)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=300, help="calls per round (tenant)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.tenant_rows, args.repeat)
        return
    builds = {"base": args.base, "this": args.this} if args.base else {"this": args.this}
    seconds: dict[str, dict[str, list[float]]] = {b: {} for b in builds}
    rows: dict[str, int] = {}
    for round_ in range(args.rounds):
        order = list(builds) if round_ % 2 == 0 else list(reversed(builds))
        for build in order:
            for frame, (n, s) in run_build(builds[build], args).items():
                rows[frame] = int(n)
                seconds[build].setdefault(frame, []).append(s)
    print(f"build_profile, median of {args.rounds} rounds (each the median of its calls); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'frame':<8} {'rows':>8}" + "".join(f" {b + ' ms':>10}" for b in builds)
          + ("   base/this" if args.base else ""))
    for frame, n in rows.items():
        medians = {b: statistics.median(seconds[b][frame]) for b in builds}
        line = f"{frame:<8} {n:>8,}" + "".join(f" {medians[b] * 1e3:>10.3f}" for b in builds)
        if args.base:
            line += f"   {medians['base'] / medians['this']:>8.2f}x"
        print(line)


if __name__ == "__main__":
    main()

"""Retrain a whole fleet with one pipeline run, beside the bare loop of the same fits.

Riskified retrained its merchants' models by hand in 14 days. Here one pipeline run does it end
to end, through the real HTTP server (local executor):

    validate_data -> train (the fleet: one model per merchant with enough rows, plus the
    global one; each tenant graduates only if it beats its fallback and its own production
    version on the same rows) -> validate_model (every tenant's new version against its
    production, same rows, guard rails) -> deploy (winners already serve; the rest to shadow)

on the same synthetic payments as ``benchmarks/fleet.py`` (1,000 merchants), after a first
fleet put every qualifying merchant in production. The bare loop is fleet.py's: joblib doing
the same fits on data partitioned in advance, nothing else.

    python benchmarks/retrain_all.py                  # 1,000,000 rows, target <= 60 s
    python benchmarks/retrain_all.py --rows 200000    # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from fleet import Bare, fleet_data, request

from modelyard.client import Client
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request

TARGET_S = 60.0


def pipeline(min_rows: int) -> dict[str, Any]:
    train = request(min_rows)
    return {"name": "retrain-all", "steps": [
        {"name": "validate", "type": "validate_data", "with": {
            "path": "payments.parquet", "date_column": "created_at", "min_rows": 10_000,
            "label": "has_fraud_dispute", "min_positives": 100,
            "columns": {"merchant_id": {"nullable": False},
                        "charge_amount": {"min": 0, "max_null_rate": 0.01}}}},
        {"name": "train", "type": "train", "needs": ["validate"], "with": train},
        {"name": "check", "type": "validate_model", "needs": ["train"]},
        {"name": "deploy", "type": "deploy", "needs": ["check"], "with": {"to": "shadow"}},
    ]}


def timed_run(client: Client, previous: str | None = None) -> tuple[float, dict[str, Any]]:
    """A run, timed from its start to its end. After the first, each is a rerun from the first
    step: the data has not changed, and the step cache would otherwise (rightly) skip it all."""
    started = time.perf_counter()
    run_id = (client.run_pipeline("retrain-all") if previous is None
              else client.rerun_pipeline(previous, from_step="validate"))
    run = client.wait_pipeline_run(run_id, timeout=3600, poll=0.1)
    return time.perf_counter() - started, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--merchants", type=int, default=1_000)
    parser.add_argument("--min-rows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of bare and the pipeline (medians reported)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    home = Path(tempfile.mkdtemp(prefix="modelyard-retrain-"))
    _, frame, _, tenants = fleet_data(home, args.rows, args.merchants, args.min_rows)
    print(f"data: {args.rows:,} rows from {frame['merchant_id'].nunique():,} merchants; "
          f"{len(tenants)} with >= {args.min_rows} training rows; {cores} cores")
    bare = Bare(frame, tenants, cores)
    settings = Settings.load(home=home, data_roots=[home / "data"], concurrency=cores,
                             scheduler=False)
    with EmbeddedServer(settings) as server, Client(server.url) as client:
        client.wait(client.train(example_request("payments.parquet")), timeout=600)  # warm up
        client.create_pipeline(pipeline(args.min_rows))
        first, run = timed_run(client)  # the fleet every later run retrains against
        print(f"first run (no production yet): {first:.1f} s, {run['state']}")
        mine, theirs = [], []
        for i in range(args.rounds):
            seconds = bare.run()
            elapsed, run = timed_run(client, run["run_id"])
            mine.append(elapsed)
            theirs.append(seconds)
            print(f"  round {i + 1}: pipeline run {elapsed:.1f} s ({run['state']})   bare fits "
                  f"{seconds:.1f} s")
        steps = {s["name"]: s for s in run["steps"]}
        checked = steps["check"]["outputs"]
        models = len(checked["passed"]) + len(checked["refused"])
        fleet = client.fleet(steps["train"]["outputs"]["job_id"])
        durations = {name: _seconds(s) for name, s in steps.items()}
    elapsed, seconds = statistics.median(mine), statistics.median(theirs)
    print(f"one pipeline run retrains {models} models (tenants and fallbacks) in {elapsed:.1f} s "
          f"(median of {args.rounds}) = {models / elapsed:.1f} models/s; target <= "
          f"{TARGET_S:.0f} s: {'PASS' if elapsed <= TARGET_S else 'MISS'}")
    print(f"  steps (s): {durations}")
    print(f"  validate_model: {len(checked['passed'])} beat or kept production on the same rows, "
          f"{len(checked['refused'])} refused; graduation: {fleet['counts']}")
    print(f"bare joblib (n_jobs={cores}, fits only): {len(bare.parts)} models in {seconds:.1f} s "
          f"= {len(bare.parts) / seconds:.1f} models/s")
    print(f"pipeline run / bare fits, wall time: {elapsed / seconds:.2f}x")


def _seconds(step: dict[str, Any]) -> float | None:
    if not step.get("started_at") or not step.get("finished_at"):
        return None
    started = pd.Timestamp(step["started_at"])
    return round((pd.Timestamp(step["finished_at"]) - started).total_seconds(), 1)


if __name__ == "__main__":
    main()

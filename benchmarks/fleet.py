"""Fleet throughput: one model per merchant plus the global one, Modelyard beside the bare limit.

Synthetic payments from 1,000 merchants with skewed sizes; every merchant with at least
``--min-rows`` training rows gets its own model, plus the global model on all rows.

* Modelyard: one fleet request through the real HTTP server (local executor), submit -> every
  model trained, evaluated on its holdout, graduated against the global model, stored under its
  content address and registered. Peak memory of the server's whole process tree is sampled.
* Bare limit: ``joblib.Parallel(n_jobs=cores)`` doing the same fits (the same scikit-learn
  pipeline the built-in workflow builds) on data partitioned in advance, nothing else. The
  issue's targets are against this loop. Beside it, the same loop whose fits are also scored on
  their holdouts with the same metrics (what a script does before it trusts a model), and the
  last round's core-seconds by step: fits, the plan, each other step of the tenants, the
  fallback's steps beyond its fit, the server's CPU and the rest (gaps and idle slots).
* MLflow: the same fits in a loop, each logged and registered, when mlflow is installed.

Two fleets by default, each against its own bare loop in the same run: 25 merchants (every one
with a model: the fleet's fixed costs show most) and 1,000 merchants (those with 500 training
rows; the fixed costs spread over 164 models). Each has 1,000 rows per merchant on average.

    python benchmarks/fleet.py                      # --tenants 25,1000
    python benchmarks/fleet.py --tenants 25         # the small fleet alone
    python benchmarks/fleet.py --tenants 1000 --rows 200000 --rounds 1   # quicker
    python benchmarks/fleet.py --tenants 1000 --executor ray   # on Ray and locally, in turn
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from _procs import process_tree, tree_pss

from modelyard.client import Client
from modelyard.request import parse_request
from modelyard.runtime.builtin import SklearnWorkflow
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request, write_payments

START, END = pd.Timestamp("2018-10-01"), pd.Timestamp("2019-01-01")
MODELS = {
    # A small boosted model per merchant: what teams typically fit.
    "hgb": {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "max_iter": 30,
            "max_depth": 4},
    # The smallest useful model: fits in milliseconds, so fixed per-model costs show most.
    "tree": {"estimator": "sklearn.tree.DecisionTreeClassifier", "max_depth": 6,
             "min_samples_leaf": 20},
}
PARAMS: dict[str, Any] = dict(MODELS["hgb"])


def request(min_rows: int) -> dict[str, Any]:
    req = example_request("payments.parquet", custom_params=dict(PARAMS))
    req["metadata"] = {**req["metadata"], "model_name": "fleet benchmark"}  # type: ignore[dict-item]
    req["data"]["features"]["names"].append("merchant_id")  # type: ignore[index]
    req["filters"] = []
    req["tenants"] = {"column": "merchant_id", "min_training_rows": min_rows}
    return req


class PeakMemory:
    """Peak memory of a process and all its descendants (PSS: pages that forked workers share
    with the fork server count once), sampled every 50 ms by a process of its own: a sampling
    thread here would take the GIL from the server it measures."""

    def __init__(self, pid: int, exclude: frozenset[int] = frozenset()) -> None:
        self.pid, self.exclude, self.peak = pid, exclude, 0
        self._sampler: subprocess.Popen[str] | None = None

    def __enter__(self) -> PeakMemory:
        self._sampler = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_procs.py")), str(self.pid), "0.05",
             *map(str, self.exclude)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._sampler is not None
        out, _ = self._sampler.communicate()  # closing its stdin asks for the peak
        self.peak = int(out.strip() or 0)


class Bare:
    """joblib over pre-partitioned data: the same fits, nothing else (``evaluated``: each fit
    also scored on its holdout, with the same metrics, as a script must before it uses a model)."""

    def __init__(self, frame: pd.DataFrame, tenants: list[str], cores: int, *,
                 evaluated: bool = False) -> None:
        self.workflow = SklearnWorkflow(parse_request(request(1)))
        # The loop's one workflow goes to the workers with each task, as the fits-only loop's.
        self.task = (functools.partial(_evaluated, self.workflow) if evaluated
                     else self.workflow.train)
        train = frame[frame["created_at"] < START]
        holdout = frame[(frame["created_at"] >= START) & (frame["created_at"] < END)]
        self.parts = [(train[train["merchant_id"] == t], holdout[holdout["merchant_id"] == t])
                      for t in tenants] + [(train, holdout)]
        self.cores = cores
        # Warm the worker pool (imports, first fits), as Modelyard's fork server is warm.
        self.run(self.parts[:cores])

    def run(self, parts: list[tuple[pd.DataFrame, pd.DataFrame]] | None = None) -> float:
        from joblib import Parallel, delayed

        started = time.perf_counter()
        Parallel(n_jobs=self.cores)(delayed(self.task)(a, b) for a, b in parts or self.parts)
        return time.perf_counter() - started


def _evaluated(workflow: SklearnWorkflow, train: pd.DataFrame, holdout: pd.DataFrame
               ) -> dict[str, Any]:
    """Fit, then the holdout's scores and metrics: the least a script does to know a model."""
    from modelyard.runtime.evaluation import compute_metrics

    model = workflow.train(train, holdout)
    scores = workflow.predict(model, holdout)
    return compute_metrics("binary", holdout[workflow.request.train.label], scores, model)


def fleet_data(home: Path, rows: int, merchants: int, min_rows: int
               ) -> tuple[Path, pd.DataFrame, pd.Series, list[str]]:
    """The payments file under ``home/data``, its rows, each merchant's training rows, and the
    merchants with at least ``min_rows`` of them (those that get a model of their own)."""
    data = write_payments(home / "data" / "payments.parquet", rows=rows, merchants=merchants)
    frame = pd.read_parquet(data)
    window = frame[frame["created_at"] < END]
    train_rows = window[window["created_at"] < START].groupby("merchant_id").size()
    return data, frame, train_rows, sorted(train_rows[train_rows >= min_rows].index)


def fleet_run(client: Client, min_rows: int) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """One fleet through the API: (seconds from submit to done, its answer, its fleet view)."""
    started = time.perf_counter()
    job_id = client.train(request(min_rows))
    answer = client.wait(job_id, timeout=3600, raise_on_failure=False)
    elapsed = time.perf_counter() - started
    return elapsed, answer, client.fleet(job_id)


def mlflow_loop(frame: pd.DataFrame, tenants: list[str]) -> tuple[float, int] | None:
    """The same fits, each tracked, logged and registered in MLflow (a sample: it is slow)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return None
    import mlflow.sklearn

    workflow = SklearnWorkflow(parse_request(request(1)))
    train = frame[frame["created_at"] < START]
    folder = tempfile.mkdtemp(prefix="mlflow-")
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # a line per model otherwise
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "fleet", artifact_location=f"file://{folder}/artifacts"))
    started = time.perf_counter()
    for tenant in tenants:
        with mlflow.start_run(), contextlib.redirect_stderr(io.StringIO()):
            part = train[train["merchant_id"] == tenant]
            model = workflow.train(part, part)
            mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                     registered_model_name=f"fleet-{tenant}")
    return time.perf_counter() - started, len(tenants)


# The targets for the bare/fleet ratio, by fleet size in merchants.
TARGETS = {25: 0.85, 1000: 0.95}


@dataclass(frozen=True)
class Outcome:
    """One fleet size's medians, for the closing summary."""

    merchants: int
    models: int
    seconds: float
    bare_seconds: float
    ratio: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", default="25,1000",
                        help="the fleets to run, each a number of merchants, comma-separated; "
                             "each is timed against its own bare loop")
    parser.add_argument("--min-rows", type=int, default=None,
                        help="training rows a merchant needs for a model of its own (default: "
                             "50 in fleets under 1,000 merchants, so each has one; 500 from "
                             "1,000)")
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of each fleet's data (default: 1,000 per merchant)")
    parser.add_argument("--model", choices=sorted(MODELS), default="hgb")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of bare and Modelyard (the median is reported; "
                             "on a shared VM single rounds vary by +-15%%)")
    parser.add_argument("--mlflow-models", type=int, default=20,
                        help="tenants in the MLflow-tracked loop, on the last fleet's data (a "
                             "few seconds each)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="ray: the fleet on a local Ray cluster of as many CPUs as cores, "
                             "beside the local executor, in alternating rounds")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tenants.split(",")]
    PARAMS.clear()
    PARAMS.update(MODELS[args.model])
    home = Path(tempfile.mkdtemp(prefix="modelyard-fleet-"))
    outcomes = []
    for i, merchants in enumerate(sizes):
        min_rows = args.min_rows or (500 if merchants >= 1_000 else 50)
        outcome = run_fleet(home / f"fleet-{merchants}", args, merchants, min_rows,
                            tracked=i == len(sizes) - 1)
        if outcome is not None:
            outcomes.append(outcome)
    if not outcomes:
        return
    print(f"\nmodelyard / bare throughput, median of {args.rounds} rounds; model {args.model}: "
          f"{PARAMS}")
    for o in outcomes:
        target = TARGETS.get(o.merchants)
        verdict = (f"  (target >= {target:.2f}: {'PASS' if o.ratio >= target else 'MISS'})"
                   if target else "")
        print(f"  {o.merchants:>5,} merchants, {o.models:>4} models: modelyard {o.seconds:.2f} s, "
              f"bare {o.bare_seconds:.2f} s, ratio {o.ratio:.2f}{verdict}")


def run_fleet(home: Path, args: argparse.Namespace, merchants: int, min_rows: int, *,
              tracked: bool) -> Outcome | None:
    """One fleet size: its data, its bare loop and a server of its own, in alternating rounds
    (with ``--executor ray``: the local executor and Ray in alternating rounds, no outcome)."""
    cores = os.cpu_count() or 1
    rows = args.rows or 1_000 * merchants
    data, frame, train_rows, tenants = fleet_data(home, rows, merchants, min_rows)
    print(f"\ndata: {rows:,} rows from {frame['merchant_id'].nunique():,} merchants; "
          f"{len(tenants)} with >= {min_rows} training rows (largest "
          f"{int(train_rows.max()):,}, median {int(train_rows.median()):,}); {cores} cores")
    if args.executor == "ray":
        from _ray_fleet import compare

        compare(home, cores, args.rounds, min_rows, fleet_run)
        return None

    bare = Bare(frame, tenants, cores)
    scored = Bare(frame, tenants, cores, evaluated=True)
    # Memory: this process (it hosts the server, and holds the bare loop's frames too) and the
    # server's workers; not the joblib pool. This process before the server is printed beside.
    pool = frozenset(process_tree(os.getpid())) - {os.getpid()}
    before = tree_pss(os.getpid(), pool)
    settings = Settings.load(home=home, data_roots=[home / "data"], concurrency=cores)
    ratios, mine, theirs, scored_ratios, server_cpu = [], [], [], [], []
    with EmbeddedServer(settings) as server, Client(server.url) as client:
        client.wait(client.train(example_request("payments.parquet")), timeout=600)  # warm up
        for i in range(args.rounds):
            seconds = bare.run()
            scored_seconds = scored.run()
            cpu = time.process_time()  # this process hosts the server (and the waiting client)
            elapsed, answer, fleet = fleet_run(client, min_rows)
            server_cpu.append(time.process_time() - cpu)
            models, bare_models = fleet["counts"]["succeeded"], len(bare.parts)
            ratios.append((models / elapsed) / (bare_models / seconds))
            scored_ratios.append((models / elapsed) / (bare_models / scored_seconds))
            mine.append(elapsed)
            theirs.append(seconds)
            print(f"  round {i + 1}: modelyard {models} models in {elapsed:.2f} s = "
                  f"{models / elapsed:.1f}/s   bare {bare_models} in {seconds:.2f} s = "
                  f"{bare_models / seconds:.1f}/s   ratio {ratios[-1]:.2f}   (bare fits + "
                  f"holdout metrics {scored_seconds:.2f} s, ratio {scored_ratios[-1]:.2f})")
        where_time_goes(client, answer["status"]["job_id"], cores, elapsed, server_cpu[-1])
        # Memory in a run of its own: sampling six processes' PSS every 50 ms costs ~15% of
        # a core, which the timed rounds should not pay.
        with PeakMemory(os.getpid(), pool) as memory:
            fleet_run(client, min_rows)
    steps = {s["name"]: round(s["duration_s"], 2) for s in answer["status"]["steps"]}
    counts = fleet["counts"]
    registered = sum(1 for t in fleet["tenants"] if t["job_id"]) + len(fleet["fallbacks"])
    elapsed, seconds = statistics.median(mine), statistics.median(theirs)
    print(f"modelyard: {models} models ({counts['failed']} failed, {counts['skipped']} skipped "
          f"merchants) in {elapsed:.2f} s (median) = {models / elapsed:.1f} models/s; each "
          f"evaluated on its holdout, graduated, stored and registered ({registered} versions)")
    print(f"  plan job (one scan + partition): {sum(steps.values()):.2f} s {steps}")
    print(f"  peak memory (PSS) of the server process tree: {memory.peak / 2**20:.0f} MiB, of "
          f"which {(memory.peak - before) / 2**20:.0f} MiB since the server started (data file "
          f"{data.stat().st_size / 2**20:.1f} MiB, {rows:,} rows in pandas "
          f"~{frame.memory_usage(deep=True).sum() / 2**20:.0f} MiB; this process held "
          f"{before / 2**20:.0f} MiB before, the bare loop's frames included)")
    print(f"bare joblib (n_jobs={cores}, fits only, data partitioned in advance): "
          f"{bare_models} models in {seconds:.2f} s (median) = {bare_models / seconds:.1f} "
          "models/s")
    ratio = statistics.median(ratios)
    print(f"modelyard / bare throughput, median of {args.rounds} rounds: {ratio:.2f}")
    print(f"  against bare fits that are also scored on their holdouts (same metrics; not the "
          f"issue's target): {statistics.median(scored_ratios):.2f}")
    overhead = (elapsed - seconds) * cores / models * 1000
    print("  fixed cost per model beyond the fit (read, split, evaluate, store, register): "
          + (f"~{overhead:.0f} ms of a core" if overhead > 0 else
             "below the noise of this run (Modelyard's median was the shorter)"))
    if tracked:
        mlflow_report(frame, tenants[:args.mlflow_models])
    return Outcome(merchants, models, elapsed, seconds, ratio)


def where_time_goes(client: Client, parent_id: str, cores: int, elapsed: float,
                    server_cpu: float) -> None:
    """The last round's fleet as core-seconds: its jobs' fits, the rest of their steps by
    step, the server's CPU, and what is left of ``cores x elapsed`` (gaps, idle slots)."""
    children = client.jobs(parent_id=parent_id, limit=1000)["jobs"]
    by_step: dict[str, float] = {}
    plan = fits = 0.0
    for job_id in [parent_id] + [c["job_id"] for c in children]:
        status = client.status(job_id)
        for step in status["steps"]:
            seconds, kind = step["duration_s"] or 0.0, status["kind"]
            if kind == "fleet":
                plan += seconds
            elif step["name"] == "train":
                fits += seconds
            else:
                key = f"tenants' {step['name']}" if kind == "tenant" else f"{kind} model's rest"
                by_step[key] = by_step.get(key, 0.0) + seconds
    slots = cores * elapsed
    rest = slots - fits - plan - sum(by_step.values()) - server_cpu
    parts = [("fits (tenants and fallbacks)", fits), ("plan (scan, partition)", plan),
             *sorted(by_step.items(), key=lambda kv: -kv[1]),
             ("server process CPU (dispatch, records, registry, HTTP)", server_cpu),
             ("the rest: gaps between jobs, job files, idle slots", rest)]
    print(f"  where the last round's {cores} x {elapsed:.2f} s = {slots:.2f} core-s went:")
    for name, seconds in parts:
        print(f"    {name:<56} {seconds:6.2f} s  {100 * seconds / slots:5.1f}%")


def mlflow_report(frame: pd.DataFrame, tenants: list[str]) -> None:
    if not tenants:
        return
    result = mlflow_loop(frame, tenants)
    if result is None:
        print("mlflow-tracked loop: skipped (mlflow not installed)")
    else:
        print(f"mlflow-tracked loop (first {result[1]} merchants): {result[1]} models in "
              f"{result[0]:.1f} s = {result[1] / result[0]:.2f} models/s")


if __name__ == "__main__":
    main()

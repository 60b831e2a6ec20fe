"""How much does Modelyard add to a training job? End-to-end job time beside a bare script.

Two measurements, against the targets of the issue:

1. **Big job** (default 1M synthetic rows, the demo's HistGradientBoostingClassifier, a fit of
   several seconds): submit -> succeeded through the real HTTP API, beside the same work done by a
   bare function (pyarrow load with the filter pushed down, date split, pandas, the same sklearn
   Pipeline, predict_proba, ROC AUC, pickle to a file). Target: modelyard / bare <= 1.05.
2. **Tiny job** (2,000 rows, a depth-4 decision tree): submit -> succeeded latency, p50/p90/max.
   Target: <= 100 ms. The bare time of the same tiny work is printed beside it, so the difference
   is what the service itself costs (HTTP, job store, fork, events, artefacts).

The server is the real one (:class:`modelyard.server.EmbeddedServer`, uvicorn in a thread, SQLite
job store, the local fork-server executor) and the client long-polls (``Client.wait``). The first
job warms the fork server (which imports pandas, pyarrow and scikit-learn once) and is reported
separately, not counted. The imports stay at the top of this file, as in any script that embeds
the server: the worker start-up pays for whatever the parent's ``__main__`` costs to import, and
the benchmark should see that where a user would ("fork + worker start" in the breakdown).

The fit runs with one OpenMP/BLAS thread on both sides by default (``--threads``): on a small
shared VM, spin-waiting OpenMP threads make the same 2-thread fit take anywhere from 2.5 to 12 s,
which drowns a 5% comparison. ``--threads 0`` keeps the libraries' defaults.

Run::

    python benchmarks/overhead.py            # 1M rows, 5 repeats, 20 tiny jobs (a few minutes)
    python benchmarks/overhead.py --quick    # small sizes, a smoke check in under a minute

A benchmark reports; it does not assert. It exits 0 and prints PASS/MISS against each target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from sklearn.metrics import roc_auc_score

from modelyard import Client
from modelyard.request.loading import parse_request
from modelyard.runtime.builtin import SklearnWorkflow
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request, write_payments

RATIO_TARGET = 1.05
TINY_TARGET_S = 0.100
TINY_ROWS = 2_000
# The tiny job must be tiny in its *work* too, so that its latency is the service's own cost.
TINY_PARAMS = {"estimator": "sklearn.tree.DecisionTreeClassifier", "max_depth": 4}


# -- the bare alternative -------------------------------------------------------------------------
#
# Run in-process, after everything is imported: the honest "bare limit" of the same work, with no
# interpreter start and no import cost (a fresh `python bare.py` would pay ~1 s of imports and make
# Modelyard look better than it is). The request is parsed only to read its values; the pipeline is
# built by the same SklearnWorkflow.train the `sklearn` workflow runs, so the fit is identical.


def bare_job(data_path: Path, request: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The same work as one Modelyard job, as a plain script would do it; returns timings."""
    req = parse_request(request)
    drs = req.holdout_sampling.date_range_sampling
    if drs is None:
        raise ValueError("the bare job follows a DATE_RANGE holdout; the request has none")
    flt = req.filters[0]
    date_col = drs.date_column
    start = dt.datetime(drs.start_date.year, drs.start_date.month, drs.start_date.day)
    end = dt.datetime(drs.end_date.year, drs.end_date.month, drs.end_date.day)
    ts = pa.timestamp("us")
    t: dict[str, float] = {}

    t0 = time.perf_counter()
    dataset = ds.dataset(str(data_path), format="parquet")
    countries = pa.array(flt.feature_value.string_vals)  # type: ignore[union-attr]
    expr = pc.field(flt.feature_name).isin(countries) & (
        pc.field(date_col) < pa.scalar(end, type=ts)
    )
    table = dataset.to_table(columns=req.columns(), filter=expr, use_threads=True)
    t["load+filter"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    col = table[date_col]
    lo, hi = pa.scalar(start, type=ts), pa.scalar(end, type=ts)
    train_df = table.filter(pc.less(col, lo)).to_pandas()
    holdout_df = table.filter(pc.and_(pc.greater_equal(col, lo), pc.less(col, hi))).to_pandas()
    del table
    t["split"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    workflow = SklearnWorkflow(req)
    model = workflow.train(train_df, holdout_df)
    t["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    blob = pickle.dumps(model, protocol=5)
    (out_dir / "model.pkl").write_bytes(blob)
    t["pickle"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scores = model.predict_proba(holdout_df[workflow.features])[:, 1]
    auc = roc_auc_score(holdout_df[workflow.label].to_numpy(dtype=int), scores)
    t["score"] = time.perf_counter() - t0
    return {"steps": t, "roc_auc": float(auc), "train_rows": len(train_df),
            "holdout_rows": len(holdout_df)}


def time_bare(
    data_path: Path, request: dict[str, Any], out_dir: Path
) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    info = bare_job(data_path, request, out_dir)
    return time.perf_counter() - t0, info


# -- through the service --------------------------------------------------------------------------


def time_job(client: Client, request: dict[str, Any]) -> tuple[float, dict[str, Any], float]:
    """Submit, long-poll until the job ends; return (seconds, answer, wall-clock submit time)."""
    submitted = time.time()
    t0 = time.perf_counter()
    job_id = client.train(request)
    answer = client.wait(job_id, timeout=3600)
    return time.perf_counter() - t0, answer, submitted


def breakdown(answer: dict[str, Any], submitted: float, seen: float) -> list[tuple[str, float]]:
    """Where one job's wall time went, from the server's own timestamps (same host clock)."""
    status = answer["status"]
    at = {t["job_state"]: _ts(t["created_at"]) for t in status["transitions"]}
    steps = status["steps"]
    rows = [
        ("submit -> queued (HTTP + validate + store)", at["queued"] - submitted),
        ("queued -> running (dispatcher claim)", at["running"] - at["queued"]),
    ]
    if steps:
        first = _ts(steps[0]["started_at"])
        last_end = _ts(steps[-1]["started_at"]) + (steps[-1]["duration_s"] or 0.0)
        rows.append(("running -> first step (fork + worker start)", first - at["running"]))
        for s in steps:
            rows.append((f"  step {s['name']}", s["duration_s"] or 0.0))
        gaps = (last_end - first) - sum(s["duration_s"] or 0.0 for s in steps)
        rows.append(("  between steps (event reporting)", gaps))
        rows.append(("last step -> succeeded (artefacts + relay + DB)", at["succeeded"] - last_end))
    rows.append(("succeeded -> client sees it (notify + read)", seen - at["succeeded"]))
    return rows


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


# -- reporting ------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_steps(title: str, rows: list[tuple[str, float]]) -> None:
    print(f"\n{title}")
    for name, seconds in rows:
        print(f"  {name:<50} {seconds * 1000:9.1f} ms")


def pin_threads(n: int) -> None:
    """Limit OpenMP/BLAS threads here (the bare side) and in the fork server (the workers).

    The fork server is a fresh interpreter started with the server, so it reads the environment;
    this process has loaded the libraries already, so threadpoolctl limits them in place.
    """
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    threadpool_limits(limits=n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big dataset")
    parser.add_argument("--repeats", type=int, default=5,
                        help="big jobs (and bare runs) timed; single rounds vary by ~5%% on a "
                             "shared 2-core VM, so the ratio is their median")
    parser.add_argument("--tiny-repeats", type=int, default=20, help="tiny jobs timed")
    parser.add_argument("--home", type=Path, default=None,
                        help="MODELYARD_HOME for the run (default: a temporary folder)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="OpenMP/BLAS threads for the fit, on both sides (default 1: on a small, shared VM "
             "spin-waiting OpenMP threads make a 2-thread fit vary 2.5-12 s from run to run; "
             "0 leaves the libraries' defaults)",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (50k rows, 1 repeat, 5 tiny jobs): a smoke check")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.tiny_repeats = 50_000, 1, 5

    if args.threads > 0:
        pin_threads(args.threads)

    tmp = None
    if args.home is None:
        tmp = tempfile.TemporaryDirectory(prefix="modelyard-bench-")
        args.home = Path(tmp.name)
    home: Path = args.home.resolve()
    try:
        run(home, args)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


def run(home: Path, args: argparse.Namespace) -> None:
    data = home / "data"
    big_path, tiny_path = data / "payments.parquet", data / "tiny.parquet"
    t0 = time.perf_counter()
    if not big_path.exists() or _rows(big_path) != args.rows:
        write_payments(big_path, rows=args.rows)
    if not tiny_path.exists():
        write_payments(tiny_path, rows=TINY_ROWS, merchants=50)
    threads = os.environ.get("OMP_NUM_THREADS") if args.threads > 0 else "library default"
    print(f"modelyard overhead benchmark: {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, fit threads {threads}, "
          f"{platform.platform()}")
    print(f"data: {args.rows:,} rows ({big_path.stat().st_size / 1e6:.1f} MB), tiny {TINY_ROWS:,} "
          f"rows, generated/checked in {time.perf_counter() - t0:.1f}s; home {home}")

    big_request = example_request("data/payments.parquet")
    tiny_request = example_request("data/tiny.parquet", custom_params=TINY_PARAMS)
    if args.threads > 0:  # the same thread budget for Modelyard's worker as for the bare fit
        for req in (big_request, tiny_request):
            req["resources"] = {"num_cpus": args.threads}
    bare_out = home / "bare"
    bare_out.mkdir(exist_ok=True)

    settings = Settings.load(home=home, data_roots=[home], concurrency=1)
    with EmbeddedServer(settings) as server, Client(server.url) as client:
        warm_s, _, _ = time_job(client, tiny_request)
        print(f"first job (fork server warm-up, not counted): {warm_s * 1000:.0f} ms")

        # Interleave the two so that drift in the machine (thermal, page cache) hits both alike.
        mod_times: list[float] = []
        bare_times: list[float] = []
        answer: dict[str, Any] = {}
        bare_info: dict[str, Any] = {}
        submitted = seen = 0.0
        for i in range(args.repeats):
            b, bare_info = time_bare(big_path, big_request, bare_out)
            bare_times.append(b)
            m, answer, submitted = time_job(client, big_request)
            seen = time.time()
            mod_times.append(m)
            print(f"  big #{i + 1}: modelyard {m:7.2f} s   bare {b:7.2f} s   ratio {m / b:.3f}")
        big_answer, big_submitted, big_seen = answer, submitted, seen
        metrics = (big_answer.get("result") or {}).get("metrics", {})

        tiny_times: list[float] = []
        tiny_bare: list[float] = []
        for _ in range(args.tiny_repeats):
            m, answer, submitted = time_job(client, tiny_request)
            seen = time.time()
            tiny_times.append(m)
        for _ in range(min(args.tiny_repeats, 5)):
            tiny_bare.append(time_bare(tiny_path, tiny_request, bare_out)[0])

    med_m, med_b = statistics.median(mod_times), statistics.median(bare_times)
    ratio = med_m / med_b
    p50, p90, worst = pct(tiny_times, 0.5), pct(tiny_times, 0.9), max(tiny_times)
    fit_s = bare_info["steps"]["train"]

    print(f"\nbig job: {args.rows:,} rows -> train {bare_info['train_rows']:,} / holdout "
          f"{bare_info['holdout_rows']:,}; HistGradientBoostingClassifier fit {fit_s:.2f} s "
          "(bare); "
          f"ROC AUC modelyard {metrics.get('roc_auc', float('nan')):.4f} "
          f"bare {bare_info['roc_auc']:.4f}")
    print(f"{'':28}{'median':>10}{'min':>10}   (over {args.repeats} runs)")
    print(f"{'modelyard submit->succeeded':28}{med_m:9.2f}s{min(mod_times):9.2f}s")
    print(f"{'bare script (in-process)':28}{med_b:9.2f}s{min(bare_times):9.2f}s")
    print(f"{'ratio modelyard / bare':28}{ratio:10.3f}{min(mod_times) / min(bare_times):10.3f}"
          f"   target <= {RATIO_TARGET:.2f}  {verdict(ratio <= RATIO_TARGET)}")
    print(f"{'overhead (median)':28}{med_m - med_b:9.2f}s")
    if len(bare_times) > 1:
        # Context, not the target: the first bare run is the only one in a process whose
        # allocator has not yet served this job's arrays, as every Modelyard worker is fresh.
        print(f"{'  vs bare run #1 (cold heap)':28}{med_m / bare_times[0]:10.3f}"
              f"   (bare #1 {bare_times[0]:.2f} s; runs #2+ reuse memory the first one faulted in)")

    print(f"\ntiny job ({TINY_ROWS:,} rows, DecisionTreeClassifier), submit->succeeded over "
          f"{len(tiny_times)} jobs:")
    print(f"  p50 {p50 * 1000:.1f} ms   p90 {p90 * 1000:.1f} ms   max {worst * 1000:.1f} ms   "
          f"target p50 <= {TINY_TARGET_S * 1000:.0f} ms  {verdict(p50 <= TINY_TARGET_S)}")
    print(f"  the same tiny work bare (in-process): median "
          f"{statistics.median(tiny_bare) * 1000:.1f} ms")

    print_steps("bare steps of the last big run:", list(bare_info["steps"].items()))
    print_steps("last big job, from its status (server clock):",
                breakdown(big_answer, big_submitted, big_seen))
    print_steps("last tiny job, from its status (server clock):",
                breakdown(answer, submitted, seen))


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


if __name__ == "__main__":
    sys.exit(main())
